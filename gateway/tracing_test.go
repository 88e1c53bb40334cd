package gateway

import (
	"context"
	"net"
	"net/http"
	"slices"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

func spanNamed(spans []sdktrace.ReadOnlySpan, name string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range spans {
		if s.Name() == name {
			out = append(out, s)
		}
	}
	return out
}

// waitSpans polls until n spans called name have ended.
func waitSpans(t *testing.T, sr *tracetest.SpanRecorder, name string, n int) []sdktrace.ReadOnlySpan {
	t.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(waitTimeout)
	for {
		if got := spanNamed(sr.Ended(), name); len(got) >= n {
			if len(got) > n {
				t.Fatalf("%d %s spans; want %d", len(got), name, n)
			}
			return got
		}
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("timed out waiting for %d %s spans", n, name)
		}
	}
}

func attrs(s sdktrace.ReadOnlySpan) map[attribute.Key]attribute.Value {
	m := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes() {
		m[kv.Key] = kv.Value
	}
	return m
}

func TestTracingSpans(t *testing.T) {
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
	defer tp.Shutdown(context.Background())
	rec := newRecObserver()
	s := startTestServer(t, testConfig(), Options{Observer: rec, Tracer: tp, Propagator: propagation.TraceContext{}}, rec)

	parent := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	c := s.dialWith(t, dialOpts{query: query("room", "r"), header: http.Header{"Traceparent": {parent}}})
	c.Expect("joined")

	// The handshake span has ended while the socket is still open, and it
	// continues the caller's trace.
	hs := spanNamed(sr.Ended(), "chatgate.handshake")
	if len(hs) != 1 {
		t.Fatalf("%d ended handshake spans while connected; want 1", len(hs))
	}
	h := hs[0]
	if h.SpanKind() != trace.SpanKindServer || h.Parent().TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Fatalf("handshake span kind %v parent %v", h.SpanKind(), h.Parent())
	}
	if a := attrs(h); a["http.response.status_code"].AsInt64() != 101 || a["chatgate.handshake.outcome"].AsString() != "accepted" {
		t.Fatalf("handshake attributes %v", a)
	}

	c.Send(map[string]any{"type": "send", "room": "r", "text": "traced", "ref": "1"})
	c.Expect("message")
	c.Expect("ack")
	// The ack can overtake the span's end: wait for it.
	sends := waitSpans(t, sr, "chatgate.send", 1)
	sp := sends[0]
	a := attrs(sp)
	for k, want := range map[attribute.Key]string{
		"messaging.operation.type": "send",
		"chatgate.outcome":         "published",
		"chatgate.room_size":       "1",
	} {
		if a[k].AsString() != want {
			t.Errorf("send span %s = %q; want %q", k, a[k].AsString(), want)
		}
	}
	if a["chatgate.recipients"].AsInt64() != 1 {
		t.Errorf("recipients %v", a["chatgate.recipients"])
	}
	if links := sp.Links(); len(links) != 1 || links[0].SpanContext.SpanID() != h.SpanContext().SpanID() {
		t.Errorf("send span links %v; want the handshake", links)
	}
	for k := range a {
		if k == "chatgate.room" || k == "messaging.destination.name" {
			t.Errorf("send span carries %s: room names stay out of span attributes", k)
		}
	}
	// The delivery carried the message's trace id (the exemplar source).
	s.obs.waitFor(t, "a traced delivery", func() bool { return len(s.obs.traced) > 0 })
	s.obs.mu.Lock()
	got := s.obs.traced[0]
	s.obs.mu.Unlock()
	if got != sp.SpanContext().TraceID() {
		t.Fatalf("delivery traced %v; want %v", got, sp.SpanContext().TraceID())
	}

	// A refused handshake is traced with its status.
	s.dialStatus(t, "", http.Header{"Origin": {"http://evil.example"}})
	refused := spanNamed(sr.Ended(), "chatgate.handshake")
	if len(refused) != 2 || attrs(refused[1])["http.response.status_code"].AsInt64() != 403 {
		t.Fatalf("refused handshake not traced with 403")
	}
}

// TestRunDrainSpan runs the whole lifecycle and checks the drain is one
// span with its steps as events, ended before the shutdown hooks run.
func TestRunDrainSpan(t *testing.T) {
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
	defer tp.Shutdown(context.Background())
	cfg := testConfig()
	cfg.Addr, cfg.AdminAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.DrainDelay, cfg.DrainWindow, cfg.ShutdownTimeout = 10*time.Millisecond, 10*time.Millisecond, 5*time.Second
	srv, err := New(cfg, Options{Tracer: tp, Broker: testHub(t, 0)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	listening := make(chan net.Addr, 1)
	var drainEndedBeforeHook bool
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, srv, RunOptions{
			Listening: func(_, admin net.Addr) { listening <- admin },
			OnShutdown: []func(context.Context) error{func(context.Context) error {
				drainEndedBeforeHook = len(spanNamed(sr.Ended(), "chatgate.drain")) == 1
				return nil
			}},
		})
	}()
	admin := <-listening
	resp, err := http.Get("http://" + admin.String() + "/readyz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("readyz before drain: %v %v", err, resp)
	}
	resp.Body.Close()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("Run did not return")
	}
	if !drainEndedBeforeHook {
		t.Fatal("drain span had not ended when the shutdown hooks ran")
	}
	d := spanNamed(sr.Ended(), "chatgate.drain")[0]
	var events []string
	for _, e := range d.Events() {
		events = append(events, e.Name)
	}
	want := []string{"readiness failing", "stopped accepting; closing clients", "all connections closed"}
	if !slices.Equal(events, want) {
		t.Fatalf("drain events %v; want %v", events, want)
	}
}
