package cluster

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/chatgate/chatgate/gateway/broker"
	"github.com/chatgate/chatgate/gateway/protocol"
	"github.com/chatgate/chatgate/internal/natstest"
	"github.com/chatgate/chatgate/internal/wstest"
)

// counter reads a counter of reg (summed over label values matching
// labels, given as name, value pairs).
func counter(t testing.TB, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if matches(m, labels) {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

func matches(m *dto.Metric, labels []string) bool {
	for i := 0; i+1 < len(labels); i += 2 {
		ok := false
		for _, l := range m.GetLabel() {
			ok = ok || (l.GetName() == labels[i] && l.GetValue() == labels[i+1])
		}
		if !ok {
			return false
		}
	}
	return true
}

// registered is a backplane with its metrics in a registry of its own.
func registered(t *testing.T, ns *natstest.Server, name string, mutate func(*Config)) (*Backplane, *prometheus.Registry) {
	reg := prometheus.NewRegistry()
	cfg := testBackplaneConfig(t, ns, name)
	cfg.Registry = reg
	if mutate != nil {
		mutate(&cfg)
	}
	return newBackplane(t, cfg), reg
}

// cutLive removes bp's subscription to the room's live subject, as a lost
// route or a dropped connection would: the stream's republished messages
// no longer reach bp, and nothing tells it. restore subscribes again.
func cutLive(t *testing.T, bp *Backplane, room string) (restore func()) {
	t.Helper()
	r := bp.lookup(room)
	if r == nil {
		t.Fatalf("%s does not serve %s", bp.id, room)
	}
	if err := r.live.Unsubscribe(); err != nil {
		t.Fatal(err)
	}
	if err := bp.nc.Flush(); err != nil { // the server has dropped the interest
		t.Fatal(err)
	}
	return func() {
		t.Helper()
		sub, err := bp.nc.ChanSubscribe(livePrefix+room, bp.disp.of(room))
		if err != nil {
			t.Fatal(err)
		}
		r.live = sub // teardown unsubscribes it
		if err := bp.nc.Flush(); err != nil {
			t.Fatal(err)
		}
	}
}

// publishN publishes n messages through m and returns their seqs.
func publishN(t *testing.T, m broker.Membership, n int, tag string) []uint64 {
	t.Helper()
	var seqs []uint64
	for i := range n {
		res, perr := m.Publish(ctxT(t), fmt.Sprintf("%s-%d", tag, i), fmt.Sprintf("%s%d", tag, i))
		if perr != nil {
			t.Fatalf("publish: %v", perr)
		}
		seqs = append(seqs, res.Seq)
	}
	return seqs
}

// checkExactly fails unless sub received exactly the messages want of the
// room, in that order (no loss, no duplicate, no reordering).
func checkExactly(t *testing.T, who string, sub *fakeSub, room string, want []uint64) {
	t.Helper()
	waitUntil(t, fmt.Sprintf("%s has %d messages", who, len(want)), func() bool {
		return len(wstest.Seqs(sub.Snapshot(), room)) >= len(want)
	})
	if got := wstest.Seqs(sub.Snapshot(), room); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("%s received %v; want exactly %v", who, got, want)
	}
}

// Republished messages that never reach a replica (its interest in the
// live subject gone for a while, as on a lost route) are a gap in the
// room's chain: detected and repaired from the stream, so the replica's
// members get every message once and in order. A gap in the middle is
// found by the next live message; a missed tail by the sender replica's
// presence snapshot; a send of the replica itself by its waiting ack.
func TestLiveGapRepaired(t *testing.T) {
	ns := startNATS(t)
	a, _ := registered(t, ns, "a", nil)
	b, regB := registered(t, ns, "b", nil)
	waitUntil(t, "census", func() bool { return a.peers() == 1 && b.peers() == 1 })

	t.Run("in the middle", func(t *testing.T) {
		const room = "mid"
		onB := &fakeSub{user: protocol.User{ID: "u_b", Name: "b"}}
		mustJoin(t, b, onB, room, nil)
		sender := mustJoin(t, a, &fakeSub{user: protocol.User{ID: "u_a", Name: "a"}}, room, nil)
		want := publishN(t, sender, 3, "before")
		checkExactly(t, "b", onB, room, want)
		gaps0 := counter(t, regB, "chatgate_backplane_live_gaps_total")

		restore := cutLive(t, b, room)
		want = append(want, publishN(t, sender, 5, "missed")...)
		restore()
		want = append(want, publishN(t, sender, 2, "after")...)
		checkExactly(t, "b", onB, room, want)
		if got := counter(t, regB, "chatgate_backplane_live_gaps_total") - gaps0; got < 1 {
			t.Fatalf("live gaps counted %v; want the missed messages detected", got)
		}
		if got := counter(t, regB, "chatgate_backplane_repairs_total", "cause", "gap"); got < 1 {
			t.Fatalf("gap repairs %v; want ≥ 1", got)
		}
	})

	t.Run("the tail", func(t *testing.T) {
		const room = "tail"
		onB := &fakeSub{user: protocol.User{ID: "u_b", Name: "b"}}
		mustJoin(t, b, onB, room, nil)
		sender := mustJoin(t, a, &fakeSub{user: protocol.User{ID: "u_a", Name: "a"}}, room, nil)
		want := publishN(t, sender, 2, "before")
		checkExactly(t, "b", onB, room, want)

		restore := cutLive(t, b, room)
		want = append(want, publishN(t, sender, 4, "missed")...)
		restore()
		// Nothing more is sent: a's next snapshot tells b it is behind.
		checkExactly(t, "b", onB, room, want)
		if got := counter(t, regB, "chatgate_backplane_repairs_total", "cause", "hint"); got < 1 {
			t.Fatalf("hint repairs %v; want ≥ 1", got)
		}
	})

	t.Run("own send", func(t *testing.T) {
		const room = "own"
		watcher := &fakeSub{user: protocol.User{ID: "u_w", Name: "w"}}
		mustJoin(t, b, watcher, room, nil)
		self := &fakeSub{user: protocol.User{ID: "u_self", Name: "self"}}
		m := mustJoin(t, b, self, room, nil)

		restore := cutLive(t, b, room)
		var want []uint64
		for i := range 3 {
			want = append(want, publishN(t, m, 1, fmt.Sprint("own", i))...)
			// Publish returned once the repair had delivered the message
			// here: the sender holds it, then its ack.
			checkOwnThenAck(t, self.Snapshot(), want)
		}
		restore()
		checkExactly(t, "b's watcher", watcher, room, want)
		checkExactly(t, "the sender", self, room, want)
		if got := counter(t, regB, "chatgate_backplane_repairs_total", "cause", "ack"); got < 1 {
			t.Fatalf("ack repairs %v; want ≥ 1", got)
		}
	})
	if got := counter(t, regB, "chatgate_backplane_delivery_gaps_total"); got != 0 {
		t.Fatalf("delivery gaps %v; the stream held every missed message", got)
	}
}

// checkOwnThenAck fails unless envs (what a sender holds) has exactly the
// messages want and, after each, its ack.
func checkOwnThenAck(t *testing.T, envs []env, want []uint64) {
	t.Helper()
	seen := map[uint64]bool{}
	var acked []uint64
	for _, e := range envs {
		switch e.Type() {
		case "message":
			seen[e.U64("seq")] = true
		case "ack":
			if !seen[e.U64("seq")] {
				t.Fatalf("ack %d before its message", e.U64("seq"))
			}
			acked = append(acked, e.U64("seq"))
		}
	}
	if fmt.Sprint(acked) != fmt.Sprint(want) {
		t.Fatalf("when Publish returned the sender held acks %v; want %v", acked, want)
	}
}

// gateSub blocks in Enqueue on its first message frame until open is
// closed: it stalls the dispatcher that delivers to it, as a replica whose
// dispatchers fall behind would.
type gateSub struct {
	fakeSub
	open    chan struct{}
	blocked chan struct{}
	once    sync.Once
}

func (s *gateSub) Enqueue(f *broker.Frame) {
	if !f.Accepted.IsZero() {
		s.once.Do(func() {
			close(s.blocked)
			<-s.open
		})
	}
	s.fakeSub.Enqueue(f)
}

// A replica whose dispatcher cannot keep up (its channel full) has the
// NATS client drop live messages: a real slow consumer. The client reports
// it on the room's subscription, the room repairs, and its members still
// get every message once, in order.
func TestSlowLiveSubscriptionRepaired(t *testing.T) {
	ns := startNATS(t)
	a, _ := registered(t, ns, "a", nil)
	b, regB := registered(t, ns, "b", func(c *Config) { c.liveQueue = 4 })
	const room = "slow"
	gated := &gateSub{fakeSub: fakeSub{user: protocol.User{ID: "u_g", Name: "g"}}, open: make(chan struct{}), blocked: make(chan struct{})}
	mustJoin(t, b, gated, room, nil)
	sender := mustJoin(t, a, &fakeSub{user: protocol.User{ID: "u_a", Name: "a"}}, room, nil)

	want := publishN(t, sender, 1, "first")
	<-gated.blocked // b's dispatcher is stuck in the first delivery
	want = append(want, publishN(t, sender, 40, "burst")...)
	// (Not through the registry: its gauges would wait for the room's
	// lock, which the stuck delivery holds.)
	waitUntil(t, "the NATS client to drop live messages", func() bool { return testutil.ToFloat64(b.met.drops) >= 1 })
	close(gated.open)
	want = append(want, publishN(t, sender, 3, "after")...)
	checkExactly(t, "b", &gated.fakeSub, room, want)
	if got := counter(t, regB, "chatgate_backplane_repairs_total", "cause", "dropped"); got < 1 {
		t.Fatalf("dropped repairs %v; want ≥ 1", got)
	}
	if got := counter(t, regB, "chatgate_backplane_repaired_messages_total"); got < 1 {
		t.Fatalf("repaired messages %v; want the dropped ones read from the stream", got)
	}
}

// Serving rooms, joining them (with and without since) and publishing
// creates no JetStream consumer: live delivery is subject interest, and
// replays and repairs are Direct Gets.
func TestJoinCreatesNoConsumer(t *testing.T) {
	ns := startNATS(t)
	a := newBackplane(t, testBackplaneConfig(t, ns, "a"))
	b := newBackplane(t, testBackplaneConfig(t, ns, "b"))
	const rooms = 40
	zero := uint64(0)
	for i := range rooms {
		name := fmt.Sprintf("dm-%d", i)
		m := mustJoin(t, a, &fakeSub{user: protocol.User{ID: "u_a" + name}}, name, nil)
		publishN(t, m, 2, name)
		mustJoin(t, b, &fakeSub{user: protocol.User{ID: "u_b" + name}}, name, &zero) // a replay too
	}
	if a.Rooms() != rooms || b.Rooms() != rooms {
		t.Fatalf("rooms served: a %d, b %d; want %d each", a.Rooms(), b.Rooms(), rooms)
	}
	js, err := jetstream.New(a.nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	acct, err := js.AccountInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(ctx, StreamName)
	if err != nil {
		t.Fatal(err)
	}
	if acct.Consumers != 0 || s.CachedInfo().State.Consumers != 0 {
		t.Fatalf("the account has %d JetStream consumers (the stream %d) with %d rooms served on 2 replicas; want none",
			acct.Consumers, s.CachedInfo().State.Consumers, rooms)
	}
}

// A stream updated without the republish and direct get settings (as a
// replica of an earlier version would on its reconnect) gets them back
// within the health probe's period, and live delivery goes on.
func TestStreamLiveSettingsRestored(t *testing.T) {
	ns := startNATS(t)
	a := newBackplane(t, testBackplaneConfig(t, ns, "a"))
	b := newBackplane(t, testBackplaneConfig(t, ns, "b"))
	onB := &fakeSub{user: protocol.User{ID: "u_b", Name: "b"}}
	mustJoin(t, b, onB, "r", nil)
	sender := mustJoin(t, a, &fakeSub{user: protocol.User{ID: "u_a", Name: "a"}}, "r", nil)
	want := publishN(t, sender, 1, "before")

	js, err := jetstream.New(a.nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	old := a.streamConfig()
	old.RePublish, old.AllowDirect = nil, false
	s, err := js.Stream(ctx, StreamName)
	if err != nil {
		t.Fatal(err)
	}
	old.FirstSeq = s.CachedInfo().Config.FirstSeq
	if _, err := js.UpdateStream(ctx, old); err != nil {
		t.Fatalf("updating the stream as an earlier version would: %v", err)
	}
	waitUntil(t, "the live settings back", func() bool {
		s, err := js.Stream(ctx, StreamName)
		return err == nil && liveConfigured(s.CachedInfo().Config)
	})
	waitUntil(t, "both backplanes up", func() bool { return a.Up() && b.Up() })
	want = append(want, publishN(t, sender, 3, "after")...)
	checkExactly(t, "b", onB, "r", want)
}
