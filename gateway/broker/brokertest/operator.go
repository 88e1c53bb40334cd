package brokertest

import (
	"context"
	"errors"
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

// The server API's side of the contract (broker.Operator), checked on
// every broker New returns: an API call may reach any replica.

func operator(t testing.TB, b broker.Broker) broker.Operator {
	t.Helper()
	op, ok := b.(broker.Operator)
	if !ok {
		t.Fatalf("%T does not implement broker.Operator", b)
	}
	return op
}

// uniqueRoom names a room no other test uses, for brokers whose rooms
// outlive a test (a shared store).
func uniqueRoom(prefix string) string { return prefix + "-" + strconv.Itoa(rand.IntN(1<<30)) }

// eventually polls check until it returns nil or the suite's wait is over.
// The cluster's replicas learn of a ban or a member a network hop later.
func eventually(t testing.TB, o *Options, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(o.Wait)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v (after %v)", what, err, o.Wait)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// testSystemPublish: system messages published through every node, while
// members publish too, reach every member once, in the room's one order,
// marked as the system sender's, with the seq PublishSystem returned; when
// PublishSystem returns, the members on the node it was called on already
// hold the message; a room with no member keeps them for a later join with
// since.
func testSystemPublish(t *testing.T, o *Options) {
	nodes := build(t, o, settings())
	room := uniqueRoom("system")
	const each = 30
	var subs []*sub
	var ms []broker.Membership
	for i := range 4 {
		s := newSub(t, o, "m"+strconv.Itoa(i))
		ms = append(ms, join(t, nodes[i%len(nodes)], s, room, nil))
		subs = append(subs, s)
	}
	var sysSeqs [each]uint64
	var wg sync.WaitGroup
	wg.Go(func() {
		for n := range each {
			op := operator(t, nodes[n%len(nodes)])
			p, perr := op.PublishSystem(context.Background(), room, "Moderator", "sys "+strconv.Itoa(n))
			if perr != nil {
				t.Errorf("PublishSystem %d: %v", n, perr)
				return
			}
			sysSeqs[n] = p.Seq
			local := 0
			for i, s := range subs {
				if i%len(nodes) != n%len(nodes) {
					continue // another node's member: it gets the message later
				}
				local++
				if !slices.ContainsFunc(messages(s.snapshot(), room), func(e env) bool { return e.Seq == p.Seq && e.System }) {
					t.Errorf("PublishSystem %d returned seq %d before %s, a member on the node it was called on, held the message", n, p.Seq, s.user.ID)
				}
			}
			if p.Recipients != local {
				t.Errorf("PublishSystem %d: Recipients %d; want the node's %d members", n, p.Recipients, local)
			}
		}
	})
	wg.Go(func() {
		for n := range each {
			if _, perr := ms[0].Publish(context.Background(), "member "+strconv.Itoa(n), ""); perr != nil {
				t.Errorf("a member's publish: %v", perr)
				return
			}
		}
	})
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	var first []uint64
	for _, s := range subs {
		msgs := messages(s.waitFor(t, "every message", func(envs []env) bool { return len(messages(envs, room)) >= 2*each }), room)
		got := seqs(msgs)
		if len(got) != 2*each || !slices.IsSorted(got) || len(slices.Compact(slices.Clone(got))) != len(got) {
			t.Fatalf("%s got seqs %v; want %d, increasing, each once", s.user.ID, got, 2*each)
		}
		if first == nil {
			first = got
		} else if !slices.Equal(got, first) {
			t.Fatalf("%s got another order than %s", s.user.ID, subs[0].user.ID)
		}
		next := 0
		for _, m := range msgs {
			if !m.System {
				if m.From.ID != "m0" {
					t.Fatalf("%s: seq %d %q from %+v is not marked system; only m0 sent messages as a member", s.user.ID, m.Seq, m.Text, m.From)
				}
				continue
			}
			if m.From != (protocol.User{ID: protocol.SystemSenderID, Name: "Moderator"}) || m.Text != "sys "+strconv.Itoa(next) || m.Seq != sysSeqs[next] {
				t.Fatalf("%s: system message %d is seq %d %q from %+v; want from the system sender Moderator, text %q, seq %d", s.user.ID, next, m.Seq, m.Text, m.From, "sys "+strconv.Itoa(next), sysSeqs[next])
			}
			next++
		}
		if next != each {
			t.Fatalf("%s got %d system messages; want %d", s.user.ID, next, each)
		}
	}

	// A room nobody is in keeps what is published to it.
	quiet := uniqueRoom("quiet")
	var sent []uint64
	for n := range 3 {
		p, perr := operator(t, nodes[0]).PublishSystem(context.Background(), quiet, "Bot", "to nobody "+strconv.Itoa(n))
		if perr != nil {
			t.Fatalf("PublishSystem to an empty room: %v", perr)
		}
		if p.Recipients != 0 {
			t.Fatalf("PublishSystem to an empty room reached %d members", p.Recipients)
		}
		sent = append(sent, p.Seq)
	}
	late := newSub(t, o, "late")
	since := sent[0] - 1
	join(t, nodes[len(nodes)-1], late, quiet, &since)
	if got := seqs(messages(late.snapshot(), quiet)); !slices.Equal(got, sent) {
		t.Fatalf("a join with since %d replayed %v; want the system messages %v", since, got, sent)
	}

	_, perr := operator(t, nodes[0]).PublishSystem(context.Background(), "no spaces", "Bot", "x")
	if perr == nil || *perr != *protocol.InvalidRoomError() {
		t.Fatalf("PublishSystem to an invalid room: %v; want %v", perr, protocol.InvalidRoomError())
	}
}

// testHistory: History, read through every node, holds the room's
// messages exactly as members received them, paged by since and limit.
func testHistory(t *testing.T, o *Options) {
	nodes := build(t, o, settings())
	room := uniqueRoom("history")
	s := newSub(t, o, "h")
	m := join(t, nodes[0], s, room, nil)
	var sent []uint64
	for n := range 8 {
		if n%3 == 2 {
			p, perr := operator(t, nodes[n%len(nodes)]).PublishSystem(context.Background(), room, "Bot", "sys "+strconv.Itoa(n))
			if perr != nil {
				t.Fatal(perr)
			}
			sent = append(sent, p.Seq)
			continue
		}
		sent = append(sent, mustPublish(t, m, s, room, "msg "+strconv.Itoa(n), "h"+strconv.Itoa(n)).Seq)
	}
	received := messages(s.waitFor(t, "every message", func(envs []env) bool { return len(messages(envs, room)) == len(sent) }), room)
	raw := func(seqs []uint64) []string {
		var out []string
		for _, e := range received {
			if slices.Contains(seqs, e.Seq) {
				out = append(out, string(e.raw))
			}
		}
		return out
	}
	cases := []struct {
		name      string
		since     *uint64
		limit     int
		want      []uint64
		recovered bool
		truncated bool
	}{
		{"everything", nil, 100, sent, false, false},
		{"the newest 3", nil, 3, sent[5:], false, true},
		{"after since, limited", &sent[2], 2, sent[3:5], true, true},
		{"after since, the rest", &sent[2], 100, sent[3:], true, false},
		{"since the latest", &sent[7], 100, nil, true, false},
		{"since 0, the room's whole life", new(uint64), 100, sent, true, false},
	}
	for i, node := range nodes {
		op := operator(t, node)
		for _, tc := range cases {
			t.Run(fmt.Sprintf("node %d: %s", i, tc.name), func(t *testing.T) {
				h, perr := op.History(context.Background(), room, tc.since, tc.limit)
				if perr != nil {
					t.Fatal(perr)
				}
				var got []string
				for _, b := range h.Messages {
					got = append(got, string(b))
				}
				if want := raw(tc.want); !slices.Equal(got, want) {
					t.Fatalf("History = %q; want what the member received: %q", got, want)
				}
				if h.Seq != sent[len(sent)-1] || h.Truncated != tc.truncated || (tc.since != nil && h.Recovered != tc.recovered) {
					t.Fatalf("History seq %d truncated %v recovered %v; want %d, %v, %v", h.Seq, h.Truncated, h.Recovered, sent[len(sent)-1], tc.truncated, tc.recovered)
				}
			})
		}
	}
	h, perr := operator(t, nodes[0]).History(context.Background(), uniqueRoom("never-used"), nil, 10)
	if perr != nil || h.Seq != 0 || len(h.Messages) != 0 {
		t.Fatalf("History of a room never used: %+v, %v; want seq 0 and no message", h, perr)
	}
	if _, perr := operator(t, nodes[0]).History(context.Background(), "x/y", nil, 10); perr == nil || *perr != *protocol.InvalidRoomError() {
		t.Fatalf("History of an invalid room: %v; want %v", perr, protocol.InvalidRoomError())
	}
}

// testHistoryRecovered: with a history of 3, History with a since older
// than what is held says recovered false, like a join's replay.
func testHistoryRecovered(t *testing.T, o *Options) {
	st := settings()
	st.History = 3
	nodes := build(t, o, st)
	room := uniqueRoom("history-short")
	s := newSub(t, o, "h")
	m := join(t, nodes[0], s, room, nil)
	var sent []uint64
	for n := range 6 {
		sent = append(sent, mustPublish(t, m, s, room, strconv.Itoa(n), "h"+strconv.Itoa(n)).Seq)
	}
	h, perr := operator(t, nodes[len(nodes)-1]).History(context.Background(), room, &sent[0], 100)
	if perr != nil {
		t.Fatal(perr)
	}
	if h.Recovered || len(h.Messages) != 3 {
		t.Fatalf("History after a since older than the history: recovered %v, %d messages; want false and the 3 held", h.Recovered, len(h.Messages))
	}
}

// testPresenceAndRooms: Presence and ActiveRooms, asked of every node,
// agree with who joined where; empty rooms are not active; paging works.
func testPresenceAndRooms(t *testing.T, o *Options) {
	nodes := build(t, o, settings())
	prefix := uniqueRoom("pr")
	r1, r2, r3 := prefix+"-1", prefix+"-2", prefix+"-3"
	a1, a2, b, c, d := newSub(t, o, "a"), newSub(t, o, "a"), newSub(t, o, "b"), newSub(t, o, "c"), newSub(t, o, "d")
	join(t, nodes[0], a1, r1, nil)
	join(t, nodes[len(nodes)-1], a2, r1, nil)
	join(t, nodes[0], b, r1, nil)
	join(t, nodes[len(nodes)-1], c, r2, nil)
	join(t, nodes[0], d, r3, nil).Leave()

	wantPresence := broker.RoomPresence{Online: 2, Connections: 3, Users: []broker.PresentUser{
		{User: a1.user, Connections: 2}, {User: b.user, Connections: 1},
	}}
	wantRooms := []broker.RoomCount{{Room: r1, Online: 2, Connections: 3}, {Room: r2, Online: 1, Connections: 1}}
	for i, node := range nodes {
		op := operator(t, node)
		eventually(t, o, fmt.Sprintf("node %d's presence of %s", i, r1), func() error {
			p, perr := op.Presence(context.Background(), r1)
			if perr != nil {
				return perr
			}
			if !presenceEqual(p, wantPresence) {
				return fmt.Errorf("presence %+v; want %+v", p, wantPresence)
			}
			return nil
		})
		eventually(t, o, fmt.Sprintf("node %d's active rooms", i), func() error {
			rooms, _, perr := op.ActiveRooms(context.Background(), prefix, 1000)
			if perr != nil {
				return perr
			}
			rooms = slices.DeleteFunc(rooms, func(r broker.RoomCount) bool { return len(r.Room) <= len(prefix) || r.Room[:len(prefix)] != prefix })
			if !slices.Equal(rooms, wantRooms) {
				return fmt.Errorf("active rooms %+v; want %+v", rooms, wantRooms)
			}
			return nil
		})
		// Paging: one at a time, after the previous one.
		page, more, perr := op.ActiveRooms(context.Background(), r1[:len(r1)-1], 1)
		if perr != nil || len(page) != 1 || page[0].Room != r1 || !more {
			t.Fatalf("node %d: the first page of one is %+v (more %v, %v); want %s and more", i, page, more, perr, r1)
		}
		page, _, perr = op.ActiveRooms(context.Background(), r1, 1)
		if perr != nil || len(page) != 1 || page[0].Room != r2 {
			t.Fatalf("node %d: the page after %s is %+v (%v); want %s", i, r1, page, perr, r2)
		}
		p, perr := op.Presence(context.Background(), r3)
		if perr != nil || p.Online != 0 || p.Connections != 0 || len(p.Users) != 0 {
			t.Fatalf("node %d: presence of a room everyone left: %+v, %v; want nobody", i, p, perr)
		}
	}
	if _, perr := operator(t, nodes[0]).Presence(context.Background(), ""); perr == nil || *perr != *protocol.InvalidRoomError() {
		t.Fatalf("Presence of an invalid room: %v; want %v", perr, protocol.InvalidRoomError())
	}
}

func presenceEqual(a, b broker.RoomPresence) bool {
	return a.Online == b.Online && a.Connections == b.Connections && slices.Equal(a.Users, b.Users)
}

// testBan: a ban, made through any node, removes the user's connections
// from the room on every node (each told with left, reason banned) and
// refuses their joins there until it is lifted or ends; others and other
// rooms are unaffected. Joins racing the ban are refused or removed.
func testBan(t *testing.T, o *Options) {
	nodes := build(t, o, settings())
	room, elsewhere := uniqueRoom("ban"), uniqueRoom("ban-elsewhere")
	other := newSub(t, o, "other")
	join(t, nodes[0], other, room, nil)
	var victims []*sub
	var vms []broker.Membership
	for _, node := range nodes {
		v := newSub(t, o, "victim")
		vms = append(vms, join(t, node, v, room, nil))
		victims = append(victims, v)
	}
	inOther := newSub(t, o, "victim")
	join(t, nodes[0], inOther, elsewhere, nil)

	// Joins of the victim racing the ban, on the first node.
	var racers []*sub
	var racersMu sync.Mutex
	stop := make(chan struct{})
	var stopOnce sync.Once
	var banned atomic.Bool
	var wg sync.WaitGroup
	defer func() { stopOnce.Do(func() { close(stop) }); wg.Wait() }()
	for range 3 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				r := newSub(t, o, "victim")
				_, perr := nodes[0].Join(r, room, nil)
				switch {
				case perr == nil:
					racersMu.Lock()
					racers = append(racers, r)
					racersMu.Unlock()
				case perr.Code != protocol.CodeForbidden:
					t.Errorf("a racing join: %v", perr)
					return
				default:
					banned.Store(true)
				}
			}
		})
	}
	if perr := operator(t, nodes[len(nodes)-1]).Ban(context.Background(), room, "victim", time.Hour); perr != nil {
		t.Fatalf("Ban: %v", perr)
	}
	eventually(t, o, "a racing join to be refused", func() error {
		if !banned.Load() {
			return errors.New("every racing join got in")
		}
		return nil
	})
	stopOnce.Do(func() { close(stop) })
	wg.Wait()

	removed := func(s *sub) {
		t.Helper()
		s.waitFor(t, "left with reason banned", func(envs []env) bool {
			return slices.ContainsFunc(envs, func(e env) bool { return e.Type == "left" && e.Room == room && e.Reason == protocol.LeftReasonBanned })
		})
	}
	for _, v := range victims {
		removed(v)
	}
	for _, r := range racers {
		removed(r)
	}
	for i, m := range vms {
		if _, perr := m.Publish(context.Background(), "still here?", "r"); perr == nil || perr.Code != protocol.CodeNotJoined {
			t.Fatalf("node %d: a removed membership's Publish: %v; want not_joined", i, perr)
		}
		m.Leave() // harmless
	}
	for i, node := range nodes {
		_, perr := node.Join(newSub(t, o, "victim"), room, nil)
		if perr == nil || perr.Code != protocol.CodeForbidden || perr.RetryAfterMs <= 0 {
			t.Fatalf("node %d: a banned join: %v; want forbidden with retry_after_ms", i, perr)
		}
	}
	other.waitFor(t, "the victim to leave", func(envs []env) bool {
		ids, _ := view(envs, room)
		return slices.Equal(ids, []string{"other"})
	})
	if slices.ContainsFunc(inOther.snapshot(), func(e env) bool { return e.Type == "left" }) {
		t.Fatalf("the victim's connection in another room was told to leave: %+v", inOther.snapshot())
	}
	join(t, nodes[len(nodes)-1], newSub(t, o, "someone-else"), room, nil)
	join(t, nodes[len(nodes)-1], newSub(t, o, "victim"), elsewhere, nil)

	// Lifted: joins work again on every node.
	if perr := operator(t, nodes[0]).Ban(context.Background(), room, "victim", 0); perr != nil {
		t.Fatalf("lifting the ban: %v", perr)
	}
	for i, node := range nodes {
		eventually(t, o, fmt.Sprintf("node %d to let the victim in after the lift", i), func() error {
			_, perr := node.Join(newSub(t, o, "victim"), room, nil)
			if perr != nil {
				return perr
			}
			return nil
		})
	}

	// A ban ends on its own.
	short := uniqueRoom("ban-short")
	if perr := operator(t, nodes[0]).Ban(context.Background(), short, "victim", 300*time.Millisecond); perr != nil {
		t.Fatal(perr)
	}
	if _, perr := nodes[0].Join(newSub(t, o, "victim"), short, nil); perr == nil || perr.Code != protocol.CodeForbidden {
		t.Fatalf("a join right after a short ban: %v; want forbidden", perr)
	}
	eventually(t, o, "the short ban to end", func() error {
		_, perr := nodes[0].Join(newSub(t, o, "victim"), short, nil)
		if perr != nil {
			return perr
		}
		return nil
	})
	if perr := operator(t, nodes[0]).Ban(context.Background(), "bad room", "victim", time.Hour); perr == nil || *perr != *protocol.InvalidRoomError() {
		t.Fatalf("Ban in an invalid room: %v; want %v", perr, protocol.InvalidRoomError())
	}
}

