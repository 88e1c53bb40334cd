package hub

import (
	"fmt"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/chatgate/chatgate/gateway/broker"
	"github.com/chatgate/chatgate/gateway/protocol"
)

const interval = 100 * time.Millisecond

// settle lets the current presence window close and every timer run.
func settle(t *testing.T) {
	t.Helper()
	time.Sleep(interval)
	synctest.Wait()
}

// onePresence takes s's frames and returns its only presence frame, failing
// if there is not exactly one.
func onePresence(t *testing.T, s *fakeSub) env {
	t.Helper()
	p := ofType(s.take(t), "presence")
	if len(p) != 1 {
		t.Fatalf("%s got %d presence frames, want 1: %+v", s.user.ID, len(p), p)
	}
	return p[0]
}

func noPresence(t *testing.T, subs ...*fakeSub) {
	t.Helper()
	for _, s := range subs {
		if p := ofType(s.take(t), "presence"); len(p) != 0 {
			t.Fatalf("%s got presence frames, want none: %s", s.user.ID, p[0].frame.Data)
		}
	}
}

func TestPresenceCoalesced(t *testing.T) {
	inBubble(t, Config{PresenceInterval: interval}, func(t *testing.T, h *Hub) {
		obs := &countObserver{}
		h.obs = obs
		start := time.Now()
		a, b, c, d := newSub("a"), newSub("b"), newSub("c"), newSub("d")
		mustJoin(t, h, a, "r", nil)
		time.Sleep(10 * time.Millisecond)
		mb := mustJoin(t, h, b, "r", nil)
		time.Sleep(10 * time.Millisecond)
		mustJoin(t, h, c, "r", nil)
		md := mustJoin(t, h, d, "r", nil) // joins and leaves inside the window
		md.Leave()
		synctest.Wait()
		noPresence(t, a, b, c) // nothing before the window closes

		time.Sleep(interval - 20*time.Millisecond)
		synctest.Wait()
		var shared *broker.Frame
		for _, s := range []*fakeSub{a, b, c} {
			envs, at := s.takeTimed(t)
			p := ofType(envs, "presence")
			if len(p) != 1 {
				t.Fatalf("%s got %d presence frames for one window, want 1", s.user.ID, len(p))
			}
			if !slices.Equal(ids(p[0].Joined), []string{"a", "b", "c"}) || p[0].has("left") || p[0].Online != 3 || p[0].Room != "r" {
				t.Fatalf("%s presence = %s, want joined a,b,c online 3 and no left", s.user.ID, p[0].frame.Data)
			}
			if got := at[len(at)-1].Sub(start); got != interval {
				t.Fatalf("presence sent %v after the first change, want %v", got, interval)
			}
			if shared == nil {
				shared = p[0].frame
			} else if p[0].frame != shared {
				t.Fatalf("presence was encoded per member; want one shared frame")
			}
		}
		noPresence(t, d)
		if obs.presence.Load() != 3 {
			t.Fatalf("PresenceSent total %d, want 3", obs.presence.Load())
		}

		// The next change opens a new window.
		time.Sleep(50 * time.Millisecond)
		mb.Leave()
		changed := time.Now()
		e := newSub("e")
		mustJoin(t, h, e, "r", nil)
		e.take(t)
		settle(t)
		for _, s := range []*fakeSub{a, c, e} {
			envs, at := s.takeTimed(t)
			p := ofType(envs, "presence")
			if len(p) != 1 {
				t.Fatalf("%s got %d presence frames, want 1", s.user.ID, len(p))
			}
			if !slices.Equal(ids(p[0].Joined), []string{"e"}) || !slices.Equal(ids(p[0].Left), []string{"b"}) || p[0].Online != 3 {
				t.Fatalf("%s presence = %s, want joined e, left b, online 3", s.user.ID, p[0].frame.Data)
			}
			if at[0].Sub(changed) != interval {
				t.Fatalf("second presence frame %v after its change, want %v", at[0].Sub(changed), interval)
			}
		}
		noPresence(t, b)

		// Quiet room: no more frames.
		time.Sleep(10 * interval)
		synctest.Wait()
		noPresence(t, a, c, e)
	})
}

