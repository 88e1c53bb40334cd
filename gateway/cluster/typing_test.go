package cluster

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/chatgate/chatgate/gateway"
	"github.com/chatgate/chatgate/gateway/broker"
	"github.com/chatgate/chatgate/gateway/protocol"
	"github.com/chatgate/chatgate/internal/natstest"
	"github.com/chatgate/chatgate/internal/wstest"
)

// Issue 17 across replicas: guests who come back on another replica, and
// typing indicators. The gateways here run as the binary runs them in
// cluster mode (a shared guest key file, SharedBroker).

// guestNode is a gateway on its own backplane.
type guestNode struct {
	bp  *Backplane
	srv *gateway.Server
	ts  *httptest.Server
}

func startGuestNode(t *testing.T, ns *natstest.Server, name, keyFile string, grace time.Duration) *guestNode {
	t.Helper()
	bcfg := testBackplaneConfig(t, ns, name)
	bp := newBackplane(t, bcfg)
	cfg := gateway.DefaultConfig()
	cfg.NodeID = name
	cfg.GuestKeyFile, cfg.PresenceGrace = keyFile, grace
	cfg.DrainDelay, cfg.DrainWindow = 0, 0
	srv, ts := serveGateway(t, cfg, gateway.Options{Broker: bp, Ready: bp.Health, Logger: bcfg.Logger, Web: http.NotFoundHandler(), SharedBroker: true})
	return &guestNode{bp: bp, srv: srv, ts: ts}
}

// dialGuest connects to n as name, offering cred when not empty, reading
// in the background.
func (n *guestNode) dialGuest(t *testing.T, name, cred string) *wstest.Client {
	t.Helper()
	protos := []string{protocol.Subprotocol}
	if cred != "" {
		protos = append(protos, "guest."+cred)
	}
	u := "ws" + strings.TrimPrefix(n.ts.URL, "http") + "/ws?name=" + name
	d := &websocket.Dialer{HandshakeTimeout: waitTimeout, Subprotocols: protos}
	return wstest.Dial(t, u, wstest.Options{Dialer: d, Background: true, Welcome: true, Timeout: waitTimeout})
}

func credentialOf(c *wstest.Client) string {
	g, _ := c.Welcome()["guest"].(map[string]any)
	s, _ := g["credential"].(string)
	return s
}

func presenceLists(envs []wstest.Env, key, id string) bool {
	for _, e := range envs {
		if e.Type() == "presence" && slices.Contains(e.Users(key), id) {
			return true
		}
	}
	return false
}

func typingFrom(envs []wstest.Env, id string) int {
	n := 0
	for _, e := range envs {
		if e.Type() == "typing" {
			if from, _ := e["from"].(map[string]any); from["id"] == id {
				n++
			}
		}
	}
	return n
}

// markerSub is a broker-level member that only marks presence.
type markerSub struct{ user protocol.User }

func (s *markerSub) User() protocol.User     { return s.user }
func (s *markerSub) Enqueue(f *broker.Frame) {}

