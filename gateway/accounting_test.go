package gateway

import (
	"context"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.opentelemetry.io/otel/trace"

	"github.com/chatgate/chatgate/gateway/broker"
	"github.com/chatgate/chatgate/gateway/observe"
	"github.com/chatgate/chatgate/gateway/protocol"
	"github.com/chatgate/chatgate/internal/wstest"
)

// panicRoomBroker is the in-process hub with a bug: joining room "panic"
// panics.
type panicRoomBroker struct{ broker.Broker }

func (b panicRoomBroker) Join(sub broker.Subscriber, room string, since *uint64) (broker.Membership, *protocol.Error) {
	if room == "panic" {
		panic("broker bug")
	}
	return b.Broker.Join(sub, room, since)
}

// clientNamed returns the server side of the connection of the user with
// this display name.
func (s *testServer) clientNamed(t testing.TB, name string) *client {
	t.Helper()
	s.srv.mu.Lock()
	defer s.srv.mu.Unlock()
	for c := range s.srv.clients {
		if c.user.Name == name {
			return c
		}
	}
	t.Fatalf("no connection of %q", name)
	return nil
}

// closeReason is the disconnect reason of the first cause the
// connection's close was given for; empty while it is open.
func (c *client) closeReason() observe.DisconnectReason {
	return c.out.closeCause().reason()
}

// waitClosing waits until the gateway has begun closing c. (It polls: the
// observer's events cannot be waited on here, as Disconnecting is reported
// with the outbox's lock held.)
func waitClosing(t testing.TB, c *client) {
	t.Helper()
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for c.closeReason() == "" {
		select {
		case <-tick.C:
		case <-deadline.C:
			t.Fatal("the gateway did not begin closing the connection")
		}
	}
}

// resetConn drops the client's TCP connection with a reset (RST), as a
// client that crashes or a middlebox that gives up does.
func resetConn(t testing.TB, c *wsClient) {
	t.Helper()
	if err := c.Conn().NetConn().(*net.TCPConn).SetLinger(0); err != nil {
		t.Fatal(err)
	}
	c.Conn().Close()
}

