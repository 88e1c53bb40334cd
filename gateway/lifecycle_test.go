package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/chatgate/chatgate/gateway/observe"
	"github.com/chatgate/chatgate/gateway/protocol"
	"github.com/chatgate/chatgate/internal/wstest"
)

// bgReader reads every envelope from a client in the background and checks
// that message seqs stay contiguous.
type bgReader struct {
	t       *testing.T
	c       *wsClient
	done    chan struct{}
	mu      sync.Mutex
	changed chan struct{} // closed and replaced whenever seen grows
	seen    int
	last    int64
	bad     error
}

func startReader(t *testing.T, c *wsClient) *bgReader {
	t.Helper()
	r := &bgReader{t: t, c: c, done: make(chan struct{}), changed: make(chan struct{})}
	go func() {
		defer close(r.done)
		for {
			env, err := c.TryNext()
			if err != nil {
				return
			}
			if env["type"] != "message" {
				continue
			}
			seq := int64(env["seq"].(float64))
			r.mu.Lock()
			if r.last != 0 && seq != r.last+1 && r.bad == nil {
				r.bad = fmt.Errorf("seq %d after %d", seq, r.last)
			}
			r.last = seq
			r.seen++
			close(r.changed)
			r.changed = make(chan struct{})
			r.mu.Unlock()
		}
	}()
	return r
}

// waitSeen blocks until the reader has seen at least n messages.
func (r *bgReader) waitSeen(n int) {
	r.t.Helper()
	timer := time.NewTimer(waitTimeout)
	defer timer.Stop()
	for {
		r.mu.Lock()
		seen, ch := r.seen, r.changed
		r.mu.Unlock()
		if seen >= n {
			return
		}
		select {
		case <-ch:
		case <-r.done:
			r.t.Fatalf("reader ended after %d of %d messages", seen, n)
		case <-timer.C:
			r.t.Fatalf("reader saw %d of %d messages", seen, n)
		}
	}
}

// stop closes the connection, ends the reader and returns how many
// messages it saw.
func (r *bgReader) stop() int {
	r.c.Conn().Close()
	<-r.done
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.bad != nil {
		r.t.Errorf("reader: %v", r.bad)
	}
	return r.seen
}

// floodUntil sends 2 KiB messages to room until cond holds, keeping at most
// a small window in flight (waiting for the sender's own copies, and for
// the copies of every reader in keepUp), so only a client that stops
// reading can fall behind, however slowly the test's own readers run. It
// returns how many it sent.
func floodUntil(t *testing.T, sender *wsClient, senderReader *bgReader, room string, cond func() bool, keepUp ...*bgReader) int {
	t.Helper()
	const window = 8
	text := strings.Repeat("x", 2048)
	deadline := time.Now().Add(waitTimeout)
	sent := 0
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not reached after %d messages", sent)
		}
		senderReader.waitSeen(sent - window)
		for _, r := range keepUp {
			r.waitSeen(sent - window)
		}
		sender.Send(map[string]any{"type": "send", "room": room, "text": text})
		sent++
	}
	return sent
}

func TestSlowConsumerEvicted(t *testing.T) {
	cfg := testConfig()
	cfg.QueueBytes = 64 << 10
	cfg.WriteTimeout = 30 * time.Second // the queue cap, not the deadline, must trip
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
	defer tp.Shutdown(context.Background())
	rec := newRecObserver()
	s := startTestServer(t, cfg, Options{Observer: rec, Tracer: tp}, rec)
	slow := s.dialWith(t, dialOpts{query: query("name", "slow", "room", "r"), dialer: wstest.SmallBufferDialer(waitTimeout)})
	slow.Expect("joined")
	healthy := s.dial(t, query("name", "healthy", "room", "r"))
	healthy.Expect("joined")
	sender := s.dial(t, query("name", "sender", "room", "r"))
	sender.Expect("joined")
	healthyR := startReader(t, healthy)
	senderR := startReader(t, sender)

	evicted := func() bool { return s.obs.disconnectCount(observe.DisconnectSlowConsumer) > 0 }
	sent := floodUntil(t, sender, senderR, "r", evicted, healthyR)

	// The evicted client, reading again (with room to read fast), finds
	// 4008 with a retry hint after whatever was already in flight.
	if err := slow.Conn().NetConn().(*net.TCPConn).SetReadBuffer(4 << 20); err != nil {
		t.Fatal(err)
	}
	reason := slow.ExpectClose(protocol.CloseSlowConsumer)
	cr, ok := protocol.ParseCloseReason(reason)
	if !ok || cr.R != "slow_consumer" || cr.RetryMs <= 0 {
		t.Fatalf("close reason %q; want slow_consumer with retry_ms", reason)
	}
	// A few more messages still reach the healthy client in order.
	for i := 0; i < 10; i++ {
		sender.Send(map[string]any{"type": "send", "room": "r", "text": "after"})
	}
	total := sent + 10
	healthyR.waitSeen(total)
	senderR.waitSeen(total)
	if n := healthyR.stop(); n != total {
		t.Fatalf("healthy client saw %d messages; want %d", n, total)
	}
	senderR.stop()
	if n := s.obs.disconnectCount(observe.DisconnectSlowConsumer); n != 1 {
		t.Fatalf("%d slow-consumer evictions; want exactly 1", n)
	}
	evicts := spanNamed(sr.Ended(), "chatgate.evict")
	if len(evicts) != 1 || attrs(evicts[0])["chatgate.disconnect.reason"].AsString() != "slow_consumer" {
		t.Fatalf("eviction spans %v; want one slow_consumer", evicts)
	}
}

