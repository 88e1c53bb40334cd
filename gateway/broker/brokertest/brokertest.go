// Package brokertest is the conformance suite of the broker contract
// (gateway/broker): one set of tests that every Broker implementation runs
// from its own tests with a factory:
//
//	func TestBrokerContract(t *testing.T) {
//		brokertest.Run(t, brokertest.Options{
//			New: func(t *testing.T, s broker.Settings) []broker.Broker { ... },
//			Close: func(b broker.Broker) { ... },
//		})
//	}
//
// It checks what a connection relies on whatever serves it: per-room
// ordering, the sender's own message and then its ack queued before
// Publish returns, the replay seam of a join with since, the recovered
// flag, presence convergence, leave, the room limits and closing while
// messages are being published. The suite spreads members over every
// broker New returns (replicas sharing rooms), so the cross-replica
// guarantees are checked too.
package brokertest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chatgate/chatgate/gateway/broker"
	"github.com/chatgate/chatgate/gateway/protocol"
)

// Options describe the implementation under test.
type Options struct {
	// New builds the brokers for one test with these room settings: one
	// broker, or several replicas that serve the same rooms. Cleanup is
	// New's (t.Cleanup); the suite closes brokers only in the test of
	// closing during publish.
	New func(t *testing.T, s broker.Settings) []broker.Broker
	// Close shuts b down: joins afterwards fail with code unavailable. It
	// must be safe to call again (from New's cleanup).
	Close func(b broker.Broker)
	// SinceZeroRecovers says the broker answers since 0 with recovered
	// true while its history holds the room's whole life, as the
	// in-process hub does; a broker that cannot know (the cluster
	// backplane's stream does not number from 0) answers false. See
	// docs/protocol.md, "recovered".
	SinceZeroRecovers bool
	// Wait bounds every wait for a frame (default 10s).
	Wait time.Duration
}

// Run runs the suite.
func Run(t *testing.T, o Options) {
	if o.New == nil || o.Close == nil {
		t.Fatal("brokertest: Options.New and Options.Close are required")
	}
	if o.Wait <= 0 {
		o.Wait = 10 * time.Second
	}
	tests := []struct {
		name string
		fn   func(t *testing.T, o *Options)
	}{
		{"Ordering", testOrdering},
		{"AckAfterOwnDelivery", testAckAfterOwnDelivery},
		{"ReplaySeam", testReplaySeam},
		{"Recovered", testRecovered},
		{"Rejoin", testRejoin},
		{"PresenceConverges", testPresenceConverges},
		{"PresenceCountOnly", testPresenceCountOnly},
		{"Leave", testLeave},
		{"RoomLimits", testRoomLimits},
		{"CloseDuringPublish", testCloseDuringPublish},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, &o) })
	}
}

// settings are the suite's defaults: quick presence, a roomy history.
func settings() broker.Settings {
	return broker.Settings{
		History:            1000,
		MaxRooms:           1000,
		PresenceInterval:   20 * time.Millisecond,
		PresenceMaxMembers: 1000,
	}
}

func build(t *testing.T, o *Options, s broker.Settings) []broker.Broker {
	t.Helper()
	nodes := o.New(t, s)
	if len(nodes) == 0 {
		t.Fatal("brokertest: New returned no broker")
	}
	return nodes
}

func join(t testing.TB, b broker.Broker, s broker.Subscriber, room string, since *uint64) broker.Membership {
	t.Helper()
	m, perr := b.Join(s, room, since)
	if perr != nil {
		t.Fatalf("join %s as %s: %v", room, s.User().ID, perr)
	}
	return m
}

// publish publishes text and checks the contract at the moment Publish
// returns: the sender already holds its own message with the published seq
// and, after it, the ack with ref and that seq. It may run on any
// goroutine: it reports with t.Errorf, and a failed Publish ends the test
// once the goroutine that called Run sees it (mustPublish).
func publish(t testing.TB, m broker.Membership, s *sub, room, text, ref string) (broker.Published, bool) {
	t.Helper()
	p, perr := m.Publish(context.Background(), text, ref)
	if perr != nil {
		t.Errorf("publish %q as %s: %v", text, s.user.ID, perr)
		return p, false
	}
	if err := checkOwnDelivery(s.snapshot(), room, text, ref, p.Seq); err != nil {
		t.Errorf("when Publish returned to %s: %v", s.user.ID, err)
	}
	return p, true
}

// mustPublish is publish on the test's goroutine.
func mustPublish(t testing.TB, m broker.Membership, s *sub, room, text, ref string) broker.Published {
	t.Helper()
	p, ok := publish(t, m, s, room, text, ref)
	if !ok {
		t.FailNow()
	}
	return p
}

