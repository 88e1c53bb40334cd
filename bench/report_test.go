package bench

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// TestTableReadsLikeText: maps print as k=v, and what was not measured
// prints "-", never Go syntax or a 0µs that looks like a measurement.
func TestTableReadsLikeText(t *testing.T) {
	r := &Result{
		Scenario: ScenarioFanout, Proto: ProtoChatgate, Target: []string{"ws://127.0.0.1:1/ws"},
		Params:      Params{Conns: 100, Rooms: 1, SendersPerRoom: 1},
		Connections: ConnStats{Attempted: 100, Failed: 100, FailuresByStatus: map[string]int64{"429": 100}},
		Errors:      map[string]int64{"connect_http_429": 100, "join_timeout": 2},
		CloseCodes:  map[string]int64{"4008": 3, "1001": 1},
		Messages:    MsgStats{ErrorCodes: map[string]int64{"forbidden": 5}},
		Churn:       &ChurnStats{},
	}
	var b bytes.Buffer
	WriteTable(&b, r)
	out := b.String()
	for _, want := range []string{
		"(HTTP 429=100)", "connect p50 - p99 - max -", "join p50 - p99 -",
		"connect_http_429=100 join_timeout=2", "1001=1 4008=3", "forbidden=5", "latency       none measured",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	for _, banned := range []string{"map[", "0µs", "×"} {
		if strings.Contains(out, banned) {
			t.Errorf("table has %q:\n%s", banned, out)
		}
	}
	b.Reset()
	if err := WriteHTML(&b, r); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), "0µs") || strings.Contains(b.String(), "map[") {
		t.Errorf("HTML report prints an empty latency as 0µs or a Go map")
	}
}

// TestProgressEndsFull: the live bar ends on screen at 100%, however the
// last tick of the window fell.
func TestProgressEndsFull(t *testing.T) {
	f := newFakeServer(t, false, nil)
	cfg := testConfig(f.url())
	cfg.Conns, cfg.Senders, cfg.Rate = 3, 1, 20
	cfg.Duration, cfg.Settle, cfg.Interval = 1300*time.Millisecond, time.Second, 500*time.Millisecond
	cfg.Progress = "on"
	var stderr bytes.Buffer
	if _, code := Run(context.Background(), cfg, Options{Stderr: &stderr}); code != ExitOK {
		t.Fatalf("exit %d:\n%s", code, stderr.String())
	}
	frames := strings.Split(strings.TrimRight(stderr.String(), "\n"), "\r")
	last := frames[len(frames)-1]
	if !strings.Contains(last, "100%") {
		t.Fatalf("the bar ends at %q, not 100%%; whole output %q", last, stderr.String())
	}
}