func TestWriteTimeoutDisconnects(t *testing.T) {
	s := newTestServer(t, func(c *Config) {
		c.QueueBytes = 64 << 20 // far above what the test sends
		c.TotalQueueBytes = 1 << 30
		c.WriteTimeout = 300 * time.Millisecond
	})
	stuck := s.dialWith(t, dialOpts{query: query("name", "stuck", "room", "r"), dialer: wstest.SmallBufferDialer(waitTimeout)})
	stuck.Expect("joined")
	sender := s.dial(t, query("name", "sender", "room", "r"))
	sender.Expect("joined")
	senderR := startReader(t, sender)
	floodUntil(t, sender, senderR, "r", func() bool { return s.obs.disconnectCount(observe.DisconnectWriteTimeout) > 0 })
	// The socket was dropped without a close frame.
	for {
		_, err := stuck.TryNext()
		if err == nil {
			continue
		}
		var ce *websocket.CloseError
		if errors.As(err, &ce) && ce.Code != websocket.CloseAbnormalClosure {
			t.Fatalf("got close %d; want the connection dropped", ce.Code)
		}
		break
	}
	senderR.stop()
}

func TestHeartbeat(t *testing.T) {
	s := newTestServer(t, func(c *Config) {
		c.PingInterval = 50 * time.Millisecond
		c.PongTimeout = 300 * time.Millisecond
	})
	t.Run("silent client closed with 4001", func(t *testing.T) {
		c := s.dial(t, "")
		// Not reading means not answering pings; when it reads at last it
		// still ignores them (answering a closed socket would fail).
		c.Conn().SetPingHandler(func(string) error { return nil })
		s.obs.waitFor(t, "heartbeat timeout", func() bool { return s.obs.disconnects[observe.DisconnectPingTimeout] > 0 })
		reason := c.ExpectClose(protocol.CloseHeartbeatTimeout)
		if cr, ok := protocol.ParseCloseReason(reason); !ok || cr.R != "heartbeat_timeout" {
			t.Fatalf("reason %q", reason)
		}
	})
	t.Run("client answering pings stays", func(t *testing.T) {
		c := s.dial(t, "")
		pings := 0
		c.Conn().SetPingHandler(func(data string) error {
			pings++
			return c.Conn().WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
		})
		// Read for several pong timeouts: only our own read deadline may
		// end it, never a close from the server.
		_ = c.Conn().SetReadDeadline(time.Now().Add(4 * 300 * time.Millisecond))
		_, _, err := c.Conn().ReadMessage()
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("read ended with %v; want our own deadline", err)
		}
		if pings < 5 {
			t.Fatalf("%d pings in 1.2s at a 50ms interval", pings)
		}
	})
}

func TestDrainDeliversAckedMessagesBeforeClose(t *testing.T) {
	s := newTestServer(t, nil)
	const n = 5
	clients := make([]*wsClient, n)
	for i := range clients {
		clients[i] = s.dial(t, query("name", fmt.Sprintf("u%d", i), "room", "r"))
		clients[i].Expect("joined")
	}
	const msgs = 20
	for i := 0; i < msgs; i++ {
		clients[0].Send(map[string]any{"type": "send", "room": "r", "text": fmt.Sprint(i), "ref": fmt.Sprint(i)})
	}
	// Wait until the sender holds every ack: each message is then acked,
	// hence queued to every member.
	acks := 0
	var got0 []int64
	for acks < msgs {
		env := clients[0].Next()
		switch env["type"] {
		case "ack":
			acks++
		case "message":
			got0 = append(got0, num(t, env, "seq"))
		}
	}
	s.srv.BeginDrain()
	resp := s.dialStatus(t, "", nil)
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("dial while draining: %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	s.srv.CloseClients(ctx, 200*time.Millisecond)
	for i, c := range clients {
		seqs := got0
		if i > 0 {
			seqs = nil
		}
		var reason string
		for {
			env, err := c.TryNext()
			if err != nil {
				var ce *websocket.CloseError
				if !errors.As(err, &ce) || ce.Code != protocol.CloseGoingAway {
					t.Fatalf("client %d ended with %v; want 1001", i, err)
				}
				reason = ce.Text
				break
			}
			if env["type"] == "message" {
				seqs = append(seqs, num(t, env, "seq"))
			}
		}
		if len(seqs) != msgs {
			t.Fatalf("client %d got %d of %d acked messages before 1001", i, len(seqs), msgs)
		}
		cr, ok := protocol.ParseCloseReason(reason)
		if !ok || cr.R != "drain" || cr.RetryMs <= 0 {
			t.Fatalf("client %d close reason %q", i, reason)
		}
	}
	if err := s.srv.Wait(ctx); err != nil {
		t.Fatalf("handlers still running after every client closed: %v", err)
	}
	if got := s.obs.disconnectCount(observe.DisconnectDrain); got != n {
		t.Fatalf("%d drain disconnects; want %d", got, n)
	}
}

func TestDisconnectReasons(t *testing.T) {
	s := newTestServer(t, nil)
	t.Run("close frame is a client close", func(t *testing.T) {
		c := s.dial(t, "")
		before := s.obs.disconnectCount(observe.DisconnectClientClose)
		_ = c.Conn().WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
		s.obs.waitFor(t, "client_close", func() bool { return s.obs.disconnects[observe.DisconnectClientClose] == before+1 })
	})
	t.Run("vanished peer is a read error", func(t *testing.T) {
		c := s.dial(t, "")
		before := s.obs.disconnectCount(observe.DisconnectReadError)
		c.Conn().NetConn().Close() // no close frame
		s.obs.waitFor(t, "read_error", func() bool { return s.obs.disconnects[observe.DisconnectReadError] == before+1 })
	})
}
