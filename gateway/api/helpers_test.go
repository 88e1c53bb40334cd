package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.uber.org/goleak"

	"github.com/chatgate/chatgate/gateway/api"
	"github.com/chatgate/chatgate/gateway/broker"
	"github.com/chatgate/chatgate/gateway/hub"
	"github.com/chatgate/chatgate/gateway/observe"
	"github.com/chatgate/chatgate/gateway/protocol"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const waitTimeout = 10 * time.Second

// The test keys: one per scope and one with all of them.
const (
	keyPublish  = "pub-0123456789abcdef0123456789abcdef"
	keyModerate = "mod-0123456789abcdef0123456789abcdef"
	keyRead     = "read-0123456789abcdef0123456789abcdef"
	keyAll      = "all-0123456789abcdef0123456789abcdef"
)

const testKeys = `{"keys": [
	{"name": "publisher", "key": "` + keyPublish + `", "scopes": ["publish"]},
	{"name": "moderator", "key": "` + keyModerate + `", "scopes": ["moderate"]},
	{"name": "reader", "key": "` + keyRead + `", "scopes": ["read"]},
	{"name": "backend", "key": "` + keyAll + `", "scopes": ["publish", "moderate", "read"]}
]}`

// syncBuffer is a log sink safe for the handler's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// records returns the JSON log records whose msg is msg.
func (s *syncBuffer) records(t testing.TB, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(s.String()), "\n") {
		var rec map[string]any
		if line == "" {
			continue
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

// recMetrics records APIRequest calls.
type recMetrics struct {
	mu    sync.Mutex
	calls []metricCall
}

type metricCall struct {
	endpoint observe.APIEndpoint
	result   string
}

func (m *recMetrics) APIRequest(e observe.APIEndpoint, result string, _ time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls = append(m.calls, metricCall{e, result})
}

func (m *recMetrics) take() []metricCall {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.calls
	m.calls = nil
	return c
}

// env is a server API over an in-process hub, on a loopback listener.
type env struct {
	t        *testing.T
	hub      *hub.Hub
	h        *api.Handler
	srv      *httptest.Server
	keysFile string
	log      *syncBuffer
	metrics  *recMetrics
	spans    *tracetest.SpanRecorder
}

// newEnv builds an env; mutate may change the config and the deps (the
// broker is the hub unless mutate replaces it).
func newEnv(t *testing.T, mutate func(*api.Config, *api.Deps)) *env {
	t.Helper()
	e := &env{t: t, log: &syncBuffer{}, metrics: &recMetrics{}, spans: tracetest.NewSpanRecorder()}
	e.hub = hub.New(hub.Config{PresenceInterval: 10 * time.Millisecond})
	t.Cleanup(e.hub.Close)
	dir := t.TempDir()
	e.keysFile = filepath.Join(dir, "keys.json")
	if err := os.WriteFile(e.keysFile, []byte(testKeys), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := api.DefaultConfig()
	cfg.Addr, cfg.KeysFile = "127.0.0.1:0", e.keysFile
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(e.spans))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	deps := api.Deps{
		Broker:       e.hub,
		MaxTextBytes: 64,
		Logger:       slog.New(slog.NewJSONHandler(io.MultiWriter(e.log, testLog{t}), &slog.HandlerOptions{Level: slog.LevelDebug})),
		Metrics:      e.metrics,
		Tracer:       tp,
		Propagator:   propagation.TraceContext{},
	}
	if mutate != nil {
		mutate(&cfg, &deps)
	}
	h, err := api.New(cfg, deps)
	if err != nil {
		t.Fatalf("api.New: %v", err)
	}
	e.h = h
	e.srv = httptest.NewServer(h)
	t.Cleanup(func() {
		e.srv.Close()
		h.Close()
	})
	return e
}

// testLog sends the handler's log to t.Logf.
type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Logf("api: %s", bytes.TrimRight(p, "\n"))
	return len(p), nil
}

// response is one answer of the API.
type response struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

// code is the error code of an error answer.
func (r response) code() string {
	e, _ := r.body["error"].(map[string]any)
	c, _ := e["code"].(string)
	return c
}

func (r response) message() string {
	e, _ := r.body["error"].(map[string]any)
	m, _ := e["message"].(string)
	return m
}

// do sends one request with key as bearer token ("" for none).
func (e *env) do(key, method, path, body string) response {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	return e.send(req)
}

func (e *env) send(req *http.Request) response {
	e.t.Helper()
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	r := response{status: resp.StatusCode, header: resp.Header, raw: string(raw)}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		e.t.Fatalf("%s %s answered Content-Type %q: %s", req.Method, req.URL.Path, ct, raw)
	}
	if err := json.Unmarshal(raw, &r.body); err != nil {
		e.t.Fatalf("%s %s answered %q: not a JSON object: %v", req.Method, req.URL.Path, raw, err)
	}
	return r
}

// sub is a broker subscriber that records what it is queued.
type sub struct {
	user protocol.User

	mu      sync.Mutex
	envs    []map[string]any
	changed chan struct{}
}

func newSub(id string) *sub {
	return &sub{user: protocol.User{ID: id, Name: "name-" + id}, changed: make(chan struct{})}
}

func (s *sub) User() protocol.User { return s.user }

func (s *sub) Enqueue(f *broker.Frame) {
	var m map[string]any
	_ = json.Unmarshal(f.Data, &m)
	s.mu.Lock()
	s.envs = append(s.envs, m)
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
}

// waitMessages waits until s holds n messages of room and returns them.
func (s *sub) waitMessages(t testing.TB, room string, n int) []map[string]any {
	t.Helper()
	deadline := time.After(waitTimeout)
	for {
		s.mu.Lock()
		var msgs []map[string]any
		for _, e := range s.envs {
			if e["type"] == "message" && e["room"] == room {
				msgs = append(msgs, e)
			}
		}
		ch := s.changed
		s.mu.Unlock()
		if len(msgs) >= n {
			return msgs
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("%s: %d messages of %s; want %d", s.user.ID, len(msgs), room, n)
		}
	}
}

func (e *env) join(s *sub, room string) broker.Membership {
	e.t.Helper()
	m, perr := e.hub.Join(s, room, nil)
	if perr != nil {
		e.t.Fatalf("join: %v", perr)
	}
	return m
}

func num(v any) uint64 {
	f, _ := v.(float64)
	return uint64(f)
}
