package gateway

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/chatgate/chatgate/gateway/protocol"
	"github.com/chatgate/chatgate/internal/wstest"
)

func typingsFrom(envs []wstest.Env, room, id string) int {
	n := 0
	for _, e := range envs {
		if e.Type() == "typing" && e.Str("room") == room {
			if from, _ := e["from"].(map[string]any); from["id"] == id {
				n++
			}
		}
	}
	return n
}

// member connects name in the background and joins room.
func member(t *testing.T, s *testServer, name, room string) *wsClient {
	t.Helper()
	c := wstest.Dial(t, s.wsURL(query("name", name)), wstest.Options{Background: true, Welcome: true, Timeout: waitTimeout})
	c.JoinSince(room, nil)
	return c
}

// TestTypingRelayed: a typing envelope reaches the room's other members as
// {"type":"typing","room","from"}, exactly, not the sender; a second one
// within the interval is coalesced; it is neither stored nor sequenced; a
// member who never types sees nothing else new.
func TestTypingRelayed(t *testing.T) {
	s := newHistoryServer(t, 100)
	alice, bob, carol := member(t, s, "alice", "r"), member(t, s, "bob", "r"), member(t, s, "carol", "r")
	other := member(t, s, "dan", "elsewhere")
	for range 2 {
		alice.Send(map[string]any{"type": "typing", "room": "r"})
	}
	e := bob.WaitEnv("alice typing", func(e wstest.Env) bool { return e.Type() == "typing" })
	var want wstest.Env
	_ = json.Unmarshal(protocol.Typing("r", protocol.User{ID: alice.UserID(), Name: "alice"}), &want)
	if !reflect.DeepEqual(e, want) {
		t.Fatalf("bob got %v; want %v", e, want)
	}
	// A message after the typing: everyone has everything before it.
	if res := carol.SendWait("r", "hi", "m1"); res.Seq == 0 {
		t.Fatalf("send: %+v", res)
	}
	for _, c := range []*wsClient{alice, bob, carol} {
		c.WaitFor("carol's message", func(envs []wstest.Env) bool { return len(wstest.Messages(envs, "r")) == 1 })
	}
	if n := typingsFrom(alice.Snapshot(), "r", alice.UserID()); n != 0 {
		t.Fatalf("alice got her own typing %d times", n)
	}
	for _, c := range []*wsClient{bob, carol} {
		if n := typingsFrom(c.Snapshot(), "r", alice.UserID()); n != 1 {
			t.Fatalf("a member got alice's typing %d times; want 1 (the second is coalesced)", n)
		}
	}
	if res := other.SendWait("elsewhere", "x", "o1"); res.Seq == 0 || other.Count(func(e wstest.Env) bool { return e.Type() == "typing" }) != 0 {
		t.Fatal("a member of another room got a typing frame")
	}
	// Not history: a joiner with since 0 gets carol's message, no typing.
	late := wstest.Dial(t, s.wsURL(query("name", "late")), wstest.Options{Background: true, Welcome: true, Timeout: waitTimeout})
	late.JoinSince("r", ptrU64(0))
	envs := late.Snapshot()
	late.WaitFor("the replay", func(envs []wstest.Env) bool { return len(wstest.Messages(envs, "r")) == 1 })
	if n := late.Count(func(e wstest.Env) bool { return e.Type() == "typing" }); n != 0 {
		t.Fatalf("the replay had %d typing frames (%v)", n, envs)
	}
}

func ptrU64(v uint64) *uint64 { return &v }

// TestTypingRequests: what a typing request is answered with when it is
// not relayed, and that typing has a limit of its own, apart from sends.
func TestTypingRequests(t *testing.T) {
	t.Run("not joined", func(t *testing.T) {
		s := newTestServer(t, nil)
		c := s.dial(t, "")
		c.Send(map[string]any{"type": "typing", "room": "r", "ref": "t1"})
		if e := c.Expect("error"); e.Str("code") != string(protocol.CodeNotJoined) || e.Str("ref") != "t1" {
			t.Fatalf("got %v; want not_joined with ref t1", e)
		}
	})
	t.Run("invalid room", func(t *testing.T) {
		s := newTestServer(t, nil)
		c := s.dial(t, "")
		c.Send(map[string]any{"type": "typing", "room": "a b"})
		if e := c.Expect("error"); e.Str("code") != string(protocol.CodeInvalidRoom) {
			t.Fatalf("got %v; want invalid_room", e)
		}
	})
	t.Run("typing off", func(t *testing.T) {
		s := newTestServer(t, func(c *Config) { c.Typing = false })
		c := s.dial(t, query("room", "r"))
		c.Expect("joined")
		c.Send(map[string]any{"type": "typing", "room": "r", "ref": "t2"})
		if e := c.Expect("error"); e.Str("code") != string(protocol.CodeUnknownType) || e.Str("ref") != "t2" {
			t.Fatalf("got %v; want unknown_type with ref t2", e)
		}
	})
	t.Run("own rate limit, not the send budget", func(t *testing.T) {
		s := newTestServer(t, func(c *Config) { c.SendRate, c.SendBurst = 0.001, 1 })
		c := s.dial(t, query("room", "r"))
		c.Expect("joined")
		// The typing limit follows the send limit (0.001/s, burst 1): at
		// least 1/s, with a burst of 1+5.
		for i := range 1 + typingBurstExtra {
			c.Send(map[string]any{"type": "typing", "room": "r", "ref": "ok" + string(rune('0'+i))})
		}
		c.Send(map[string]any{"type": "typing", "room": "r", "ref": "over"})
		e := c.Expect("error")
		if e.Str("code") != string(protocol.CodeRateLimited) || e.Str("ref") != "over" || e.U64("retry_after_ms") == 0 {
			t.Fatalf("got %v; want rate_limited for the typing over the burst, with retry_after_ms", e)
		}
		// The typing burst cost no send: the one send the budget allows
		// is accepted.
		c.Send(map[string]any{"type": "send", "room": "r", "text": "hi", "ref": "s1"})
		c.Expect("message")
		if a := c.Expect("ack"); a.Str("ref") != "s1" {
			t.Fatalf("got %v; want the ack of s1", a)
		}
		s.obs.waitFor(t, "one rate_limited", func() bool { return s.obs.requests[string(protocol.CodeRateLimited)] == 1 })
	})
}
