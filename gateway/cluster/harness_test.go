package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/chatgate/chatgate/gateway"
	"github.com/chatgate/chatgate/gateway/broker"
	"github.com/chatgate/chatgate/gateway/protocol"
	"github.com/chatgate/chatgate/internal/natstest"
	gwmetrics "github.com/chatgate/chatgate/metrics"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// waitTimeout bounds every wait; nothing sleeps and hopes.
const waitTimeout = 15 * time.Second

// ---- embedded NATS ----

// startNATS runs a JetStream-enabled nats-server on a random loopback port
// with a store in a temp dir; Restart brings it back on the same port and
// store.
func startNATS(t testing.TB) *natstest.Server { return natstest.Start(t, "test-nats") }

// ---- backplanes and gateways ----

type tlogWriter struct{ t testing.TB }

func (w tlogWriter) Write(p []byte) (int, error) {
	w.t.Logf("%s", bytes.TrimRight(p, "\n"))
	return len(p), nil
}

func testLogger(t testing.TB, name string) *slog.Logger {
	level := slog.LevelInfo
	if os.Getenv("CHATGATE_TEST_DEBUG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(tlogWriter{t}, &slog.HandlerOptions{Level: level})).With("node", name)
}

// testBackplaneConfig suits tests: quick presence and reconnects.
func testBackplaneConfig(t testing.TB, ns *natstest.Server, name string) Config {
	return Config{
		URL:              ns.URL(),
		NodeID:           name,
		History:          100,
		Storage:          jetstream.FileStorage,
		Logger:           testLogger(t, name),
		PresenceInterval: 20 * time.Millisecond,
		PresenceSync:     200 * time.Millisecond,
		PresenceTTL:      2 * time.Second,
		ReconnectWait:    50 * time.Millisecond,
		PublishTimeout:   2 * time.Second,
	}
}

func newBackplane(t testing.TB, cfg Config) *Backplane {
	t.Helper()
	bp, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = bp.Close() })
	waitUntil(t, "backplane up", bp.Up)
	return bp
}

type node struct {
	name string
	bp   *Backplane
	srv  *gateway.Server
	ts   *httptest.Server
	reg  *prometheus.Registry
}

func startNode(t testing.TB, ns *natstest.Server, name string, mutate func(*Config)) *node {
	t.Helper()
	reg := prometheus.NewRegistry()
	bcfg := testBackplaneConfig(t, ns, name)
	bcfg.Registry = reg
	if mutate != nil {
		mutate(&bcfg)
	}
	bp := newBackplane(t, bcfg)
	cfg := gateway.DefaultConfig()
	cfg.NodeID = name
	cfg.SendRate, cfg.SendBurst = 10000, 10000
	cfg.JoinRate, cfg.JoinBurst = 10000, 10000
	cfg.DrainDelay, cfg.DrainWindow = 0, 0
	cfg.PresenceInterval = bcfg.PresenceInterval
	// The gateway's own metrics share the registry, as in the binary, so
	// chatgate_ready can be compared with /readyz.
	obs := gwmetrics.New(reg, gwmetrics.BuildInfo{Version: "test"}, nil)
	srv, err := gateway.New(cfg, gateway.Options{Broker: bp, Ready: bp.Health, Logger: bcfg.Logger, Observer: obs, Web: http.NotFoundHandler()})
	if err != nil {
		t.Fatalf("gateway.New: %v", err)
	}
	srv.SetReady(true)
	ts := httptest.NewServer(srv)
	t.Cleanup(func() {
		srv.BeginDrain()
		srv.ForceClose()
		ts.Close()
		srv.Close()
	})
	return &node{name: name, bp: bp, srv: srv, ts: ts, reg: reg}
}

func (n *node) wsURL() string { return "ws" + strings.TrimPrefix(n.ts.URL, "http") + "/ws" }

// readyz answers the admin /readyz of n.
func (n *node) readyz(t testing.TB) (int, string) {
	rec := httptest.NewRecorder()
	n.srv.AdminHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	return rec.Code, strings.TrimSpace(rec.Body.String())
}

