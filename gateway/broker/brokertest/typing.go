package brokertest

import (
	"testing"
	"time"

	"github.com/chatgate/chatgate/gateway/broker"
)

// typings returns who the typing frames of room in envs are from, in order.
func typings(envs []env, room string) []string {
	var from []string
	for _, e := range envs {
		if e.Type == "typing" && e.Room == room {
			from = append(from, e.From.ID)
		}
	}
	return from
}

func countOf(ids []string, id string) int {
	n := 0
	for _, x := range ids {
		if x == id {
			n++
		}
	}
	return n
}

// typingBarrier has user bar (a member of the first node) type, and waits
// until every sub in subs has its frame. A replica relays one replica's
// typing signals in the order that replica sent them, so whatever the
// first node relayed before bar's signal has arrived by then.
func typingBarrier(t *testing.T, m broker.Membership, bar *sub, room string, subs ...*sub) {
	t.Helper()
	m.Typing()
	for _, s := range subs {
		s.waitFor(t, "the typing of "+bar.user.ID, func(envs []env) bool { return countOf(typings(envs, room), bar.user.ID) > 0 })
	}
}

// testTypingRelayed: a typing signal reaches every member of another user,
// on every node, as {"type":"typing","room":…,"from":{id,name}} with no seq;
// not the sender's connection, nor another connection of its user. It is
// not stored: a joiner with since gets no typing in its replay.
func testTypingRelayed(t *testing.T, o *Options) {
	nodes := build(t, o, settings())
	first, last := nodes[0], nodes[len(nodes)-1]
	const room = "typing"
	alice, alice2 := newSub(t, o, "ta"), newSub(t, o, "ta")
	bob, carol, dave := newSub(t, o, "tb"), newSub(t, o, "tc"), newSub(t, o, "td")
	ma := join(t, first, alice, room, nil)
	join(t, last, alice2, room, nil)
	mb := join(t, first, bob, room, nil)
	join(t, last, carol, room, nil)
	join(t, first, dave, room, nil)

	ma.Typing()
	for _, s := range []*sub{bob, carol, dave} {
		envs := s.waitFor(t, "alice typing", func(envs []env) bool { return countOf(typings(envs, room), "ta") == 1 })
		for _, e := range envs {
			if e.Type == "typing" && (e.From != alice.user || e.has("seq") || len(e.keys) != 3) {
				t.Fatalf("%s got %+v; want exactly type, room and from %+v", s.user.ID, e.keys, alice.user)
			}
		}
	}
	typingBarrier(t, mb, bob, room, alice, alice2, carol)
	for _, s := range []*sub{alice, alice2} {
		if n := countOf(typings(s.snapshot(), room), "ta"); n != 0 {
			t.Fatalf("%s (a connection of the typing user) got %d of its own typing frames", s.user.ID, n)
		}
	}
	late := newSub(t, o, "te")
	join(t, last, late, room, ptr(uint64(0)))
	mustPublish(t, mb, bob, room, "after", "t1")
	envs := late.waitFor(t, "the message after", func(envs []env) bool { return len(messages(envs, room)) > 0 })
	if from := typings(envs, room); len(from) != 0 {
		t.Fatalf("a joiner with since 0 got typing frames from %v; typing is not history", from)
	}
}

// testTypingCoalesced: a room relays at most one typing signal per user per
// broker.TypingInterval; another user's is not held back by it; one after
// the interval goes through again. After Leave, Typing does nothing.
func testTypingCoalesced(t *testing.T, o *Options) {
	nodes := build(t, o, settings())
	first, last := nodes[0], nodes[len(nodes)-1]
	const room = "typing-coalesced"
	alice, bob, carol := newSub(t, o, "ca"), newSub(t, o, "cb"), newSub(t, o, "cc")
	ma := join(t, first, alice, room, nil)
	mb := join(t, first, bob, room, nil)
	join(t, last, carol, room, nil)

	start := time.Now()
	for range 3 {
		ma.Typing()
	}
	typingBarrier(t, mb, bob, room, carol)
	if n := countOf(typings(carol.snapshot(), room), "ca"); n != 1 {
		t.Fatalf("three signals within the interval reached carol %d times; want 1", n)
	}
	// The next one gets through once the interval has passed, not before.
	deadline := time.Now().Add(3*broker.TypingInterval + o.Wait)
	for countOf(typings(carol.snapshot(), room), "ca") < 2 {
		if time.Now().After(deadline) {
			t.Fatal("no typing signal got through after the interval")
		}
		ma.Typing()
		time.Sleep(50 * time.Millisecond) // the pace of a client typing, polled until the deadline
	}
	if took := time.Since(start); took < broker.TypingInterval {
		t.Fatalf("a second signal got through after %v; the interval is %v", took, broker.TypingInterval)
	}

	ma.Leave()
	before := len(typings(carol.snapshot(), room))
	ma.Typing()
	bob2 := newSub(t, o, "cd")
	mb2 := join(t, first, bob2, room, nil)
	typingBarrier(t, mb2, bob2, room, carol)
	if got := typings(carol.snapshot(), room)[before:]; countOf(got, "ca") != 0 {
		t.Fatalf("a typing signal after Leave reached carol: %v", got)
	}
}

// testTypingCountOnly: a room above PresenceMaxMembers users relays no
// typing (checked on the sender's node, where relaying is synchronous).
func testTypingCountOnly(t *testing.T, o *Options) {
	s := settings()
	s.PresenceMaxMembers = 2
	nodes := build(t, o, s)
	const room = "typing-big"
	var subs []*sub
	var ms []broker.Membership
	for _, id := range []string{"ba", "bb", "bc"} {
		sb := newSub(t, o, id)
		subs = append(subs, sb)
		ms = append(ms, join(t, nodes[0], sb, room, nil))
	}
	subs[2].waitFor(t, "three online", func(envs []env) bool { _, online := view(envs, room); return online == 3 })
	ms[0].Typing()
	for _, sb := range subs[1:] {
		if from := typings(sb.snapshot(), room); len(from) != 0 {
			t.Fatalf("%s got typing from %v in a count-only room", sb.user.ID, from)
		}
	}
}