// TestTypingAcrossReplicas: a typing envelope sent on one replica reaches
// the room's members of other users on the other, as {"type":"typing",
// "room","from"} without a seq, and not the sender.
func TestTypingAcrossReplicas(t *testing.T) {
	ns := startNATS(t)
	a := startGuestNode(t, ns, "gw-a", "", time.Minute)
	b := startGuestNode(t, ns, "gw-b", "", time.Minute)
	bob := b.dialGuest(t, "bob", "")
	bob.JoinSince("r", nil)
	alice := a.dialGuest(t, "alice", "")
	alice.JoinSince("r", nil)
	carol := a.dialGuest(t, "carol", "")
	carol.JoinSince("r", nil)
	bob.WaitFor("alice and carol online", func(envs []wstest.Env) bool {
		set, _ := wstest.Members(envs, "r")
		return set[alice.UserID()] && set[carol.UserID()]
	})

	alice.Send(map[string]any{"type": "typing", "room": "r"})
	e := bob.WaitEnv("alice typing", func(e wstest.Env) bool { return e.Type() == "typing" })
	b1, _ := json.Marshal(e)
	want, _ := json.Marshal(map[string]any{"type": "typing", "room": "r", "from": map[string]any{"id": alice.UserID(), "name": "alice"}})
	if string(b1) != string(want) {
		t.Fatalf("bob got %s; want %s", b1, want)
	}
	// carol's typing leaves the same replica after alice's: once alice
	// has it, she would have had her own.
	carol.Send(map[string]any{"type": "typing", "room": "r"})
	alice.WaitFor("carol typing", func(envs []wstest.Env) bool { return typingFrom(envs, carol.UserID()) == 1 })
	bob.WaitFor("carol typing", func(envs []wstest.Env) bool { return typingFrom(envs, carol.UserID()) == 1 })
	if n := typingFrom(alice.Snapshot(), alice.UserID()); n != 0 {
		t.Fatalf("alice got %d of her own typing frames", n)
	}
	// A second one from alice within the interval is coalesced.
	alice.Send(map[string]any{"type": "typing", "room": "r"})
	dave := a.dialGuest(t, "dave", "")
	dave.JoinSince("r", nil)
	dave.Send(map[string]any{"type": "typing", "room": "r"})
	bob.WaitFor("dave typing", func(envs []wstest.Env) bool { return typingFrom(envs, dave.UserID()) == 1 })
	if n := typingFrom(bob.Snapshot(), alice.UserID()); n != 1 {
		t.Fatalf("bob got alice's typing %d times within %v; want once", n, broker.TypingInterval)
	}
}

// TestGuestComesBackOnAnotherReplica: replicas sharing the guest key file;
// alice's connection to one drops and she reconnects, with her credential,
// to the other: she is the same user, and bob, watching from the second
// replica, sees her neither leave nor join, while she is away or after.
func TestGuestComesBackOnAnotherReplica(t *testing.T) {
	ns := startNATS(t)
	keyFile := filepath.Join(t.TempDir(), "guest.key")
	if err := os.WriteFile(keyFile, []byte("shared-guest-key-0123456789abcdefghijklmnopqrstuvwxyz\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a := startGuestNode(t, ns, "gw-a", keyFile, time.Minute)
	b := startGuestNode(t, ns, "gw-b", keyFile, time.Minute)
	bob := b.dialGuest(t, "bob", "")
	bob.JoinSince("r", nil)
	alice := a.dialGuest(t, "alice", "")
	id, cred := alice.UserID(), credentialOf(alice)
	alice.JoinSince("r", nil)
	bob.WaitFor("alice online", func(envs []wstest.Env) bool { return presenceLists(envs, "joined", id) })
	before := len(bob.Snapshot())

	// barrier joins a marker on a's backplane: a publishes presence in
	// order, so bob seeing the marker has seen any change a made before.
	barrier := func(name string) {
		t.Helper()
		m := &markerSub{user: protocol.User{ID: "u_" + name, Name: name}}
		if _, perr := a.bp.Join(m, "r", nil); perr != nil {
			t.Fatal(perr)
		}
		bob.WaitFor(name+" online", func(envs []wstest.Env) bool { return presenceLists(envs, "joined", m.user.ID) })
	}
	_ = alice.Conn().NetConn().Close() // the network drops
	waitUntil(t, "gw-a to notice", func() bool { return a.srv.Conns() == 0 })
	barrier("marker1")
	again := b.dialGuest(t, "alice", cred)
	if again.UserID() != id {
		t.Fatalf("on the other replica alice is %s; want %s", again.UserID(), id)
	}
	again.JoinSince("r", nil)
	// gw-a lets go of her membership there (as its grace would end).
	a.srv.Close()
	barrier("marker2")
	for _, e := range bob.Snapshot()[before:] {
		if e.Type() == "presence" && (slices.Contains(e.Users("left"), id) || slices.Contains(e.Users("joined"), id)) {
			t.Fatalf("alice's move showed in presence: %v", e)
		}
	}
	if set, _ := wstest.Members(bob.Snapshot(), "r"); !set[id] {
		t.Fatalf("members %v; want alice", set)
	}
}
