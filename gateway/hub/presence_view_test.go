package hub

import (
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/chatgate/chatgate/gateway/broker"
)

// memberView applies a subscriber's joined and presence frames the way a
// client does (set operations keyed by user id) and returns the ids it
// believes are online.
func memberView(t *testing.T, envs []env) []string {
	t.Helper()
	view := map[string]bool{}
	for _, e := range envs {
		switch e.Type {
		case "joined":
			clear(view)
			for _, u := range e.Members {
				view[u.ID] = true
			}
		case "presence":
			for _, u := range e.Joined {
				view[u.ID] = true
			}
			for _, u := range e.Left {
				delete(view, u.ID)
			}
		}
	}
	return slices.Sorted(maps.Keys(view))
}

func onlineIDs(h *Hub, room string) []string {
	s := h.shardFor(room)
	s.mu.Lock()
	r := s.rooms[room]
	s.mu.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Sorted(maps.Keys(r.users))
}

// TestPresenceJoinerConverges covers joiners that arrive while changes are
// pending: whatever cancels out for the old members, every member's view
// must end equal to the room's real membership.
func TestPresenceJoinerConverges(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, h *Hub, x *fakeSub, mx broker.Membership, joiner *fakeSub)
	}{
		{"user joins, newcomer sees it, user leaves", func(t *testing.T, h *Hub, _ *fakeSub, _ broker.Membership, joiner *fakeSub) {
			y := newSub("y")
			my := mustJoin(t, h, y, "r", nil)
			mustJoin(t, h, joiner, "r", nil)
			time.Sleep(interval / 4)
			my.Leave()
		}},
		{"member leaves, newcomer sees it gone, member returns", func(t *testing.T, h *Hub, x *fakeSub, mx broker.Membership, joiner *fakeSub) {
			mx.Leave()
			mustJoin(t, h, joiner, "r", nil)
			time.Sleep(interval / 4)
			mustJoin(t, h, x, "r", nil)
		}},
		{"newcomer arrives before the change", func(t *testing.T, h *Hub, x *fakeSub, mx broker.Membership, joiner *fakeSub) {
			mustJoin(t, h, joiner, "r", nil)
			mx.Leave()
			mustJoin(t, h, x, "r", nil)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			inBubble(t, Config{PresenceInterval: interval}, func(t *testing.T, h *Hub) {
				w, x, joiner := newSub("w"), newSub("x"), newSub("z")
				mustJoin(t, h, w, "r", nil)
				mx := mustJoin(t, h, x, "r", nil)
				settle(t)
				wSeen := w.take(t)
				joiner.take(t)
				tc.run(t, h, x, mx, joiner)
				settle(t)
				want := onlineIDs(h, "r")
				if got := memberView(t, append(wSeen, w.take(t)...)); !slices.Equal(got, want) {
					t.Errorf("old member's view %v; room has %v", got, want)
				}
				if got := memberView(t, joiner.take(t)); !slices.Equal(got, want) {
					t.Errorf("newcomer's view %v; room has %v", got, want)
				}
			})
		})
	}
}

// TestSeqBase checks the default SeqBase: a room created again after it
// expired continues above every seq of its earlier life, so a client's old
// since is reported as not recovered instead of replaying a wrong range.
func TestSeqBase(t *testing.T) {
	inBubble(t, Config{RoomTTL: time.Minute, SeqBase: TimeSeqBase}, func(t *testing.T, h *Hub) {
		a := newSub("a")
		m := mustJoin(t, h, a, "r", nil)
		j, _ := expectJoined(t, a.take(t), "r")
		if want := uint64(time.Now().UnixMilli()) * 1000; j.Seq != want {
			t.Fatalf("new room seq %d; want %d", j.Seq, want)
		}
		for i := 0; i < 50; i++ {
			mustPublish(t, m, "old life", "")
		}
		// since 0 means "from the beginning": the ring (100) holds it all.
		early := newSub("early")
		me := mustJoin(t, h, early, "r", ptr[uint64](0))
		if j, rest := expectJoined(t, early.take(t), "r"); j.Recovered == nil || !*j.Recovered || len(rest) != 50 {
			t.Fatalf("since 0 on an untrimmed room: %s with %d replayed; want recovered and all 50", j.frame.Data, len(rest))
		}
		last := seqs(ofType(a.take(t), "message"))[49]
		m.Leave()
		me.Leave()
		time.Sleep(time.Minute + time.Second) // expire the room
		if h.Rooms() != 0 {
			t.Fatal("room not expired")
		}
		time.Sleep(time.Millisecond)
		b := newSub("b")
		mb := mustJoin(t, h, b, "r", nil)
		mustPublish(t, mb, "new life", "")
		c := newSub("c")
		mustJoin(t, h, c, "r", ptr(last-10))
		j, rest := expectJoined(t, c.take(t), "r")
		if j.Seq <= last {
			t.Fatalf("recreated room at seq %d, not above the old %d", j.Seq, last)
		}
		if j.Recovered == nil || *j.Recovered {
			t.Fatalf("stale since recovered: %s", j.frame.Data)
		}
		if got := seqs(rest); len(got) != 1 || got[0] != j.Seq {
			t.Fatalf("replay %v; want only the new life's message %d", got, j.Seq)
		}
	})
}
