package gateway

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/goleak"

	"github.com/chatgate/chatgate/gateway/hub"
	"github.com/chatgate/chatgate/gateway/observe"
	"github.com/chatgate/chatgate/internal/wstest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// waitTimeout bounds every wait in these tests; nothing sleeps and hopes.
const waitTimeout = 10 * time.Second

// tlogWriter sends server logs to t.Logf.
type tlogWriter struct{ t testing.TB }

func (w tlogWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Logf("server: %s", bytes.TrimRight(p, "\n"))
	return len(p), nil
}

// recObserver records events so tests can wait on them.
type recObserver struct {
	observe.Nop
	mu          sync.Mutex
	changed     chan struct{} // closed and replaced on every event
	disconnects map[observe.DisconnectReason]int
	rejects     map[observe.RejectReason]int
	requests    map[string]int
	guests      map[observe.GuestOutcome]int
	accepted    int
	closed      int
	delivered   int
	traced      []trace.TraceID // trace ids of traced deliveries
}

func newRecObserver() *recObserver {
	return &recObserver{
		changed:     make(chan struct{}),
		disconnects: map[observe.DisconnectReason]int{},
		rejects:     map[observe.RejectReason]int{},
		requests:    map[string]int{},
		guests:      map[observe.GuestOutcome]int{},
	}
}

func (o *recObserver) bump(f func()) {
	o.mu.Lock()
	f()
	close(o.changed)
	o.changed = make(chan struct{})
	o.mu.Unlock()
}

func (o *recObserver) Disconnecting(r observe.DisconnectReason) {
	o.bump(func() { o.disconnects[r]++ })
}
func (o *recObserver) ConnRejected(r observe.RejectReason) { o.bump(func() { o.rejects[r]++ }) }
func (o *recObserver) RequestRejected(code string)         { o.bump(func() { o.requests[code]++ }) }
func (o *recObserver) ConnAccepted()                       { o.bump(func() { o.accepted++ }) }
func (o *recObserver) GuestSession(g observe.GuestOutcome) { o.bump(func() { o.guests[g]++ }) }
func (o *recObserver) ConnClosed()                         { o.bump(func() { o.closed++ }) }
func (o *recObserver) Delivered(_ time.Duration, id trace.TraceID) {
	o.bump(func() {
		o.delivered++
		if id.IsValid() {
			o.traced = append(o.traced, id)
		}
	})
}

// waitFor blocks until cond (called with o.mu held) is true.
func (o *recObserver) waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	for {
		o.mu.Lock()
		ok, ch := cond(), o.changed
		o.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func (o *recObserver) disconnectCount(r observe.DisconnectReason) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.disconnects[r]
}

// testServer is a real gateway on a loopback httptest listener.
type testServer struct {
	srv *Server
	ts  *httptest.Server
	obs *recObserver
}

// testConfig is DefaultConfig with limits that suit tests.
func testConfig() Config {
	cfg := DefaultConfig()
	cfg.NodeID = "test-node"
	cfg.SendRate, cfg.SendBurst = 10000, 10000
	cfg.JoinRate, cfg.JoinBurst = 10000, 10000
	cfg.DrainDelay, cfg.DrainWindow, cfg.DrainLinger = 0, 0, 0
	return cfg
}

func newTestServer(t *testing.T, mutate func(*Config)) *testServer {
	t.Helper()
	cfg := testConfig()
	if mutate != nil {
		mutate(&cfg)
	}
	obs := newRecObserver()
	return startTestServer(t, cfg, Options{Observer: obs}, obs)
}

// testHub is an in-process hub for a test gateway: presence frames come
// quickly. history 0 means the default.
func testHub(t testing.TB, history int) *hub.Hub {
	h := hub.New(hub.Config{History: history, PresenceInterval: 20 * time.Millisecond})
	t.Cleanup(h.Close)
	return h
}

// newHistoryServer is newTestServer whose rooms keep history messages.
func newHistoryServer(t *testing.T, history int) *testServer {
	t.Helper()
	obs := newRecObserver()
	return startTestServer(t, testConfig(), Options{Observer: obs, Broker: testHub(t, history), History: history}, obs)
}

// startTestServer starts a gateway with opts (a test logger, a 404 web
// handler and a testHub filled in when unset); rec is the recObserver
// behind opts.Observer.
func startTestServer(t testing.TB, cfg Config, opts Options, rec *recObserver) *testServer {
	t.Helper()
	if opts.Broker == nil {
		opts.Broker = testHub(t, opts.History)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(tlogWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if opts.Web == nil {
		opts.Web = http.NotFoundHandler()
	}
	srv, err := New(cfg, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	srv.SetReady(true)
	ts := httptest.NewServer(srv)
	t.Cleanup(func() {
		srv.BeginDrain()
		srv.ForceClose()
		ts.Close()
		srv.Close()
	})
	return &testServer{srv: srv, ts: ts, obs: rec}
}

// onlyClient returns the server side of the one connection open.
func (s *testServer) onlyClient(t testing.TB) *client {
	t.Helper()
	s.srv.mu.Lock()
	defer s.srv.mu.Unlock()
	if len(s.srv.clients) != 1 {
		t.Fatalf("%d connections; want 1", len(s.srv.clients))
	}
	for c := range s.srv.clients {
		return c
	}
	return nil
}

func (s *testServer) wsURL(query string) string {
	u := "ws" + strings.TrimPrefix(s.ts.URL, "http") + "/ws"
	if query != "" {
		u += "?" + query
	}
	return u
}

// wsClient is the one WebSocket test client (internal/wstest), reading
// only when the test asks.
type wsClient = wstest.Client

type dialOpts struct {
	query  string
	header http.Header
	dialer *websocket.Dialer
}

// dial connects and consumes the welcome.
func (s *testServer) dial(t testing.TB, query string) *wsClient {
	t.Helper()
	return s.dialWith(t, dialOpts{query: query})
}

func (s *testServer) dialWith(t testing.TB, o dialOpts) *wsClient {
	t.Helper()
	return wstest.Dial(t, s.wsURL(o.query), wstest.Options{Header: o.header, Dialer: o.dialer, Welcome: true, Timeout: waitTimeout})
}

// dialStatus attempts a handshake that is expected to fail and returns the
// HTTP response.
func (s *testServer) dialStatus(t testing.TB, query string, header http.Header) *http.Response {
	t.Helper()
	d := &websocket.Dialer{HandshakeTimeout: waitTimeout}
	conn, resp, err := d.Dial(s.wsURL(query), header)
	if err == nil {
		conn.Close()
		t.Fatalf("dial %q succeeded; want it refused", query)
	}
	if resp == nil {
		t.Fatalf("dial %q: no HTTP response: %v", query, err)
	}
	return resp
}

func num(t testing.TB, env map[string]any, key string) int64 {
	t.Helper()
	f, ok := env[key].(float64)
	if !ok {
		t.Fatalf("envelope %v has no numeric %q", env, key)
	}
	return int64(f)
}

func query(kv ...string) string {
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Add(kv[i], kv[i+1])
	}
	return v.Encode()
}
