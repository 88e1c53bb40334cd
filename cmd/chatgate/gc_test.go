package main

import (
	"runtime"
	"runtime/debug"
	"testing"
)

// chatgate collects at 50% heap growth unless GOGC says otherwise.
func TestGCPercentDefault(t *testing.T) {
	prev := debug.SetGCPercent(100)
	defer debug.SetGCPercent(prev)

	if got := setGCPercent(func(string) string { return "" }); got != "50" {
		t.Fatalf("reported %q; want 50", got)
	}
	if now := debug.SetGCPercent(100); now != defaultGCPercent {
		t.Fatalf("GOGC in effect %d; want %d", now, defaultGCPercent)
	}
	env := map[string]string{"GOGC": "200"}
	if got := setGCPercent(func(k string) string { return env[k] }); got != "200" {
		t.Fatalf("reported %q; want the variable's 200", got)
	}
	if now := debug.SetGCPercent(100); now != 100 {
		t.Fatalf("GOGC changed to %d although the variable is set", now)
	}
}

// With the event loop chatgate runs on at least two processors unless
// GOMAXPROCS says otherwise; without it the runtime's choice stands.
func TestMaxProcsFloor(t *testing.T) {
	prev := runtime.GOMAXPROCS(1)
	defer runtime.GOMAXPROCS(prev)
	none := func(string) string { return "" }
	cases := []struct {
		name      string
		start     int
		getenv    func(string) string
		eventLoop bool
		want      int
	}{
		{"one processor, event loop", 1, none, true, minEventLoopProcs},
		{"one processor, goroutines per connection", 1, none, false, 1},
		{"GOMAXPROCS set by the operator", 1, func(k string) string { return map[string]string{"GOMAXPROCS": "1"}[k] }, true, 1},
		{"already more", 3, none, true, 3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			runtime.GOMAXPROCS(tc.start)
			if got := setMaxProcs(tc.getenv, tc.eventLoop); got != tc.want {
				t.Fatalf("reported %d; want %d", got, tc.want)
			}
			if now := runtime.GOMAXPROCS(0); now != tc.want {
				t.Fatalf("GOMAXPROCS in effect %d; want %d", now, tc.want)
			}
		})
	}
}
