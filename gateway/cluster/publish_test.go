package cluster

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chatgate/chatgate/gateway/broker"
	"github.com/chatgate/chatgate/gateway/protocol"
)

// A send stored but not yet delivered on its own replica holds Publish
// (the broker contract: the sender's message, then its ack, are queued
// when Publish returns). When the wait cannot end in that delivery,
// Publish returns unavailable, with the send's ref and no ack: the send's
// budget ran out, the room moved to a new stream, or the backplane closed.
func TestPublishWaitsForOwnDelivery(t *testing.T) {
	cases := []struct {
		name string
		end  func(bp *Backplane, r *room) // ends the wait; nil: the budget runs out
		want string                       // in the error's message
	}{
		{"the send's budget runs out", nil, "not delivered in time"},
		{"the stream changes", func(bp *Backplane, r *room) {
			r.mu.Lock()
			pos := r.lastSeq
			r.mu.Unlock()
			r.moveTo(bp.epoch.Add(1), pos, true)
		}, "lost with the NATS stream"},
		{"the backplane closes", func(bp *Backplane, _ *room) { _ = bp.Close() }, "shutting down"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ns := startNATS(t)
			cfg := testBackplaneConfig(t, ns, "a")
			cfg.PublishTimeout = time.Second
			bp := newBackplane(t, cfg)
			self := &fakeSub{user: protocol.User{ID: "u_self", Name: "self"}}
			m := mustJoin(t, bp, self, "stuck", nil)
			r := bp.lookup("stuck")
			// Stall the room's delivery: once no repair is under way (the
			// resync of the backplane's start may still be), mark one as
			// queued and running that never runs. Live messages are held,
			// and later requests only ask that repair to look again.
			waitUntil(t, "no repair under way", func() bool {
				r.mu.Lock()
				defer r.mu.Unlock()
				if r.rep.active || r.rep.queued {
					return false
				}
				r.rep.active, r.rep.queued = true, true
				return true
			})

			type result struct {
				p    broker.Published
				perr *protocol.Error
				took time.Duration
			}
			done := make(chan result, 1)
			go func() {
				start := time.Now()
				p, perr := m.Publish(context.Background(), "held", "ref-1")
				done <- result{p, perr, time.Since(start)}
			}()
			waitUntil(t, "the send stored and waiting for its delivery", func() bool {
				select {
				case res := <-done:
					t.Fatalf("Publish returned %+v, %v before its delivery", res.p, res.perr)
				default:
				}
				r.mu.Lock()
				defer r.mu.Unlock()
				return len(r.sends) == 1
			})
			if tc.end != nil {
				tc.end(bp, r)
			}
			var res result
			select {
			case res = <-done:
			case <-time.After(waitTimeout):
				t.Fatal("Publish did not return")
			}
			if res.perr == nil {
				t.Fatalf("Publish returned %+v without an error; its message was never delivered here", res.p)
			}
			if res.perr.Code != protocol.CodeUnavailable || res.perr.Ref != "ref-1" || !strings.Contains(res.perr.Message, tc.want) {
				t.Fatalf("Publish: %+v; want unavailable with ref-1 and %q", res.perr, tc.want)
			}
			if tc.end != nil && res.took >= cfg.PublishTimeout {
				t.Fatalf("Publish took %v; want it to end with the wait, before the budget (%v)", res.took, cfg.PublishTimeout)
			}
			for _, e := range self.Snapshot() {
				if e.Type() == "ack" {
					t.Fatalf("the sender got %v", e)
				}
			}
		})
	}
}
