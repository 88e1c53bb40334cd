package gateway

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/chatgate/chatgate/gateway/broker"
	"github.com/chatgate/chatgate/gateway/protocol"
	"github.com/chatgate/chatgate/internal/wstest"
)

// watch connects a background reader to s that joins room.
func watch(t *testing.T, s *testServer, room string) *wsClient {
	t.Helper()
	w := wstest.Dial(t, s.wsURL(query("name", "watcher")), wstest.Options{Background: true, Welcome: true, Timeout: waitTimeout})
	w.JoinSince(room, nil)
	return w
}

// listed reports whether any presence frame of room in envs lists id
// under key (joined or left).
func listed(envs []wstest.Env, room, key, id string) bool {
	for _, e := range envs {
		if e.Type() == "presence" && e.Str("room") == room && slices.Contains(e.Users(key), id) {
			return true
		}
	}
	return false
}

// waitClosed waits until the server has ended n connections in all.
func waitClosed(t *testing.T, s *testServer, n int) {
	t.Helper()
	s.obs.waitFor(t, "the server to end the connection", func() bool { return s.obs.closed >= n })
}

// presenceBarrier makes a marker user join room on s and waits until the
// watcher has the presence frame that lists it: every presence change made
// before the marker's join is in that frame or an earlier one.
func presenceBarrier(t *testing.T, s *testServer, w *wsClient, room, marker string) {
	t.Helper()
	m := s.dial(t, query("name", marker))
	m.Join(room)
	id := m.UserID()
	w.WaitFor("presence with "+marker, func(envs []wstest.Env) bool { return listed(envs, room, "joined", id) })
}

// TestPresenceGraceHidesAReconnect: a guest whose connection drops and who
// reconnects with its credential within --presence-grace never leaves the
// room's presence: the other members see neither a leave nor a join. A
// leave request afterwards is reported at once.
func TestPresenceGraceHidesAReconnect(t *testing.T) {
	s, _ := guestServer(t, "", Options{}, func(c *Config) { c.PresenceGrace = time.Minute })
	w := watch(t, s, "r")
	alice := dialGuest(t, s, query("name", "alice"), "")
	me := welcomeOf(t, alice)
	alice.Join("r")
	w.WaitFor("alice online", func(envs []wstest.Env) bool { return listed(envs, "r", "joined", me.id) })
	before := len(w.Snapshot())

	_ = alice.Conn().NetConn().Close() // the network drops
	waitClosed(t, s, 1)
	// While alice is away, presence goes on: she is still listed.
	presenceBarrier(t, s, w, "r", "marker1")
	again := dialGuest(t, s, query("name", "alice"), me.cred)
	if j := again.Join("r"); !slices.Contains(j.Users("members"), me.id) {
		t.Fatalf("joined %v; want alice among the members", j)
	}
	if res := again.SendWait("r", "back", "b1"); res.Seq == 0 {
		t.Fatalf("send after the reconnect: %+v", res)
	}
	w.WaitFor("alice's message", func(envs []wstest.Env) bool { return len(wstest.Messages(envs, "r")) == 1 })
	presenceBarrier(t, s, w, "r", "marker2")
	for _, e := range w.Snapshot()[before:] {
		if e.Type() == "presence" && (slices.Contains(e.Users("left"), me.id) || slices.Contains(e.Users("joined"), me.id)) {
			t.Fatalf("the reconnect showed in presence: %v", e)
		}
	}
	// The lingering membership was released by the rejoin: a leave now
	// is a leave, long before the grace would have ended.
	again.Send(map[string]any{"type": "leave", "room": "r"})
	w.WaitFor("alice's leave", func(envs []wstest.Env) bool { return listed(envs, "r", "left", me.id) })
	if n := s.srv.lingering.count(); n != 0 {
		t.Fatalf("%d memberships still linger", n)
	}
}

// TestPresenceGraceCases: which ends of a connection keep its user present
// for the grace. With a grace of a minute, "at once" means the leave is seen
// within the test's wait; "lingers" means it is not seen before a later
// presence change.
func TestPresenceGraceCases(t *testing.T) {
	drop := func(t *testing.T, _ *testServer, c *wsClient, _ string) { _ = c.Conn().NetConn().Close() }
	closeFrame := func(t *testing.T, _ *testServer, c *wsClient, _ string) {
		_ = c.Conn().WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseGoingAway, ""), time.Now().Add(time.Second))
	}
	binary := func(t *testing.T, _ *testServer, c *wsClient, _ string) {
		c.SendRaw(websocket.BinaryMessage, []byte{1})
	}
	// The server API's disconnect: the backend wants the user gone, so
	// presence must not keep them for the grace.
	kick := func(t *testing.T, s *testServer, _ *wsClient, id string) {
		if n := s.srv.Disconnect(broker.Target{User: id}); n != 1 {
			t.Fatalf("Disconnect closed %d connections; want 1", n)
		}
	}
	cases := []struct {
		name    string
		mutate  func(*Config)
		end     func(t *testing.T, s *testServer, c *wsClient, id string)
		lingers bool
	}{
		{"network drop", nil, drop, true},
		{"the client closes (a tab closed)", nil, closeFrame, false},
		{"closed for a binary frame", nil, binary, false},
		{"kicked by the server API", nil, kick, false},
		{"no grace", func(c *Config) { c.PresenceGrace = 0 }, drop, false},
		{"no guest credentials: cannot come back", func(c *Config) { c.GuestTTL = 0 }, drop, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := guestServer(t, "", Options{}, func(c *Config) {
				c.PresenceGrace = time.Minute
				if tc.mutate != nil {
					tc.mutate(c)
				}
			})
			w := watch(t, s, "r")
			alice := dialGuest(t, s, query("name", "alice"), "")
			id := welcomeOf(t, alice).id
			alice.Join("r")
			w.WaitFor("alice online", func(envs []wstest.Env) bool { return listed(envs, "r", "joined", id) })
			tc.end(t, s, alice, id)
			if !tc.lingers {
				w.WaitFor("alice's leave", func(envs []wstest.Env) bool { return listed(envs, "r", "left", id) })
				return
			}
			waitClosed(t, s, 1)
			presenceBarrier(t, s, w, "r", "marker")
			if listed(w.Snapshot(), "r", "left", id) {
				t.Fatal("alice was reported gone within the grace")
			}
			if set, _ := wstest.Members(w.Snapshot(), "r"); !set[id] {
				t.Fatalf("members %v; want alice still present", set)
			}
		})
	}
}