// checkReadiness fails unless /readyz answers code with body and
// chatgate_ready agrees with it.
func (n *node) checkReadiness(t testing.TB, code int, body string) {
	t.Helper()
	gotCode, gotBody := n.readyz(t)
	if gotCode != code || gotBody != body {
		t.Fatalf("%s: /readyz %d %q; want %d %q", n.name, gotCode, gotBody, code, body)
	}
	want := 0.0
	if code == http.StatusOK {
		want = 1
	}
	if got := n.gauge(t, "chatgate_ready"); got != want {
		t.Fatalf("%s: chatgate_ready = %v while /readyz answers %d %q", n.name, got, gotCode, gotBody)
	}
}

// gauge reads a gauge of n's registry.
func (n *node) gauge(t testing.TB, name string) float64 {
	t.Helper()
	mfs, err := n.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			m := mf.GetMetric()[0]
			if m.GetGauge() != nil {
				return m.GetGauge().GetValue()
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// waitUntil polls cond until it holds or the wait times out.
func waitUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// ---- WebSocket test client ----

type env map[string]any

func (e env) typ() string { s, _ := e["type"].(string); return s }
func (e env) str(k string) string {
	s, _ := e[k].(string)
	return s
}
func (e env) u64(k string) uint64 {
	f, _ := e[k].(float64)
	return uint64(f)
}

// wsClient reads in the background; tests wait on what it has received.
type wsClient struct {
	t    testing.TB
	conn *websocket.Conn
	node string

	mu      sync.Mutex
	envs    []env
	changed chan struct{} // closed and replaced on every change
	closed  bool
	code    int // close code, when closed with a close frame
	done    chan struct{}
	userID  string
}

func dial(t testing.TB, n *node, query string) *wsClient {
	t.Helper()
	c, err := tryDial(t, n, query)
	if err != nil {
		t.Fatalf("dial %s: %v", n.name, err)
	}
	return c
}

func tryDial(t testing.TB, n *node, query string) (*wsClient, error) {
	d := &websocket.Dialer{HandshakeTimeout: waitTimeout, Subprotocols: []string{protocol.Subprotocol}}
	u := n.wsURL()
	if query != "" {
		u += "?" + query
	}
	conn, _, err := d.Dial(u, nil)
	if err != nil {
		return nil, err
	}
	c := &wsClient{t: t, conn: conn, node: n.name, changed: make(chan struct{}), done: make(chan struct{})}
	go c.read()
	t.Cleanup(c.close)
	w := c.waitEnv("welcome", func(e env) bool { return e.typ() == "welcome" })
	u2, _ := w["user"].(map[string]any)
	c.userID, _ = u2["id"].(string)
	return c, nil
}

func (c *wsClient) read() {
	defer close(c.done)
	for {
		_, data, err := c.conn.ReadMessage()
		c.mu.Lock()
		if err != nil {
			c.closed = true
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				c.code = ce.Code
			}
			close(c.changed)
			c.changed = make(chan struct{})
			c.mu.Unlock()
			return
		}
		for _, line := range bytes.Split(data, []byte{'\n'}) {
			var e env
			if json.Unmarshal(line, &e) == nil {
				c.envs = append(c.envs, e)
			}
		}
		close(c.changed)
		c.changed = make(chan struct{})
		c.mu.Unlock()
	}
}

func (c *wsClient) close() {
	_ = c.conn.Close()
	<-c.done
}

func (c *wsClient) send(v any) {
	b, _ := json.Marshal(v)
	c.mu.Lock() // gorilla allows one writer; tests may write from several goroutines
	defer c.mu.Unlock()
	_ = c.conn.SetWriteDeadline(time.Now().Add(waitTimeout))
	_ = c.conn.WriteMessage(websocket.TextMessage, b)
}

// waitFor blocks until cond holds over everything received, or the
// connection closed (ok false), or the wait times out.
func (c *wsClient) waitFor(what string, cond func(envs []env) bool) bool {
	c.t.Helper()
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		ok, closed, ch := cond(c.envs), c.closed, c.changed
		c.mu.Unlock()
		if ok {
			return true
		}
		if closed {
			return false
		}
		select {
		case <-ch:
		case <-deadline.C:
			c.t.Fatalf("%s: timed out waiting for %s", c.node, what)
		}
	}
}

