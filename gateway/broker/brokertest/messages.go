package brokertest

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"testing"

	"github.com/chatgate/chatgate/gateway/broker"
	"github.com/chatgate/chatgate/gateway/protocol"
)

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
		{"since 0, the room has had no message", 0, zero, ptr(true), 0},
		{"since 0, history holds the room's whole life", 2, zero, ptr(true), 2},
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
			if len(sent) > 0 && j.Seq != sent[len(sent)-1] {
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