// checkOwnDelivery reports whether envs (what the sender holds) has the
// sender's message at seq and, after it, its ack.
func checkOwnDelivery(envs []env, room, text, ref string, seq uint64) error {
	msg := slices.IndexFunc(envs, func(e env) bool { return e.Type == "message" && e.Room == room && e.Seq == seq })
	ack := slices.IndexFunc(envs, func(e env) bool { return e.Type == "ack" && e.Room == room && e.Seq == seq })
	switch {
	case msg < 0:
		return fmt.Errorf("its message seq %d is not queued yet (ack at %d)", seq, ack)
	case envs[msg].Text != text:
		return fmt.Errorf("seq %d carries %q; it published %q", seq, envs[msg].Text, text)
	case ack < 0:
		return fmt.Errorf("the ack of seq %d is not queued yet", seq)
	case ack < msg:
		return fmt.Errorf("the ack of seq %d came before the message", seq)
	case envs[ack].Ref != ref:
		return fmt.Errorf("the ack of seq %d carries ref %q; want %q", seq, envs[ack].Ref, ref)
	}
	return nil
}

// testOrdering: members on every node get one room's messages in one
// order, by increasing seq, each sender's in the order it sent them, and
// each Published.Seq is that message's seq.
func testOrdering(t *testing.T, o *Options) {
	nodes := build(t, o, settings())
	const senders, each = 3, 40
	const room = "ordering"
	var subs []*sub
	var ms []broker.Membership
	for i := range 6 {
		s := newSub(t, o, "u"+strconv.Itoa(i))
		ms = append(ms, join(t, nodes[i%len(nodes)], s, room, nil))
		subs = append(subs, s)
	}
	published := make([][]uint64, senders)
	var wg sync.WaitGroup
	for i := range senders {
		wg.Go(func() {
			for n := range each {
				p, ok := publish(t, ms[i], subs[i], room, fmt.Sprintf("%d/%d", i, n), "")
				if !ok {
					return
				}
				published[i] = append(published[i], p.Seq)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	var first []uint64
	for _, s := range subs {
		envs := s.waitFor(t, "every message", func(envs []env) bool { return len(messages(envs, room)) >= senders*each })
		msgs := messages(envs, room)
		got := seqs(msgs)
		if len(got) != senders*each {
			t.Fatalf("%s got %d messages; want %d", s.user.ID, len(got), senders*each)
		}
		if !slices.IsSorted(got) || len(slices.Compact(slices.Clone(got))) != len(got) {
			t.Fatalf("%s got seqs out of order or twice: %v", s.user.ID, got)
		}
		if first == nil {
			first = got
		} else if !slices.Equal(got, first) {
			t.Fatalf("%s got another order than %s", s.user.ID, subs[0].user.ID)
		}
		next := make([]int, senders)
		for _, m := range msgs {
			var i, n int
			if _, err := fmt.Sscanf(m.Text, "%d/%d", &i, &n); err != nil || i >= senders {
				t.Fatalf("unexpected text %q", m.Text)
			}
			if n != next[i] || m.From.ID != subs[i].user.ID {
				t.Fatalf("%s got %q from %s; want %d/%d from %s", s.user.ID, m.Text, m.From.ID, i, next[i], subs[i].user.ID)
			}
			if m.Seq != published[i][n] {
				t.Fatalf("%q has seq %d; Publish returned %d", m.Text, m.Seq, published[i][n])
			}
			next[i]++
		}
	}
}

// testAckAfterOwnDelivery: when Publish returns, the sender's message and
// then its ack are queued to it, also while others publish concurrently;
// and nothing the sender queues afterwards can come before them.
func testAckAfterOwnDelivery(t *testing.T, o *Options) {
	nodes := build(t, o, settings())
	const room = "acks"
	var wg sync.WaitGroup
	for i := range 4 {
		s := newSub(t, o, "a"+strconv.Itoa(i))
		m := join(t, nodes[i%len(nodes)], s, room, nil)
		wg.Go(func() {
			for n := range 25 {
				ref := fmt.Sprintf("r%d-%d", i, n)
				if _, ok := publish(t, m, s, room, "text "+ref, ref); !ok {
					return
				}
				// What the connection queues now (a close frame the
				// drain asked for while the send was handled) must come
				// after the ack.
				s.Enqueue(&broker.Frame{Data: protocol.Left("marker-" + ref)})
				envs := s.snapshot()
				ack := slices.IndexFunc(envs, func(e env) bool { return e.Type == "ack" && e.Ref == ref })
				mark := slices.IndexFunc(envs, func(e env) bool { return e.Type == "left" && e.Room == "marker-"+ref })
				if ack < 0 || mark < ack {
					t.Errorf("%s: a frame queued after Publish returned (at %d) is ahead of the ack (at %d)", s.user.ID, mark, ack)
				}
			}
		})
	}
	wg.Wait()
}

// testReplaySeam: a join with since, made while the room's traffic goes
// on, gets joined, then the missed messages as replay, then the live ones:
// together exactly the room's messages after since, with no gap and no
// duplicate.
func testReplaySeam(t *testing.T, o *Options) {
	nodes := build(t, o, settings())
	const room = "seam"
	const total = 300
	pub := newSub(t, o, "pub")
	mp := join(t, nodes[0], pub, room, nil)
	var sent []uint64
	for n := range 20 {
		sent = append(sent, mustPublish(t, mp, pub, room, strconv.Itoa(n), "").Seq)
	}
	since := sent[9]
	done := make(chan struct{})
	go func() {
		defer close(done)
		for n := 20; n < total; n++ {
			if _, ok := publish(t, mp, pub, room, strconv.Itoa(n), ""); !ok {
				return
			}
		}
	}()
	late := newSub(t, o, "late")
	join(t, nodes[len(nodes)-1], late, room, &since)
	<-done
	if t.Failed() {
		t.FailNow()
	}
	all := seqs(messages(pub.waitFor(t, "its own messages", func(envs []env) bool { return len(messages(envs, room)) == total }), room))
	want := all[slices.Index(all, since)+1:]
	envs := late.waitFor(t, "the replay and the rest", func(envs []env) bool {
		m := messages(envs, room)
		return len(m) > 0 && m[len(m)-1].Seq == all[total-1]
	})
	if envs[0].Type != "joined" || envs[0].Recovered == nil || !*envs[0].Recovered {
		t.Fatalf("first frame %+v; want joined with recovered true", envs[0])
	}
	got := messages(envs, room)
	if !slices.Equal(seqs(got), want) {
		t.Fatalf("after since %d got %v; want %v", since, seqs(got), want)
	}
	live := false
	for _, m := range got {
		switch {
		case m.replay && live:
			t.Fatalf("replayed seq %d after a live message", m.Seq)
		case m.replay && m.Seq > envs[0].Seq:
			t.Fatalf("replayed seq %d is above joined.seq %d", m.Seq, envs[0].Seq)
		case !m.replay && m.Seq <= envs[0].Seq:
			t.Fatalf("live seq %d is not above joined.seq %d", m.Seq, envs[0].Seq)
		case !m.replay:
			live = true
		}
	}
}

// testRecovered: the recovered flag and what is replayed, for each kind of
// since (docs/protocol.md, "recovered"), with a history of 3.
func testRecovered(t *testing.T, o *Options) {
	type since func(sent []uint64) *uint64
	at := func(i int) since { return func(sent []uint64) *uint64 { v := sent[len(sent)+i]; return &v } }
	zero := func([]uint64) *uint64 { v := uint64(0); return &v }
	cases := []struct {
		name      string
		had       int
		since     since
		recovered *bool // nil: no recovered field
		replayed  int   // how many of the last messages are replayed
	}{
		{"no since", 5, func([]uint64) *uint64 { return nil }, nil, 0},
		{"since the latest", 5, at(-1), ptr(true), 0},
		{"since within the history", 5, at(-3), ptr(true), 2},
		{"since older than the history", 6, at(-6), ptr(false), 3},
		{"since 0, history holds the room's whole life", 2, zero, ptr(o.SinceZeroRecovers), 2},
		{"since 0, the first message dropped", 6, zero, ptr(false), 3},
		{"since beyond every seq", 2, func(sent []uint64) *uint64 { v := sent[len(sent)-1] + 1<<40; return &v }, ptr(false), 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := settings()
			s.History = 3
			nodes := build(t, o, s)
			room := "recovered-" + strconv.Itoa(rand.IntN(1<<30))
			pub := newSub(t, o, "pub")
			mp := join(t, nodes[0], pub, room, nil)
			var sent []uint64
			for n := range tc.had {
				sent = append(sent, mustPublish(t, mp, pub, room, strconv.Itoa(n), "").Seq)
			}
			joiner := newSub(t, o, "joiner")
			join(t, nodes[0], joiner, room, tc.since(sent))
			envs := joiner.snapshot()
			if len(envs) == 0 || envs[0].Type != "joined" {
				t.Fatalf("got %+v; want joined first", envs)
			}
			j := envs[0]
			switch {
			case tc.recovered == nil && j.has("recovered"):
				t.Fatalf("joined has recovered %v without since", *j.Recovered)
			case tc.recovered != nil && (j.Recovered == nil || *j.Recovered != *tc.recovered):
				t.Fatalf("joined recovered %v; want %v", j.keys["recovered"], *tc.recovered)
			}
			if j.Seq != sent[len(sent)-1] {
				t.Fatalf("joined.seq %d; want the latest seq %d", j.Seq, sent[len(sent)-1])
			}
			got := messages(envs[1:], room)
			want := sent[len(sent)-tc.replayed:]
			if !slices.Equal(seqs(got), want) {
				t.Fatalf("replayed %v; want %v", seqs(got), want)
			}
			for _, m := range got {
				if !m.replay {
					t.Fatalf("replayed seq %d is not marked Replay", m.Seq)
				}
			}
		})
	}
}

// testRejoin: joining a room again sends joined again, and the replay for
// its since, without a second membership.
func testRejoin(t *testing.T, o *Options) {
	nodes := build(t, o, settings())
	const room = "rejoin"
	s := newSub(t, o, "s")
	m := join(t, nodes[0], s, room, nil)
	var sent []uint64
	for n := range 3 {
		sent = append(sent, mustPublish(t, m, s, room, strconv.Itoa(n), "").Seq)
	}
	before := len(s.snapshot())
	join(t, nodes[0], s, room, &sent[0])
	envs := s.snapshot()[before:]
	if len(envs) == 0 || envs[0].Type != "joined" || envs[0].Online != 1 {
		t.Fatalf("rejoin got %+v; want joined with online 1", envs)
	}
	if got := seqs(messages(envs, room)); !slices.Equal(got, sent[1:]) {
		t.Fatalf("rejoin replayed %v; want %v", got, sent[1:])
	}
	mustPublish(t, m, s, room, "after", "")
	if n := len(messages(s.snapshot(), room)); n != 3+2+1 {
		t.Fatalf("got %d messages in all; want 6 (3, the replay of 2, then 1 once: a rejoin makes no second membership)", n)
	}
}

// testPresenceConverges: after joins and leaves (several connections per
// user, over every node), every member's view, built from joined and
// presence frames, comes to the true membership; lists are sorted by id.
func testPresenceConverges(t *testing.T, o *Options) {
	nodes := build(t, o, settings())
	const room = "presence"
	type conn struct {
		s *sub
		m broker.Membership
	}
	var conns []conn
	for i := range 8 {
		s := newSub(t, o, "p"+strconv.Itoa(i%5)) // users p0-p2 have two connections
		conns = append(conns, conn{s, join(t, nodes[i%len(nodes)], s, room, nil)})
	}
	// p1 leaves entirely; p2 keeps one of its two connections; p4 leaves
	// and comes back.
	for _, i := range []int{1, 6, 2, 4} {
		conns[i].m.Leave()
	}
	s := newSub(t, o, "p4")
	conns[4] = conn{s, join(t, nodes[0], s, room, nil)}
	want := []string{"p0", "p2", "p3", "p4"}
	for i, c := range conns {
		if i == 1 || i == 6 || i == 2 {
			continue
		}
		envs := c.s.waitFor(t, fmt.Sprintf("a view of %v", want), func(envs []env) bool {
			ids, online := view(envs, room)
			return slices.Equal(ids, want) && online == len(want)
		})
		for _, e := range envs {
			if !sortedByID(e.Members) || !sortedByID(e.Joined) || !sortedByID(e.Left) {
				t.Fatalf("%s: a member list is not sorted by id: %+v", c.s.user.ID, e)
			}
		}
	}
}

// testPresenceCountOnly: above PresenceMaxMembers users, joined and
// presence carry the online count only, and it converges.
func testPresenceCountOnly(t *testing.T, o *Options) {
	s := settings()
	s.PresenceMaxMembers = 2
	nodes := build(t, o, s)
	const room = "count-only"
	var subs []*sub
	for i := range 4 {
		sb := newSub(t, o, "c"+strconv.Itoa(i))
		join(t, nodes[i%len(nodes)], sb, room, nil)
		subs = append(subs, sb)
	}
	if j := subs[3].snapshot()[0]; j.Type != "joined" || j.has("members") || j.Online != 4 {
		t.Fatalf("the fourth joiner got %+v; want joined with online 4 and no members", j)
	}
	for _, sb := range subs {
		envs := sb.waitFor(t, "online 4", func(envs []env) bool { _, online := view(envs, room); return online == 4 })
		for _, e := range envs {
			if e.Type == "presence" && e.Online > 2 && (e.has("joined") || e.has("left")) {
				t.Fatalf("%s: a count-only presence frame lists users: %+v", sb.user.ID, e)
			}
		}
	}
}

// testLeave: after Leave the subscriber gets nothing more from the room,
// its Publish fails with not_joined, Leave again is harmless, and the others
// see it leave.
func testLeave(t *testing.T, o *Options) {
	nodes := build(t, o, settings())
	const room = "leave"
	stay, gone := newSub(t, o, "stay"), newSub(t, o, "gone")
	ms := join(t, nodes[0], stay, room, nil)
	mg := join(t, nodes[0], gone, room, nil)
	mustPublish(t, mg, gone, room, "before", "")
	mg.Leave()
	mg.Leave()
	held := len(gone.snapshot())
	mustPublish(t, ms, stay, room, "after", "")
	if extra := gone.snapshot()[held:]; len(messages(extra, room)) > 0 {
		t.Fatalf("a member that left got %+v", extra)
	}
	_, perr := mg.Publish(context.Background(), "late", "ref-late")
	if want := protocol.NotJoinedError(room, "ref-late"); perr == nil || *perr != *want {
		t.Fatalf("publish after leave: %v; want %v", perr, want)
	}
	stay.waitFor(t, "gone to leave", func(envs []env) bool {
		ids, online := view(envs, room)
		return slices.Equal(ids, []string{"stay"}) && online == 1
	})
}

// testRoomLimits: an invalid room name and a join past MaxRooms get the
// protocol's errors, and the rooms already held keep working.
func testRoomLimits(t *testing.T, o *Options) {
	s := settings()
	s.MaxRooms = 2
	nodes := build(t, o, s)
	u := newSub(t, o, "u")
	for _, name := range []string{"", "has space", "x/y", string(make([]byte, 65))} {
		if _, perr := nodes[0].Join(u, name, nil); perr == nil || *perr != *protocol.InvalidRoomError() {
			t.Fatalf("join %q: %v; want %v", name, perr, protocol.InvalidRoomError())
		}
	}
	ma := join(t, nodes[0], u, "a", nil)
	join(t, nodes[0], u, "b", nil)
	if _, perr := nodes[0].Join(u, "c", nil); perr == nil || *perr != *protocol.RoomLimitError() {
		t.Fatalf("join of a third room: %v; want %v", perr, protocol.RoomLimitError())
	}
	mustPublish(t, ma, u, "a", "still here", "ref")
}

// testCloseDuringPublish: closing the brokers while members publish ends
// nothing badly: every Publish returns (an error or a result that keeps the
// contract), and joins afterwards fail with unavailable.
func testCloseDuringPublish(t *testing.T, o *Options) {
	nodes := build(t, o, settings())
	const room = "closing"
	var published atomic.Int64
	some := make(chan struct{}) // closed once 20 messages went through
	var someOnce sync.Once
	var wg sync.WaitGroup
	for i := range 4 {
		s := newSub(t, o, "w"+strconv.Itoa(i))
		m := join(t, nodes[i%len(nodes)], s, room, nil)
		wg.Go(func() {
			for n := range 200 {
				ref := fmt.Sprintf("r%d-%d", i, n)
				p, perr := m.Publish(context.Background(), ref, ref)
				if perr != nil {
					if perr.Code != protocol.CodeUnavailable && perr.Code != protocol.CodeNotJoined {
						t.Errorf("publish while closing: %v; want unavailable or not_joined", perr)
					}
					return
				}
				if published.Add(1) == 20 {
					someOnce.Do(func() { close(some) })
				}
				if err := checkOwnDelivery(s.snapshot(), room, ref, ref, p.Seq); err != nil {
					t.Errorf("while closing, when Publish returned to %s: %v", s.user.ID, err)
				}
			}
		})
	}
	select { // let some publishes through first
	case <-some:
	case <-time.After(o.Wait):
		t.Fatal("no 20 messages published before the close")
	}
	for _, b := range nodes {
		o.Close(b)
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(o.Wait):
		t.Fatal("publishers did not return after the brokers closed")
	}
	for _, b := range nodes {
		if _, perr := b.Join(newSub(t, o, "late"), room, nil); perr == nil || perr.Code != protocol.CodeUnavailable {
			t.Fatalf("join after close: %v; want unavailable", perr)
		}
	}
}

func ptr[T any](v T) *T { return &v }
