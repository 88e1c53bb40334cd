package hub

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chatgate/chatgate/gateway/broker"
	"github.com/chatgate/chatgate/gateway/protocol"
)

// countSub is a Subscriber whose Enqueue only counts: it allocates nothing,
// so any allocation measured on the fan-out path is the hub's own.
type countSub struct {
	user protocol.User
	n    atomic.Int64
	last atomic.Pointer[broker.Frame]
}

func (s *countSub) User() protocol.User { return s.user }
func (s *countSub) Enqueue(f *broker.Frame) {
	s.n.Add(1)
	s.last.Store(f)
}

// roomWith builds a hub with one room holding n counting members and
// returns the membership of the first one.
func roomWith(tb testing.TB, n int) (*Hub, broker.Membership, []*countSub) {
	tb.Helper()
	// No presence frame within a test or benchmark: only broadcasts count.
	h := New(Config{SeqBase: zeroSeqBase, PresenceMaxMembers: 1 << 20, PresenceInterval: time.Hour})
	subs := make([]*countSub, n)
	var first broker.Membership
	for i := range subs {
		subs[i] = &countSub{user: protocol.User{ID: fmt.Sprint("u", i), Name: "user"}}
		m, err := h.Join(subs[i], "bench", nil)
		if err != nil {
			tb.Fatalf("Join: %v", err)
		}
		if i == 0 {
			first = m
		}
	}
	return h, first, subs
}

// TestFanoutDoesNotAllocatePerRecipient proves that delivering a built frame
// to N members costs no allocation per member: fanoutLocked allocates
// nothing, and a whole Publish (encode, frame, ack) costs the same small
// constant for 1 member as for 1000.
func TestFanoutDoesNotAllocatePerRecipient(t *testing.T) {
	publishAllocs := map[int]float64{}
	for _, n := range []int{1, 10, 1000} {
		h, m, subs := roomWith(t, n)
		r := h.shardFor("bench").rooms["bench"]
		f := &broker.Frame{Data: []byte(`{"type":"message"}`)}
		fan := testing.AllocsPerRun(100, func() {
			r.mu.Lock()
			r.fanoutLocked(f, time.Now())
			r.mu.Unlock()
		})
		if fan != 0 {
			t.Errorf("fanoutLocked to %d members: %v allocs, want 0", n, fan)
		}
		publishAllocs[n] = testing.AllocsPerRun(100, func() {
			if err := publish(m, "hello, room", "ref"); err != nil {
				t.Fatal(err)
			}
		})
		// Every member got every broadcast, all sharing one frame.
		want := subs[0].n.Load() - 101 // AllocsPerRun runs 101 times; the sender also got the acks
		for _, s := range subs[1:] {
			if s.n.Load() != want {
				t.Fatalf("%d members: a member got %d frames, want %d", n, s.n.Load(), want)
			}
			if s.last.Load() != subs[1].last.Load() {
				t.Fatalf("%d members: members hold different frames for one broadcast", n)
			}
		}
		h.Close()
	}
	// Exactly equal in a normal build. Under the race detector allow the
	// runtime's jitter, far below one allocation per recipient (1000).
	slack := 0.0
	if raceEnabled {
		slack = 4
	}
	for _, n := range []int{10, 1000} {
		if d := publishAllocs[n] - publishAllocs[1]; d > slack || d < -slack {
			t.Fatalf("Publish allocs by member count %v: they must not grow with recipients", publishAllocs)
		}
	}
	// The race detector's own bookkeeping allocates a varying handful per
	// call (9 to 11 seen for a Publish that costs 6), so the absolute bound
	// is checked in a normal build only.
	if !raceEnabled && publishAllocs[1] > 8 {
		t.Fatalf("Publish costs %v allocs, want a small constant", publishAllocs[1])
	}
	t.Logf("Publish allocs per message: %v", publishAllocs[1])
}

func BenchmarkPublish(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprint("members=", n), func(b *testing.B) {
			h, m, _ := roomWith(b, n)
			defer h.Close()
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if err := publish(m, "hello, room", "r1"); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/recipient")
		})
	}
}

func BenchmarkJoinLeave(b *testing.B) {
	for _, n := range []int{0, 100} {
		b.Run(fmt.Sprint("others=", n), func(b *testing.B) {
			h, _, _ := roomWith(b, n+1)
			defer h.Close()
			s := &countSub{user: protocol.User{ID: "joiner", Name: "joiner"}}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				m, err := h.Join(s, "bench", nil)
				if err != nil {
					b.Fatal(err)
				}
				m.Leave()
			}
		})
	}
}

// BenchmarkPublishParallel publishes from all Ps at once, either into a
// single room (every publisher contends on its lock) or spread over many
// rooms in different shards, which should scale with GOMAXPROCS.
func BenchmarkPublishParallel(b *testing.B) {
	const members = 10
	for _, rooms := range []int{1, 256} {
		b.Run(fmt.Sprint("rooms=", rooms), func(b *testing.B) {
			h := New(Config{SeqBase: zeroSeqBase})
			defer h.Close()
			pubs := make([]broker.Membership, rooms)
			for r := range rooms {
				name := fmt.Sprint("room-", r)
				for i := range members {
					s := &countSub{user: protocol.User{ID: fmt.Sprint(r, "-", i)}}
					m, err := h.Join(s, name, nil)
					if err != nil {
						b.Fatal(err)
					}
					if i == 0 {
						pubs[r] = m
					}
				}
			}
			var next atomic.Int64
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := int(next.Add(1))
				for pb.Next() {
					if err := publish(pubs[i%rooms], "hello, room", ""); err != nil {
						b.Error(err)
						return
					}
					i += 7 // walk the rooms so goroutines spread over shards
				}
			})
		})
	}
}
