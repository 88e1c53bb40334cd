package broker

import (
	"encoding/json"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/chatgate/chatgate/gateway/protocol"
)

func TestPresenceTimer(t *testing.T) {
	cases := []struct {
		name    string
		run     func(p *PresenceTimer, mu *sync.Mutex, closed *bool)
		flushes int
	}{
		{"armed twice, one flush", func(p *PresenceTimer, mu *sync.Mutex, _ *bool) {
			mu.Lock()
			p.ArmLocked()
			p.ArmLocked()
			mu.Unlock()
		}, 1},
		{"armed again after the flush", func(p *PresenceTimer, mu *sync.Mutex, _ *bool) {
			mu.Lock()
			p.ArmLocked()
			mu.Unlock()
			time.Sleep(time.Second)
			mu.Lock()
			p.ArmLocked()
			mu.Unlock()
		}, 2},
		{"stopped before it fires", func(p *PresenceTimer, mu *sync.Mutex, _ *bool) {
			mu.Lock()
			p.ArmLocked()
			p.StopLocked()
			mu.Unlock()
		}, 0},
		{"the room closed meanwhile", func(p *PresenceTimer, mu *sync.Mutex, closed *bool) {
			mu.Lock()
			p.ArmLocked()
			*closed = true
			mu.Unlock()
		}, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var mu sync.Mutex
				var wg sync.WaitGroup
				var p PresenceTimer
				closed, flushes := false, 0
				var at []time.Duration
				start := time.Now()
				p.Init(&mu, &wg, 250*time.Millisecond, func() bool { return closed }, func() {
					if mu.TryLock() {
						t.Error("flush ran without the room's lock")
						mu.Unlock()
					}
					flushes++
					at = append(at, time.Since(start))
				})
				tc.run(&p, &mu, &closed)
				wg.Wait() // every armed timer has run or was stopped
				if flushes != tc.flushes {
					t.Fatalf("%d flushes; want %d", flushes, tc.flushes)
				}
				if len(at) > 0 && at[0] != 250*time.Millisecond {
					t.Fatalf("first flush after %v; want the interval", at[0])
				}
			})
		})
	}
}

func TestPresenceChangesFrame(t *testing.T) {
	present := map[string]bool{"a": true, "b": true}
	isPresent := func(id string) bool { return present[id] }
	var p PresenceChanges
	if f := p.Frame("r", isPresent, 2, 10); f != nil {
		t.Fatalf("a frame without changes: %s", f.Data)
	}
	p.Touch(protocol.User{ID: "b"}, false)
	p.Touch(protocol.User{ID: "c"}, true)
	var got struct {
		Type   string          `json:"type"`
		Room   string          `json:"room"`
		Online int             `json:"online"`
		Joined []protocol.User `json:"joined"`
		Left   []protocol.User `json:"left"`
	}
	f := p.Frame("r", isPresent, 2, 10)
	if f == nil || json.Unmarshal(f.Data, &got) != nil {
		t.Fatalf("frame %v", f)
	}
	if got.Type != "presence" || got.Room != "r" || got.Online != 2 || len(got.Joined) != 1 || got.Joined[0].ID != "b" || len(got.Left) != 1 || got.Left[0].ID != "c" {
		t.Fatalf("frame %s; want b joined, c left, online 2", f.Data)
	}
	// Above maxListed, only the count.
	p.Touch(protocol.User{ID: "a"}, false)
	got.Joined, got.Left = nil, nil
	f = p.Frame("r", isPresent, 2, 1)
	if f == nil || json.Unmarshal(f.Data, &got) != nil || got.Online != 2 || got.Joined != nil || got.Left != nil {
		t.Fatalf("count-only frame %v", f)
	}
}