func TestPresenceAtMostOneFramePerInterval(t *testing.T) {
	inBubble(t, Config{PresenceInterval: interval}, func(t *testing.T, h *Hub) {
		watcher := newSub("watcher")
		mustJoin(t, h, watcher, "r", nil)
		settle(t)
		watcher.take(t)
		// A steady stream of joins, one every 7ms, over ~5 windows.
		const n = 70
		for i := range n {
			mustJoin(t, h, newSub(fmt.Sprintf("u%03d", i)), "r", nil)
			time.Sleep(7 * time.Millisecond)
		}
		settle(t)
		envs, at := watcher.takeTimed(t)
		var seen []string
		online := 0
		for i, p := range envs {
			if p.Type != "presence" {
				t.Fatalf("watcher got a %s frame", p.Type)
			}
			if i > 0 && at[i].Sub(at[i-1]) < interval {
				t.Fatalf("presence frames %v apart, want at least %v", at[i].Sub(at[i-1]), interval)
			}
			seen = append(seen, ids(p.Joined)...)
			online = p.Online
		}
		if len(envs) > n*7/int(interval/time.Millisecond)+2 {
			t.Fatalf("%d presence frames for %d joins over %v", len(envs), n, n*7*time.Millisecond)
		}
		if len(seen) != n || online != n+1 {
			t.Fatalf("presence announced %d joins, online %d; want %d and %d", len(seen), online, n, n+1)
		}
	})
}

func TestPresenceCancellation(t *testing.T) {
	tests := []struct {
		name       string
		run        func(t *testing.T, h *Hub, x *fakeSub, mx broker.Membership)
		wantJoined []string
		wantLeft   []string
	}{
		{
			name: "new user joins and leaves",
			run: func(t *testing.T, h *Hub, _ *fakeSub, _ broker.Membership) {
				m := mustJoin(t, h, newSub("y"), "r", nil)
				time.Sleep(interval / 2)
				m.Leave()
			},
		},
		{
			name: "member leaves and rejoins",
			run: func(t *testing.T, h *Hub, x *fakeSub, mx broker.Membership) {
				mx.Leave()
				time.Sleep(interval / 2)
				mustJoin(t, h, x, "r", nil)
			},
		},
		{
			name: "new user joins, leaves and joins again",
			run: func(t *testing.T, h *Hub, _ *fakeSub, _ broker.Membership) {
				y := newSub("y")
				mustJoin(t, h, y, "r", nil).Leave()
				mustJoin(t, h, y, "r", nil)
			},
			wantJoined: []string{"y"},
		},
		{
			name: "member leaves, rejoins and leaves",
			run: func(t *testing.T, h *Hub, x *fakeSub, mx broker.Membership) {
				mx.Leave()
				mustJoin(t, h, x, "r", nil).Leave()
			},
			wantLeft: []string{"x"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			inBubble(t, Config{PresenceInterval: interval}, func(t *testing.T, h *Hub) {
				w, x := newSub("w"), newSub("x")
				mustJoin(t, h, w, "r", nil)
				mx := mustJoin(t, h, x, "r", nil)
				settle(t)
				w.take(t)
				tc.run(t, h, x, mx)
				settle(t)
				p := ofType(w.take(t), "presence")
				if tc.wantJoined == nil && tc.wantLeft == nil {
					if len(p) != 0 {
						t.Fatalf("changes that cancel out sent presence %s", p[0].frame.Data)
					}
					return
				}
				if len(p) != 1 {
					t.Fatalf("got %d presence frames, want 1", len(p))
				}
				if !slices.Equal(ids(p[0].Joined), tc.wantJoined) || !slices.Equal(ids(p[0].Left), tc.wantLeft) {
					t.Fatalf("presence %s, want joined %v left %v", p[0].frame.Data, tc.wantJoined, tc.wantLeft)
				}
			})
		})
	}
}

func TestPresencePerUserNotPerConnection(t *testing.T) {
	inBubble(t, Config{PresenceInterval: interval}, func(t *testing.T, h *Hub) {
		o := newSub("o")
		mustJoin(t, h, o, "r", nil)
		settle(t)
		o.take(t)

		// Two tabs of the same user.
		tab1 := &fakeSub{user: protocol.User{ID: "x", Name: "xavier"}}
		tab2 := &fakeSub{user: protocol.User{ID: "x", Name: "xavier"}}
		m1 := mustJoin(t, h, tab1, "r", nil)
		m2 := mustJoin(t, h, tab2, "r", nil)
		j, _ := expectJoined(t, tab2.take(t), "r")
		if j.Online != 2 || !slices.Equal(ids(j.Members), []string{"o", "x"}) {
			t.Fatalf("second tab joined %s, want online 2 with x listed once", j.frame.Data)
		}
		settle(t)
		p := onePresence(t, o)
		if !slices.Equal(ids(p.Joined), []string{"x"}) || p.Online != 2 {
			t.Fatalf("presence %s, want x joined once, online 2", p.frame.Data)
		}
		tab1.take(t)
		tab2.take(t)

		// Both tabs receive messages: fan-out is per connection.
		mustPublish(t, m1, "hello", "")
		for _, s := range []*fakeSub{o, tab1, tab2} {
			if n := len(ofType(s.take(t), "message")); n != 1 {
				t.Fatalf("%p got %d messages, want 1", s, n)
			}
		}

		// Closing one tab: x is still online, no presence change.
		m1.Leave()
		settle(t)
		noPresence(t, o, tab2)
		mustJoin(t, h, newSub("late"), "r", nil)
		settle(t)
		if p := onePresence(t, o); p.Online != 3 {
			t.Fatalf("online %d after a new user, want 3 (o, x, late)", p.Online)
		}

		// Closing the last tab: x leaves.
		m2.Leave()
		settle(t)
		p = onePresence(t, o)
		if !slices.Equal(ids(p.Left), []string{"x"}) || p.has("joined") || p.Online != 2 {
			t.Fatalf("presence %s, want x left, online 2", p.frame.Data)
		}
	})
}

