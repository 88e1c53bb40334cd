package gateway

import (
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"golang.org/x/time/rate"

	"github.com/chatgate/chatgate/gateway/auth"
	"github.com/chatgate/chatgate/gateway/protocol"
)

// trySend sends a message and returns the ack, or the error envelope of a
// refused send.
func trySend(t testing.TB, c *wsClient, room, ref string) map[string]any {
	t.Helper()
	c.Send(map[string]any{"type": "send", "room": room, "text": "hi", "ref": ref})
	for {
		env := c.Next()
		switch env["type"] {
		case "ack", "error":
			if env["ref"] != ref {
				t.Fatalf("reply %v; want one for ref %s", env, ref)
			}
			return env
		}
	}
}

var refs atomic.Int64

// sentOK sends n messages on c and returns how many were acked; a refusal
// must be rate_limited with a retry hint.
func sentOK(t testing.TB, c *wsClient, room string, n int) int {
	t.Helper()
	ok := 0
	for i := 0; i < n; i++ {
		env := trySend(t, c, room, "r"+strconv.FormatInt(refs.Add(1), 10))
		if env["type"] == "ack" {
			ok++
			continue
		}
		if env["code"] != string(protocol.CodeRateLimited) || num(t, env, "retry_after_ms") <= 0 {
			t.Fatalf("refused with %v; want rate_limited with retry_after_ms", env)
		}
	}
	return ok
}

// The send budget shared by a user's or an address's connections survives
// reconnects: a client that reconnects in a loop gets no fresh burst, and
// many connections together send no more than the shared budget allows.
// Other addresses and users have budgets of their own.
func TestSharedSendBudget(t *testing.T) {
	const shared = 5
	limits := func(c *Config) {
		c.SendRate, c.SendBurst = 1000, 1000 // each connection alone could send plenty
		c.UserSendRate, c.UserSendBurst = 0.001, shared
	}
	t.Run("anonymous: per address", func(t *testing.T) {
		s := newTestServer(t, limits)
		from := func(ip string) *wsClient {
			c := s.dialWith(t, dialOpts{query: query("room", "r"), dialer: func() *websocket.Dialer {
				d := dialerFrom(ip)
				d.Subprotocols = []string{protocol.Subprotocol}
				return d
			}()})
			c.Expect("joined")
			return c
		}
		total := 0
		for i := 0; i < 10; i++ { // a reconnect loop
			c := from("127.0.0.1")
			total += sentOK(t, c, "r", 2)
			closeAndWait(t, s, c)
		}
		if total != shared {
			t.Fatalf("a reconnect loop got %d messages through; want the shared burst of %d", total, shared)
		}
		// Many connections at once share it too.
		a, b := from("127.0.0.2"), from("127.0.0.2")
		if n := sentOK(t, a, "r", 3) + sentOK(t, b, "r", 3); n != shared {
			t.Fatalf("two connections of one address sent %d; want %d together", n, shared)
		}
		// Another address is not affected.
		if n := sentOK(t, from("127.0.0.3"), "r", shared); n != shared {
			t.Fatalf("another address sent %d of %d", n, shared)
		}
	})
	t.Run("jwt: per user, across addresses", func(t *testing.T) {
		s := jwtServer(t, limits)
		as := func(sub, ip string) *wsClient {
			d := dialerFrom(ip)
			d.Subprotocols = []string{protocol.Subprotocol}
			tok := token(t, auth.Claims{RegisteredClaims: regClaims(sub)})
			c := s.dialWith(t, dialOpts{query: query("room", "r"), dialer: d, header: http.Header{"Authorization": {"Bearer " + tok}}})
			c.Expect("joined")
			return c
		}
		if n := sentOK(t, as("alice", "127.0.0.1"), "r", 3) + sentOK(t, as("alice", "127.0.0.2"), "r", 3); n != shared {
			t.Fatalf("alice sent %d from two addresses; want %d together", n, shared)
		}
		if n := sentOK(t, as("bob", "127.0.0.1"), "r", shared); n != shared {
			t.Fatalf("bob sent %d of %d from alice's address", n, shared)
		}
	})
}

// A send refused by one budget costs the other nothing.
func TestAllowSendTakesBothOrNeither(t *testing.T) {
	c := &client{sendLim: rate.NewLimiter(rate.Every(time.Hour), 2), sharedLim: rate.NewLimiter(rate.Every(time.Hour), 1)}
	if ok, _ := c.allowSend(); !ok {
		t.Fatal("first send refused")
	}
	ok, wait := c.allowSend()
	if ok || wait < (59*time.Minute).Milliseconds() {
		t.Fatalf("second send: ok %v, retry after %d ms; want refused for about an hour", ok, wait)
	}
	if got := c.sendLim.Tokens(); got < 0.99 {
		t.Fatalf("the refused send took the connection's token: %v left", got)
	}
	c.sharedLim.SetBurst(2) // room for one more
	c.sharedLim.SetLimit(rate.Inf)
	if ok, _ := c.allowSend(); !ok {
		t.Fatal("the connection's token was lost")
	}
}

// Budgets are kept while used and, once idle, only until they have
// refilled: the map does not grow with every user or address ever seen.
func TestSendBudgetsExpire(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	b := newSendBudgets(1, 4, func() time.Time { return now }) // refills in 4 s
	lim := b.acquire("a", 0, 0)
	if !lim.AllowN(now, 4) {
		t.Fatal("a fresh budget is not full")
	}
	b.release("a")
	// Reconnecting within the refill time finds the spent budget.
	now = now.Add(time.Second)
	if lim2 := b.acquire("a", 0, 0); lim2 != lim || lim2.AllowN(now, 2) {
		t.Fatal("a reconnect got a fresh budget")
	}
	b.release("a")
	// Unused budgets go at once; idle ones once refilled.
	b.acquire("fresh", 0, 0)
	b.release("fresh")
	if n := b.len(); n != 1 {
		t.Fatalf("%d budgets held; want only the spent one", n)
	}
	now = now.Add(3 * time.Second) // a: 1 token at +1s, +3 → full
	b.acquire("b", 0, 0)
	b.release("b")
	if n := b.len(); n != 0 {
		t.Fatalf("%d budgets held after they refilled; want 0", n)
	}
	// Many addresses come and go: only the ones not yet refilled stay.
	for i := 0; i < 1000; i++ {
		now = now.Add(10 * time.Millisecond)
		key := string(rune('A' + i%50))
		b.acquire(key, 0, 0).Allow()
		b.release(key)
	}
	if n := b.len(); n > 50 {
		t.Fatalf("%d budgets held; want at most the 50 keys in use within the refill time", n)
	}
	// A token's limits replace the defaults for all of the user's
	// connections.
	if l := b.acquire("tok", 50, 7); l.Limit() != 50 || l.Burst() != 7 {
		t.Fatalf("token limits not applied: %v/%d", l.Limit(), l.Burst())
	}
}
