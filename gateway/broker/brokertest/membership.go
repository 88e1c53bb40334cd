package brokertest

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chatgate/chatgate/gateway/broker"
	"github.com/chatgate/chatgate/gateway/protocol"
)

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
		if i == 3 && len(nodes) < 4 {
			// A replica hears of the joins on other replicas a network hop
			// later: before the fourth joins, wait until the member already
			// on its node has seen the other three.
			on := subs[3-len(nodes)]
			on.waitFor(t, "online 3", func(envs []env) bool { _, online := view(envs, room); return online == 3 })
		}
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
