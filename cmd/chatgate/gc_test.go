package main

import (
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