// TestQueueAccountingNeverLeaks drives every way a connection can close
// while bytes are queued for it (every close code the gateway sends, with
// and without flushing the queue first, ended by the peer's reset, a
// failed write or a stuck socket) and checks that the gateway-wide queued
// total is back to 0 once the connections are gone. A leak there would make
// the gateway shed healthy clients with 1013 on an idle gateway.
func TestQueueAccountingNeverLeaks(t *testing.T) {
	type env struct {
		s      *testServer
		victim *wsClient
		vc     *client // the victim's server side
	}
	cases := []struct {
		name   string
		mutate func(*Config)
		// backlog: whether the victim gets a backlog (it stops reading
		// and the room is flooded) before close is called.
		backlog bool
		// evict: the connection ends during the flood by itself (no
		// close call).
		evict bool
		// ballast is added to the gateway-wide total for the test, as if
		// other connections held that much.
		ballast int64
		// close ends the victim's connection, one way or another.
		close func(t *testing.T, e env)
		// reasons are the disconnect reasons the gateway may record for
		// the victim (a reset is seen by whichever loop fails first).
		reasons []observe.DisconnectReason
	}{
		{name: "client close frame while backlogged", backlog: true, reasons: []observe.DisconnectReason{observe.DisconnectClientClose, observe.DisconnectWriteError},
			close: func(t *testing.T, e env) {
				_ = e.victim.Conn().WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(waitTimeout))
			}},
		{name: "reset while backlogged", backlog: true, reasons: []observe.DisconnectReason{observe.DisconnectReadError, observe.DisconnectWriteError},
			close: func(t *testing.T, e env) { resetConn(t, e.victim) }},
		{name: "1003 binary frame (flush), then reset", backlog: true, reasons: []observe.DisconnectReason{observe.DisconnectBinaryFrame},
			close: func(t *testing.T, e env) {
				e.victim.SendRaw(websocket.BinaryMessage, []byte{1})
				waitClosing(t, e.vc) // the flush has begun
				resetConn(t, e.victim)
			}},
		{name: "1003 binary frame (flush), then the write times out", backlog: true, reasons: []observe.DisconnectReason{observe.DisconnectBinaryFrame},
			mutate: func(c *Config) { c.WriteTimeout = 300 * time.Millisecond },
			close: func(t *testing.T, e env) {
				e.victim.SendRaw(websocket.BinaryMessage, []byte{1})
				// The victim never reads again: the flush cannot finish.
			}},
		{name: "1007 invalid UTF-8 (flush), then reset", backlog: true, reasons: []observe.DisconnectReason{observe.DisconnectInvalidUTF8},
			close: func(t *testing.T, e env) {
				e.victim.SendRaw(websocket.TextMessage, []byte{0xff})
				waitClosing(t, e.vc) // the flush has begun
				resetConn(t, e.victim)
			}},
		{name: "1009 too large (flush), then reset", backlog: true, reasons: []observe.DisconnectReason{observe.DisconnectTooLarge},
			close: func(t *testing.T, e env) {
				e.victim.SendRaw(websocket.TextMessage, []byte(strings.Repeat("x", 64<<10)))
				waitClosing(t, e.vc) // the flush has begun
				resetConn(t, e.victim)
			}},
		{name: "1009 too many frames (flush), then reset", backlog: true, reasons: []observe.DisconnectReason{observe.DisconnectTooManyFrames},
			close: func(t *testing.T, e env) {
				if _, err := e.victim.Conn().NetConn().Write(fragmented([]byte(`{}`), e.s.srv.cfg.MessageFrames()+1, true)); err != nil {
					t.Fatal(err)
				}
				waitClosing(t, e.vc) // the flush has begun
				resetConn(t, e.victim)
			}},
		{name: "1008 protocol errors (flush), then reset", backlog: true, reasons: []observe.DisconnectReason{observe.DisconnectProtocolError},
			mutate: func(c *Config) { c.AbuseStrikes = 1 },
			close: func(t *testing.T, e env) {
				for i := 0; i < 3; i++ {
					e.victim.SendRaw(websocket.TextMessage, []byte("{"))
				}
				waitClosing(t, e.vc) // the flush has begun
				resetConn(t, e.victim)
			}},
		{name: "1011 internal error (flush), then reset", backlog: true, reasons: []observe.DisconnectReason{observe.DisconnectInternal},
			close: func(t *testing.T, e env) {
				e.victim.Send(map[string]any{"type": "join", "room": "panic"})
				waitClosing(t, e.vc) // the flush has begun
				resetConn(t, e.victim)
			}},
		{name: "1001 drain (flush), then reset", backlog: true, reasons: []observe.DisconnectReason{observe.DisconnectDrain},
			close: func(t *testing.T, e env) {
				e.vc.close(causeDrain)
				waitClosing(t, e.vc) // the flush has begun
				resetConn(t, e.victim)
			}},
		{name: "1001 drain (flush), then force-closed", backlog: true, reasons: []observe.DisconnectReason{observe.DisconnectDrain},
			close: func(t *testing.T, e env) {
				e.s.srv.BeginDrain()
				ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
				defer cancel()
				e.s.srv.CloseClients(ctx, 0)
				e.s.srv.ForceClose()
			}},
		{name: "4401 token expired (flush), then reset", backlog: true, reasons: []observe.DisconnectReason{observe.DisconnectTokenExpired},
			close: func(t *testing.T, e env) {
				e.vc.close(causeTokenExpired)
				waitClosing(t, e.vc) // the flush has begun
				resetConn(t, e.victim)
			}},
		{name: "4008 slow consumer", backlog: true, reasons: []observe.DisconnectReason{observe.DisconnectSlowConsumer},
			mutate: func(c *Config) { c.QueueBytes = 256 << 10 }, evict: true},
		{name: "1013 overloaded", backlog: true, reasons: []observe.DisconnectReason{observe.DisconnectOverloaded},
			// Other connections (stood in for by ballast) already hold
			// the whole gateway-wide allowance.
			mutate: func(c *Config) { c.TotalQueueBytes = 1 << 20 }, ballast: 1 << 20, evict: true},
		{name: "4001 heartbeat timeout", backlog: true, reasons: []observe.DisconnectReason{observe.DisconnectPingTimeout},
			// The victim neither reads nor sends, nor answers pings.
			mutate: func(c *Config) {
				c.PingInterval, c.PongTimeout = 200*time.Millisecond, time.Second
				c.QueueBytes, c.WriteTimeout = 64<<20, time.Minute // only the heartbeat can trip
			}, evict: true},
		{name: "write timeout", backlog: true, reasons: []observe.DisconnectReason{observe.DisconnectWriteTimeout},
			mutate: func(c *Config) { c.WriteTimeout, c.QueueBytes = 300*time.Millisecond, 64<<20 }, evict: true},
		{name: "1003 binary frame (flush) without backlog", reasons: []observe.DisconnectReason{observe.DisconnectBinaryFrame},
			close: func(t *testing.T, e env) { e.victim.SendRaw(websocket.BinaryMessage, []byte{1}) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newTestServer(t, func(c *Config) {
				c.QueueBytes = 1 << 20
				c.WriteTimeout = waitTimeout
				c.SendRate, c.SendBurst = 1e6, 1e6 // the flood must not be rate-limited
				if tc.mutate != nil {
					tc.mutate(c)
				}
			})
			s.srv.broker = panicRoomBroker{s.srv.broker}
			s.srv.queued.Add(tc.ballast)
			victim := s.dialWith(t, dialOpts{query: query("name", "victim", "room", "r"), dialer: wstest.SmallBufferDialer(waitTimeout)})
			victim.Expect("joined")
			vc := s.clientNamed(t, "victim")
			dialed := 1
			if tc.backlog {
				sender := s.dial(t, query("name", "sender", "room", "r"))
				sender.Expect("joined")
				dialed++
				senderR := startReader(t, sender)
				floodUntil(t, sender, senderR, "r", func() bool {
					return vc.closeReason() != "" || !tc.evict && vc.out.liveBytes() >= 200<<10
				})
				senderR.stop()
			}
			if !tc.evict {
				if r := vc.closeReason(); r != "" {
					t.Fatalf("the victim closed (%s) before the test closed it", r)
				}
				tc.close(t, env{s: s, victim: victim, vc: vc})
			}
			waitClosing(t, vc)
			victim.Conn().Close()
			s.obs.waitFor(t, "every connection closed", func() bool { return s.obs.closed == dialed })
			if r := vc.closeReason(); !slices.Contains(tc.reasons, r) {
				t.Fatalf("the victim closed with %s; want one of %v", r, tc.reasons)
			}
			if n := s.srv.queued.Load() - tc.ballast; n != 0 {
				t.Fatalf("gateway-wide queued total is %d bytes with no connection open; want 0", n)
			}
		})
	}
}