// testDisconnect: Disconnect, called on any node, hands the target to the
// handler of every node once and returns the sum of their counts.
func testDisconnect(t *testing.T, o *Options) {
	nodes := build(t, o, settings())
	type call struct {
		node   int
		target broker.Target
	}
	var mu sync.Mutex
	var calls []call
	for i, node := range nodes {
		operator(t, node).HandleDisconnects(func(tg broker.Target) int {
			mu.Lock()
			defer mu.Unlock()
			calls = append(calls, call{i, tg})
			return i + 1
		})
	}
	want := 0
	for i := range nodes {
		want += i + 1
	}
	for i, node := range nodes {
		target := broker.Target{User: "u" + strconv.Itoa(i), Conn: "c" + strconv.Itoa(i)}
		mu.Lock()
		calls = nil
		mu.Unlock()
		n, perr := operator(t, node).Disconnect(context.Background(), target)
		if perr != nil {
			t.Fatalf("Disconnect through node %d: %v", i, perr)
		}
		if n != want {
			t.Fatalf("Disconnect through node %d closed %d; want the sum of every node's count, %d", i, n, want)
		}
		mu.Lock()
		got := slices.Clone(calls)
		mu.Unlock()
		slices.SortFunc(got, func(a, b call) int { return a.node - b.node })
		if len(got) != len(nodes) {
			t.Fatalf("Disconnect through node %d reached handlers %+v; want each of %d nodes once", i, got, len(nodes))
		}
		for j, c := range got {
			if c.node != j || c.target != target {
				t.Fatalf("Disconnect through node %d reached handlers %+v; want each node once with %+v", i, got, target)
			}
		}
	}
}
