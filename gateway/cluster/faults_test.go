package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatgate/chatgate/gateway/protocol"
	"github.com/chatgate/chatgate/internal/natstest"
	"github.com/chatgate/chatgate/internal/wstest"
)

// logCount passes records on to its handler and counts them by message.
type logCount struct {
	slog.Handler
	mu *sync.Mutex
	n  map[string]int
}

func newLogCount(h slog.Handler) logCount {
	return logCount{Handler: h, mu: &sync.Mutex{}, n: map[string]int{}}
}

func (h logCount) Handle(ctx context.Context, r slog.Record) error {
	h.mu.Lock()
	h.n[r.Message]++
	h.mu.Unlock()
	return h.Handler.Handle(ctx, r)
}

func (h logCount) WithAttrs(as []slog.Attr) slog.Handler {
	return logCount{Handler: h.Handler.WithAttrs(as), mu: h.mu, n: h.n}
}

func (h logCount) WithGroup(name string) slog.Handler {
	return logCount{Handler: h.Handler.WithGroup(name), mu: h.mu, n: h.n}
}

func (h logCount) count(msg string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n[msg]
}

// The NATS server restarts mid-traffic without its stream: once with its
// store wiped, once with a memory-backed stream. From the moment the new
// stream exists every acked message reaches every member on both replicas,
// in increasing seq order (never below what a member saw before), the
// sender's own message before its ack; the lost stream is counted as a
// delivery gap and logged once per room on each replica; a rejoin with a
// since from the lost stream says recovered false.
func TestStreamLostOnNATSRestart(t *testing.T) {
	for _, tc := range []struct {
		name    string
		storage jetstream.StorageType
		restart func(*natstest.Server)
	}{
		{"wiped store", jetstream.FileStorage, (*natstest.Server).RestartWiped},
		{"memory storage", jetstream.MemoryStorage, (*natstest.Server).Restart},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := startNATS(t)
			logs := map[string]logCount{}
			mut := func(name string) func(*Config) {
				return func(c *Config) {
					c.Storage, c.Rooms.History = tc.storage, 1000
					lc := newLogCount(c.Logger.Handler())
					logs[name] = lc
					c.Logger = slog.New(lc)
				}
			}
			nodes := []*node{startNode(t, ns, "gw-a", mut("gw-a")), startNode(t, ns, "gw-b", mut("gw-b"))}
			const room = "r"
			senders := []*wsClient{dial(t, nodes[0], "name=sa"), dial(t, nodes[1], "name=sb")}
			watchers := []*wsClient{dial(t, nodes[0], "name=wa"), dial(t, nodes[1], "name=wb")}
			members := append(slices.Clone(senders), watchers...)
			for _, c := range members {
				c.JoinSince(room, nil)
			}

			// phase: 0 before the restart, 1 while NATS is down, 2 once the
			// restarted server runs (its stream is new or not yet made).
			var phase atomic.Int32
			type acked struct {
				seq  uint64
				text string
			}
			var mu sync.Mutex
			var before, after []acked // by the phase the ack arrived in
			const perPhase = 30
			var wg, warmed sync.WaitGroup
			warmed.Add(len(senders))
			for i, c := range senders {
				wg.Add(1)
				go func() {
					defer wg.Done()
					nBefore, nAfter, unavailable := 0, 0, 0
					for k := 0; nAfter < perPhase; k++ {
						text := fmt.Sprintf("s%d-%d", i, k)
						res := c.SendWait(room, text, fmt.Sprint(k))
						p := phase.Load()
						switch {
						case res.Seq != 0 && p == 2:
							mu.Lock()
							after = append(after, acked{res.Seq, text})
							mu.Unlock()
							nAfter++
						case res.Seq != 0:
							mu.Lock()
							before = append(before, acked{res.Seq, text})
							mu.Unlock()
							if nBefore++; nBefore == perPhase {
								warmed.Done()
							}
						case res.Code == string(protocol.CodeUnavailable):
							if unavailable++; unavailable > 3000 {
								t.Errorf("sender %d: unavailable %d times", i, unavailable)
								return
							}
							time.Sleep(10 * time.Millisecond) // retry pacing
						default:
							t.Errorf("sender %d: send: %+v", i, res)
							return
						}
					}
				}()
			}
			warmed.Wait()
			phase.Store(1)
			tc.restart(ns)
			phase.Store(2)
			wg.Wait()
			if t.Failed() {
				return
			}
			lastBefore := uint64(0)
			for _, a := range before {
				lastBefore = max(lastBefore, a.seq)
			}

			// Every message acked after the restart reaches every member.
			deadline := time.Now().Add(waitTimeout)
			var missing []string
			for {
				missing = missing[:0]
				for _, c := range members {
					got := map[acked]bool{}
					for _, e := range wstest.Messages(c.Snapshot(), room) {
						got[acked{e.U64("seq"), e.Str("text")}] = true
					}
					n := 0
					for _, a := range after {
						if !got[a] {
							n++
						}
					}
					if n > 0 {
						missing = append(missing, fmt.Sprintf("%s/%s lost %d", c.node, c.UserID(), n))
					}
				}
				if len(missing) == 0 || time.Now().After(deadline) {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			if len(missing) > 0 {
				t.Fatalf("of %d messages acked after the restart, members never received some: %s", len(after), strings.Join(missing, ", "))
			}
			texts := map[uint64]string{}
			for _, a := range append(slices.Clone(before), after...) {
				texts[a.seq] = a.text
			}
			for _, c := range members {
				envs := c.Snapshot()
				ss := wstest.Seqs(envs, room)
				checkOrdered(t, c.node+"/"+c.UserID(), ss)
				for _, e := range wstest.Messages(envs, room) {
					if want, ok := texts[e.U64("seq")]; ok && want != e.Str("text") {
						t.Fatalf("seq %d is %q; acked as %q", e.U64("seq"), e.Str("text"), want)
					}
				}
				seen := map[uint64]bool{}
				for _, e := range envs {
					switch {
					case e.Type() == "message":
						seen[e.U64("seq")] = true
					case e.Type() == "ack" && !seen[e.U64("seq")]:
						t.Fatalf("%s: ack %d before its message", c.UserID(), e.U64("seq"))
					}
				}
			}

			// The lost stream is a gap, counted and logged once per room.
			for _, n := range nodes {
				gaps := n.gauge(t, "chatgate_backplane_delivery_gaps_total")
				if gaps < 1 {
					t.Errorf("%s: chatgate_backplane_delivery_gaps_total = %v; want the lost stream counted", n.name, gaps)
				}
				if got := logs[n.name].count(msgHistoryLost); got != 1 {
					t.Errorf("%s: %q logged %d times; want once (one room)", n.name, msgHistoryLost, got)
				}
				t.Logf("%s: delivery gaps %v", n.name, gaps)
			}

			// A client that saw the lost stream's messages rejoins: not
			// recovered, and the new stream's messages are replayed.
			back := dial(t, nodes[1], "name=back")
			j := back.JoinSince(room, &lastBefore)
			if rec, ok := j["recovered"].(bool); !ok || rec {
				t.Fatalf("rejoin with since %d from the lost stream: %v; want recovered false", lastBefore, j)
			}
			back.WaitFor("the new stream's messages", func(envs []env) bool {
				return len(wstest.Messages(envs, room)) >= len(after)
			})
			t.Logf("acked before the restart %d, after %d; every one of the %d delivered to all %d members; rejoin recovered=false",
				len(before), len(after), len(after), len(members))
		})
	}
}