// waitEnv returns the first envelope matching match.
func (c *wsClient) waitEnv(what string, match func(env) bool) env {
	c.t.Helper()
	var found env
	if !c.waitFor(what, func(envs []env) bool {
		for _, e := range envs {
			if match(e) {
				found = e
				return true
			}
		}
		return false
	}) {
		c.t.Fatalf("%s: connection closed while waiting for %s", c.node, what)
	}
	return found
}

func (c *wsClient) snapshot() []env {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.envs)
}

func (c *wsClient) isClosed() (bool, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed, c.code
}

// join sends a join (with since when not nil) and returns the joined that
// follows it.
func (c *wsClient) join(room string, since *uint64) env {
	c.t.Helper()
	n := len(c.snapshot())
	msg := map[string]any{"type": "join", "room": room}
	if since != nil {
		msg["since"] = *since
	}
	c.send(msg)
	return c.waitEnv("joined "+room, func(e env) bool {
		return e.typ() == "joined" && e.str("room") == room && c.index(e) >= n
	})
}

// index finds e (by identity) in the received envelopes.
func (c *wsClient) index(e env) int {
	for i, x := range c.envs {
		if fmt.Sprintf("%p", x) == fmt.Sprintf("%p", e) {
			return i
		}
	}
	return -1
}

// result of one send: the ack's seq, or the error code.
type sendResult struct {
	seq    uint64
	code   string
	closed bool
}

// sendWait sends text with ref and waits for its ack or error.
func (c *wsClient) sendWait(room, text, ref string) sendResult {
	c.t.Helper()
	c.send(map[string]any{"type": "send", "room": room, "text": text, "ref": ref})
	var res sendResult
	ok := c.waitFor("ack "+ref, func(envs []env) bool {
		for _, e := range envs {
			if e.str("ref") != ref {
				continue
			}
			switch e.typ() {
			case "ack":
				res.seq = e.u64("seq")
				return true
			case "error":
				res.code = e.str("code")
				return true
			}
		}
		return false
	})
	res.closed = !ok
	return res
}

// messages returns the room's message envelopes received, in order.
func messages(envs []env, room string) []env {
	var out []env
	for _, e := range envs {
		if e.typ() == "message" && e.str("room") == room {
			out = append(out, e)
		}
	}
	return out
}

// seqs lists the message seqs of room in envs.
func seqs(envs []env, room string) []uint64 {
	var out []uint64
	for _, e := range messages(envs, room) {
		out = append(out, e.u64("seq"))
	}
	return out
}

// members applies joined and presence frames of room as the protocol
// says: the member set and online count as of the latest frame.
func members(envs []env, room string) (map[string]bool, int) {
	set := map[string]bool{}
	online := 0
	for _, e := range envs {
		if e.str("room") != room {
			continue
		}
		switch e.typ() {
		case "joined":
			set = map[string]bool{}
			for _, m := range list(e, "members") {
				set[m] = true
			}
			online = int(e.u64("online"))
		case "presence":
			for _, m := range list(e, "joined") {
				set[m] = true
			}
			for _, m := range list(e, "left") {
				delete(set, m)
			}
			online = int(e.u64("online"))
		}
	}
	return set, online
}

func list(e env, k string) []string {
	var ids []string
	xs, _ := e[k].([]any)
	for _, x := range xs {
		if m, ok := x.(map[string]any); ok {
			id, _ := m["id"].(string)
			ids = append(ids, id)
		}
	}
	return ids
}

// ---- a broker-level subscriber ----

// fakeSub is a broker.Subscriber with a fixed user that records frames.
type fakeSub struct {
	user protocol.User
	mu   sync.Mutex
	envs []env
}

func (s *fakeSub) User() protocol.User { return s.user }
func (s *fakeSub) Enqueue(f *broker.Frame) {
	var e env
	_ = json.Unmarshal(f.Data, &e)
	s.mu.Lock()
	s.envs = append(s.envs, e)
	s.mu.Unlock()
}
func (s *fakeSub) snapshot() []env {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.envs)
}

func mustJoin(t testing.TB, bp *Backplane, sub broker.Subscriber, room string, since *uint64) broker.Membership {
	t.Helper()
	m, perr := bp.Join(sub, room, since)
	if perr != nil {
		t.Fatalf("join %s: %v", room, perr)
	}
	return m
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	t.Cleanup(cancel)
	return ctx
}