// A history replay does not count against --queue-bytes, however large:
// the gateway chose to send it at once. Live frames behind it still do,
// and so does every byte in the gateway-wide total. Only the number of
// replay frames waiting is capped, at a full history of every room the
// connection may be in: more means the client keeps asking for replays
// it does not read.
func TestReplayAccounting(t *testing.T) {
	srv, err := New(func() Config {
		cfg := testConfig()
		cfg.QueueBytes, cfg.MaxRoomsPerConn = 64<<10, 2
		return cfg
	}(), Options{Broker: testHub(t, 10), History: 10})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	newC := func() *client {
		return newClient(srv, nil, nil, "c", protocol.User{ID: "u", Name: "n"}, admitted{ip: "127.0.0.1", ipKey: "127.0.0.1"}, trace.SpanContext{})
	}
	big := make([]byte, 24<<10) // one escaped 4 KiB text
	replay := func(c *client, n int) {
		for i := 0; i < n; i++ {
			c.Enqueue(&broker.Frame{Data: big, Replay: true})
		}
	}

	c := newC()
	replay(c, 20) // 2 rooms x 10 messages: 480 KiB, 7.5 x --queue-bytes
	if r := c.closeReason(); r != "" {
		t.Fatalf("a full replay of every room closed the client (%s)", r)
	}
	if got, want := srv.QueuedBytes(), int64(20*(len(big)+1)); got != want {
		t.Fatalf("gateway-wide total %d; want the replay's %d bytes", got, want)
	}
	// Live traffic behind the replay is capped as always.
	live := &broker.Frame{Data: make([]byte, 16<<10)}
	for i := 0; i < 3; i++ {
		c.Enqueue(live)
	}
	if r := c.closeReason(); r != "" {
		t.Fatalf("48 KiB of live frames behind a replay closed the client (%s)", r)
	}
	c.Enqueue(live)
	if r := c.closeReason(); r != observe.DisconnectSlowConsumer {
		t.Fatalf("64 KiB of live frames: reason %q; want slow_consumer", r)
	}
	if n := srv.QueuedBytes(); n != 0 {
		t.Fatalf("the evicted client's queue is still counted: %d bytes", n)
	}

	// Draining the replay makes room for another.
	c = newC()
	replay(c, 20)
	take(c)
	replay(c, 20)
	if r := c.closeReason(); r != "" {
		t.Fatalf("a second replay after the first was written closed the client (%s)", r)
	}
	// More replay frames waiting than every room's history: slow consumer.
	replay(c, 1)
	if r := c.closeReason(); r != observe.DisconnectSlowConsumer {
		t.Fatalf("%d replay frames waiting: reason %q; want slow_consumer", 21, r)
	}
	if n := srv.QueuedBytes(); n != 0 {
		t.Fatalf("the evicted client's queue is still counted: %d bytes", n)
	}
}