func TestPresenceCountOnly(t *testing.T) {
	const maxMembers = 3
	tests := []struct {
		name      string
		users     int
		wantLists bool
	}{
		{"below limit", maxMembers - 1, true},
		{"at limit", maxMembers, true},
		{"above limit", maxMembers + 1, false},
		{"far above limit", 50, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			inBubble(t, Config{PresenceInterval: interval, PresenceMaxMembers: maxMembers}, func(t *testing.T, h *Hub) {
				subs := make([]*fakeSub, tc.users)
				ms := make([]broker.Membership, tc.users)
				for i := range subs {
					subs[i] = newSub(fmt.Sprintf("u%02d", i))
					ms[i] = mustJoin(t, h, subs[i], "r", nil)
				}
				last := subs[len(subs)-1]
				j, _ := expectJoined(t, last.take(t), "r")
				if j.Online != tc.users || j.has("members") != tc.wantLists {
					t.Fatalf("joined %s with %d users: want online %d, members listed %v", j.frame.Data, tc.users, tc.users, tc.wantLists)
				}
				if tc.wantLists && len(j.Members) != tc.users {
					t.Fatalf("joined lists %d members, want %d", len(j.Members), tc.users)
				}
				settle(t)
				for _, s := range subs {
					p := onePresence(t, s)
					if p.Online != tc.users || p.has("joined") != tc.wantLists || p.has("left") {
						t.Fatalf("presence %s with %d users: want online %d, lists %v", p.frame.Data, tc.users, tc.users, tc.wantLists)
					}
				}
				// A leave in the same mode.
				ms[0].Leave()
				settle(t)
				p := onePresence(t, last)
				if p.Online != tc.users-1 {
					t.Fatalf("online %d after a leave, want %d", p.Online, tc.users-1)
				}
				if wantLeft := tc.users-1 <= maxMembers; p.has("left") != wantLeft || p.has("joined") {
					t.Fatalf("presence after leave %s: want left listed %v (lists follow the size at send time)", p.frame.Data, wantLeft)
				}
			})
		})
	}
}

// TestPresenceJoinStormIsLinear checks the count-only mode's purpose: a
// join storm of N users inside one window costs N presence frames in all
// (one per member), and joined frames carry no member list.
func TestPresenceJoinStormIsLinear(t *testing.T) {
	const n = 2000
	inBubble(t, Config{PresenceInterval: interval, PresenceMaxMembers: 100}, func(t *testing.T, h *Hub) {
		obs := &countObserver{}
		h.obs = obs
		subs := make([]*fakeSub, n)
		for i := range subs {
			subs[i] = newSub(fmt.Sprint(i))
			mustJoin(t, h, subs[i], "storm", nil)
		}
		settle(t)
		total := 0
		for _, s := range subs {
			envs := s.take(t)
			total += len(envs)
			if envs[0].Type != "joined" || (envs[0].has("members") && len(envs[0].Members) > 100) {
				t.Fatalf("joined frame %s lists more than the limit", envs[0].frame.Data)
			}
			if len(envs) != 2 || envs[1].Type != "presence" || envs[1].Online != n {
				t.Fatalf("member got %d frames, want joined + one presence with online %d", len(envs), n)
			}
		}
		if total != 2*n || obs.presence.Load() != n {
			t.Fatalf("%d frames and %d presence frames for a %d-user storm, want %d and %d", total, obs.presence.Load(), n, 2*n, n)
		}
	})
}

func TestPresenceStopsWithHub(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := New(Config{SeqBase: zeroSeqBase, PresenceInterval: interval})
		a := newSub("a")
		mustJoin(t, h, a, "r", nil)
		h.Close() // the armed presence timer must be stopped, not fire later
		a.take(t)
		time.Sleep(10 * interval)
		synctest.Wait()
		noPresence(t, a)
	})
}
