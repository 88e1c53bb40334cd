package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/chatgate/chatgate/gateway"
	"github.com/chatgate/chatgate/gateway/broker"
	"github.com/chatgate/chatgate/gateway/protocol"
	"github.com/chatgate/chatgate/internal/natstest"
	"github.com/chatgate/chatgate/internal/wstest"
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
		URL:            ns.URL(),
		NodeID:         name,
		Rooms:          broker.Settings{History: 100, PresenceInterval: 20 * time.Millisecond},
		Storage:        jetstream.FileStorage,
		Logger:         testLogger(t, name),
		PresenceSync:   200 * time.Millisecond,
		PresenceTTL:    2 * time.Second,
		ReconnectWait:  50 * time.Millisecond,
		PublishTimeout: 2 * time.Second,
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
	// The gateway's own metrics share the registry, as in the binary, so
	// chatgate_ready can be compared with /readyz.
	obs := gwmetrics.New(reg, gwmetrics.BuildInfo{Version: "test"}, nil)
	srv, ts := serveGateway(t, cfg, gateway.Options{Broker: bp, Ready: bp.Health, Logger: bcfg.Logger, Observer: obs, Web: http.NotFoundHandler()})
	return &node{name: name, bp: bp, srv: srv, ts: ts, reg: reg}
}

// serveGateway starts a ready gateway with cfg and opts on an httptest
// server; both are drained and closed when the test ends.
func serveGateway(t testing.TB, cfg gateway.Config, opts gateway.Options) (*gateway.Server, *httptest.Server) {
	t.Helper()
	srv, err := gateway.New(cfg, opts)
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
	return srv, ts
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

// ---- WebSocket clients ----

type env = wstest.Env

// wsClient is a client of one node's gateway that reads in the background
// (internal/wstest); tests wait on what it has received.
type wsClient struct {
	*wstest.Client
	node string
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
	t.Helper()
	u := n.wsURL()
	if query != "" {
		u += "?" + query
	}
	c, _, err := wstest.TryDial(t, u, wstest.Options{Background: true, Welcome: true, Timeout: waitTimeout})
	if err != nil {
		return nil, err
	}
	return &wsClient{Client: c, node: n.name}, nil
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
func (s *fakeSub) Snapshot() []env {
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