// TestPresenceGraceEnds: a user who does not come back leaves when the
// grace ends, not before.
func TestPresenceGraceEnds(t *testing.T) {
	const grace = 300 * time.Millisecond
	s, _ := guestServer(t, "", Options{}, func(c *Config) { c.PresenceGrace = grace })
	w := watch(t, s, "r")
	alice := dialGuest(t, s, query("name", "alice"), "")
	id := welcomeOf(t, alice).id
	alice.Join("r")
	w.WaitFor("alice online", func(envs []wstest.Env) bool { return listed(envs, "r", "joined", id) })
	dropped := time.Now()
	_ = alice.Conn().NetConn().Close()
	w.WaitFor("alice's leave", func(envs []wstest.Env) bool { return listed(envs, "r", "left", id) })
	if took := time.Since(dropped); took < grace {
		t.Fatalf("alice was reported gone %v after the drop; the grace is %v", took, grace)
	}
	if n := s.srv.lingering.count(); n != 0 {
		t.Fatalf("%d memberships still linger after the grace", n)
	}
}

// TestPresenceGraceRename: a guest who comes back under another name within
// the grace is shown with the new name, still without a leave.
func TestPresenceGraceRename(t *testing.T) {
	s, _ := guestServer(t, "", Options{}, func(c *Config) { c.PresenceGrace = time.Minute })
	w := watch(t, s, "r")
	alice := dialGuest(t, s, query("name", "alice"), "")
	me := welcomeOf(t, alice)
	alice.Join("r")
	w.WaitFor("alice online", func(envs []wstest.Env) bool { return listed(envs, "r", "joined", me.id) })
	before := len(w.Snapshot())
	_ = alice.Conn().NetConn().Close()
	waitClosed(t, s, 1)
	presenceBarrier(t, s, w, "r", "marker")
	again := dialGuest(t, s, query("name", "Alicia"), me.cred)
	again.Join("r")
	w.WaitFor("alice as Alicia", func(envs []wstest.Env) bool {
		for _, e := range envs[before:] {
			if e.Type() != "presence" {
				continue
			}
			for _, u := range e["joined"].([]any) {
				if m := u.(map[string]any); m["id"] == me.id && m["name"] == "Alicia" {
					return true
				}
			}
		}
		return false
	})
	if listed(w.Snapshot()[before:], "r", "left", me.id) {
		t.Fatal("the rename showed as a leave")
	}
}

// TestDrainEndsTheGrace: at the end of a drain, a gateway on a shared
// broker keeps its lingering memberships until their grace ends (so users
// reconnecting to another replica show no leave there); one on a broker of
// its own releases them at once.
func TestDrainEndsTheGrace(t *testing.T) {
	for _, shared := range []bool{true, false} {
		t.Run(map[bool]string{true: "shared broker", false: "own broker"}[shared], func(t *testing.T) {
			h := testHub(t, 0)
			grace := time.Minute
			if shared {
				grace = 500 * time.Millisecond
			}
			a, _ := guestServer(t, "", Options{Broker: h, SharedBroker: shared}, func(c *Config) { c.PresenceGrace = grace })
			b, _ := guestServer(t, "", Options{Broker: h}, nil)
			w := watch(t, b, "r")
			alice := dialGuest(t, a, query("name", "alice"), "")
			id := welcomeOf(t, alice).id
			alice.Join("r")
			w.WaitFor("alice online", func(envs []wstest.Env) bool { return listed(envs, "r", "joined", id) })

			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			a.srv.BeginDrain()
			a.srv.CloseClients(ctx, 0)
			alice.ExpectClose(protocol.CloseGoingAway)
			if err := a.srv.Wait(ctx); err != nil {
				t.Fatal(err)
			}
			if n := a.srv.lingering.count(); n != 1 {
				t.Fatalf("%d memberships linger after the drain closed alice; want 1", n)
			}
			start := time.Now()
			a.srv.endLingering(ctx)
			if took := time.Since(start); shared && took < grace/2 {
				t.Fatalf("the drain ended the grace after %v; want it kept (grace %v)", took, grace)
			}
			if n := a.srv.lingering.count(); n != 0 {
				t.Fatalf("%d memberships linger after endLingering", n)
			}
			w.WaitFor("alice's leave", func(envs []wstest.Env) bool { return listed(envs, "r", "left", id) })
		})
	}
}