// A NATS server that stops answering (frozen behind a relay, as with
// SIGSTOP) is noticed within the health timeout: /readyz and chatgate_ready
// go down with it, chatgate_backplane_up reads 0, sends get unavailable at
// once, and other replicas' users stay in presence (frozen, not expired).
// When the server answers again everything comes back.
func TestFrozenNATSNoticed(t *testing.T) {
	ns := startNATS(t)
	relay := natstest.NewRelay(t, strings.TrimPrefix(ns.URL(), "nats://"))
	mut := func(c *Config) {
		c.URL = relay.URL()
		// The frozen server is noticed after the health timeout; presence
		// survives it as long as the TTL outlasts a sync period plus that.
		c.PresenceSync, c.PresenceTTL = 500*time.Millisecond, 5*time.Second
	}
	a := startNode(t, ns, "gw-a", mut)
	b := startNode(t, ns, "gw-b", mut)
	alice := dial(t, a, "name=alice")
	alice.JoinSince("r", nil)
	watcher := dial(t, b, "name=watcher")
	watcher.JoinSince("r", nil)
	watcher.WaitFor("alice online", func(envs []env) bool {
		set, n := wstest.Members(envs, "r")
		return n == 2 && set[alice.UserID()]
	})
	if res := alice.SendWait("r", "before", "b1"); res.Seq == 0 {
		t.Fatalf("send before the freeze: %+v", res)
	}
	for _, n := range []*node{a, b} {
		n.checkReadiness(t, http.StatusOK, "ok")
	}

	relay.Freeze()
	frozen := time.Now()
	for _, n := range []*node{a, b} {
		waitUntil(t, n.name+" not ready", func() bool { code, _ := n.readyz(t); return code == http.StatusServiceUnavailable })
		took := time.Since(frozen)
		n.checkReadiness(t, http.StatusServiceUnavailable, "backplane not responding")
		if up := n.gauge(t, "chatgate_backplane_up"); up != 0 {
			t.Fatalf("%s: chatgate_backplane_up = %v while NATS is frozen", n.name, up)
		}
		t.Logf("%s: not ready %v after NATS froze (health timeout %v)", n.name, took.Round(time.Millisecond), DefaultHealthTimeout)
		if limit := DefaultHealthTimeout + time.Second; took > limit {
			t.Fatalf("%s: not ready only %v after NATS froze; want within %v", n.name, took, limit)
		}
	}
	start := time.Now()
	if res := alice.SendWait("r", "frozen", "f1"); res.Code != string(protocol.CodeUnavailable) {
		t.Fatalf("send while NATS is frozen: %+v; want unavailable", res)
	}
	if took := time.Since(start); took > time.Second {
		t.Fatalf("unavailable took %v; a frozen backplane should refuse at once", took)
	}
	// Stay frozen for longer than the presence TTL: alice must not leave.
	time.Sleep(time.Until(frozen.Add(5*time.Second + time.Second)))
	if set, _ := wstest.Members(watcher.Snapshot(), "r"); !set[alice.UserID()] {
		t.Fatal("alice expired from presence on b while NATS was frozen")
	}

	relay.Thaw()
	thawed := time.Now()
	for _, n := range []*node{a, b} {
		waitUntil(t, n.name+" ready again", func() bool { code, _ := n.readyz(t); return code == http.StatusOK })
		n.checkReadiness(t, http.StatusOK, "ok")
	}
	t.Logf("ready again %v after NATS answered again", time.Since(thawed).Round(time.Millisecond))
	res := alice.SendWait("r", "after", "a1")
	if res.Seq == 0 {
		t.Fatalf("send after the thaw: %+v", res)
	}
	watcher.WaitFor("the message sent after the thaw", func(envs []env) bool {
		return slices.Contains(wstest.Seqs(envs, "r"), res.Seq)
	})
	for _, e := range watcher.Snapshot() {
		if e.Type() == "presence" && slices.Contains(e.Users("left"), alice.UserID()) {
			t.Fatalf("alice reported left during or after the freeze: %v", e)
		}
	}
}

