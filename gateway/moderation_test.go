package gateway

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/chatgate/chatgate/gateway/auth"
	"github.com/chatgate/chatgate/gateway/broker"
	"github.com/chatgate/chatgate/gateway/observe"
	"github.com/chatgate/chatgate/gateway/protocol"
	"github.com/chatgate/chatgate/internal/wstest"
)

// The server API's moderation as a connection sees it: a disconnect the
// broker hands to the Server closes the named connections with 4403, and a
// ban's removal frees the room's slot.

func (s *testServer) dialAs(t *testing.T, user string) *wsClient {
	t.Helper()
	return s.dialWith(t, dialOpts{header: http.Header{"Authorization": {"Bearer " + token(t, auth.Claims{RegisteredClaims: regClaims(user)})}}})
}

// TestDisconnectClosesNamedConnections: a disconnect of a user closes
// every connection of theirs with 4403 kicked, after what was queued to
// them; one of a connection closes that one alone; others are untouched.
func TestDisconnectClosesNamedConnections(t *testing.T) {
	s := jwtServer(t, nil)
	op := s.srv.broker.(broker.Operator)
	alice1, alice2, bob, carol := s.dialAs(t, "alice"), s.dialAs(t, "alice"), s.dialAs(t, "bob"), s.dialAs(t, "carol")
	for _, c := range []*wsClient{alice1, alice2, bob, carol} {
		c.Join("r")
	}
	sent := bob.SendWait("r", "before the kick", "b1")
	n, perr := op.Disconnect(context.Background(), broker.Target{User: "alice"})
	if perr != nil || n != 2 {
		t.Fatalf("Disconnect(alice) = %d, %v; want 2", n, perr)
	}
	for _, c := range []*wsClient{alice1, alice2} {
		reason := c.ExpectClose(protocol.CloseKicked)
		if cr, ok := protocol.ParseCloseReason(reason); !ok || cr.R != "kicked" {
			t.Fatalf("close reason %q; want kicked", reason)
		}
		if wstest.Seqs(c.Snapshot(), "r")[0] != sent.Seq {
			t.Fatalf("the message queued before the kick was not written first")
		}
	}
	bobConn := bob.Welcome().Str("conn")
	if n, _ := op.Disconnect(context.Background(), broker.Target{User: "carol", Conn: bobConn}); n != 0 {
		t.Fatalf("a target whose user and connection disagree closed %d", n)
	}
	if n, _ := op.Disconnect(context.Background(), broker.Target{Conn: bobConn}); n != 1 {
		t.Fatalf("Disconnect(bob's connection) = %d; want 1", n)
	}
	bob.ExpectClose(protocol.CloseKicked)
	if res := carol.SendWait("r", "still here", "c1"); res.Seq == 0 {
		t.Fatalf("carol's send after the kicks: %+v; want an ack", res)
	}
	s.obs.waitFor(t, "3 kicked disconnects", func() bool { return s.obs.disconnects[observe.DisconnectKicked] == 3 })
}

// TestBanFreesTheRoomSlot: a connection a ban removed from a room is told
// with left (reason banned), its sends there get not_joined, its join gets
// forbidden with retry_after_ms, and the room no longer counts against
// --max-rooms.
func TestBanFreesTheRoomSlot(t *testing.T) {
	s := jwtServer(t, func(c *Config) { c.MaxRoomsPerConn = 1 })
	op := s.srv.broker.(broker.Operator)
	c := s.dialAs(t, "mallory")
	c.Join("r")
	if perr := op.Ban(context.Background(), "r", "mallory", time.Hour); perr != nil {
		t.Fatal(perr)
	}
	left := c.Expect("left")
	if left.Str("room") != "r" || left.Str("reason") != protocol.LeftReasonBanned {
		t.Fatalf("got %v; want left r with reason banned", left)
	}
	if res := c.SendWait("r", "hello?", "s1"); res.Code != string(protocol.CodeNotJoined) {
		t.Fatalf("a send to the room after the ban: %+v; want not_joined", res)
	}
	c.Send(map[string]any{"type": "join", "room": "r", "ref": "j1"})
	e := c.WaitEnv("the answer to j1", func(e wstest.Env) bool { return e.Str("ref") == "j1" })
	if e.Str("code") != string(protocol.CodeForbidden) || e.Str("ref") != "j1" || e.U64("retry_after_ms") == 0 {
		t.Fatalf("a join of the room after the ban: %v; want forbidden with ref and retry_after_ms", e)
	}
	if j := c.JoinSince("elsewhere", nil); j.Str("room") != "elsewhere" {
		t.Fatalf("joining another room: %v", j)
	}
}