// While NATS is down, the other replicas' users stay in presence (frozen);
// when it is back, a replica that refreshes them keeps them, and one that
// died meanwhile has its users expire one TTL after the backplane is back,
// not before.
func TestPresenceFrozenDuringOutage(t *testing.T) {
	ns := startNATS(t)
	const ttl = time.Second
	mut := func(c *Config) { c.PresenceTTL, c.PresenceSync = ttl, 250*time.Millisecond }
	a := startNode(t, ns, "gw-a", mut)
	b := startNode(t, ns, "gw-b", mut)
	alice := dial(t, a, "name=alice")
	alice.JoinSince("room", nil)
	watcher := dial(t, b, "name=watcher")
	watcher.JoinSince("room", nil)
	aliceOnline := func() bool {
		set, n := wstest.Members(watcher.Snapshot(), "room")
		return n == 2 && set[alice.UserID()]
	}
	waitUntil(t, "alice online", aliceOnline)
	leftFrames := func() int {
		n := 0
		for _, e := range watcher.Snapshot() {
			if e.Type() == "presence" && slices.Contains(e.Users("left"), alice.UserID()) {
				n++
			}
		}
		return n
	}

	// An outage of three TTLs: nothing changes.
	ns.Stop()
	waitUntil(t, "backplanes down", func() bool { return !a.bp.Up() && !b.bp.Up() })
	time.Sleep(3 * ttl) // the outage itself
	if !aliceOnline() || leftFrames() > 0 {
		t.Fatal("alice left presence on b during the NATS outage")
	}
	ns.Restart()
	waitUntil(t, "backplanes up", func() bool { return a.bp.Up() && b.bp.Up() })
	time.Sleep(2 * ttl) // a's snapshots keep alice
	if !aliceOnline() || leftFrames() > 0 {
		t.Fatal("alice left presence on b after the outage although a is alive")
	}

	// a dies during a second outage: alice expires once b is back, not
	// before, within one TTL.
	ns.Stop()
	waitUntil(t, "backplanes down", func() bool { return !a.bp.Up() && !b.bp.Up() })
	a.bp.kill()
	time.Sleep(2 * ttl)
	if !aliceOnline() {
		t.Fatal("alice expired during the outage")
	}
	ns.Restart()
	waitUntil(t, "b up", b.bp.Up)
	back := time.Now()
	waitUntil(t, "alice gone", func() bool { return !aliceOnline() })
	took := time.Since(back)
	t.Logf("dead replica's user left presence %v after the backplane was back (TTL %v)", took.Round(time.Millisecond), ttl)
	if took < ttl/2 || took > ttl+500*time.Millisecond {
		t.Fatalf("alice left %v after the backplane was back; want about one TTL (%v)", took, ttl)
	}
}
