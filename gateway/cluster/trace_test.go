package cluster

import (
	"context"
	"sync"
	"testing"

	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/chatgate/chatgate/gateway/broker"
	"github.com/chatgate/chatgate/gateway/protocol"
)

// traceSub records the trace id of every live message frame.
type traceSub struct {
	fakeSub
	mu  sync.Mutex
	ids []trace.TraceID
}

func (s *traceSub) Enqueue(f *broker.Frame) {
	if !f.Accepted.IsZero() {
		s.mu.Lock()
		s.ids = append(s.ids, f.TraceID)
		s.mu.Unlock()
	}
	s.fakeSub.Enqueue(f)
}

// One trace spans the publish on replica A and the delivery on replica B:
// the trace context travels in the message's NATS headers.
func TestTraceSpansReplicas(t *testing.T) {
	ns := startNATS(t)
	prop := propagation.TraceContext{}
	recA, recB := tracetest.NewSpanRecorder(), tracetest.NewSpanRecorder()
	tpA := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(recA))
	tpB := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(recB))
	t.Cleanup(func() { _ = tpA.Shutdown(context.Background()); _ = tpB.Shutdown(context.Background()) })
	a := newBackplane(t, withCfg(testBackplaneConfig(t, ns, "a"), func(c *Config) { c.Tracer, c.Prop = tpA, prop }))
	b := newBackplane(t, withCfg(testBackplaneConfig(t, ns, "b"), func(c *Config) { c.Tracer, c.Prop = tpB, prop }))

	onB := &traceSub{fakeSub: fakeSub{user: protocol.User{ID: "u_b", Name: "b"}}}
	mustJoin(t, b, onB, "t", nil)
	sender := mustJoin(t, a, &fakeSub{user: protocol.User{ID: "u_a", Name: "a"}}, "t", nil)

	ctx, send := tpA.Tracer("test").Start(context.Background(), "chatgate.send")
	if _, perr := sender.Publish(ctx, "traced", "r1"); perr != nil {
		t.Fatalf("publish: %v", perr)
	}
	send.End()
	want := send.SpanContext().TraceID()
	waitUntil(t, "the delivery on b", func() bool {
		onB.mu.Lock()
		defer onB.mu.Unlock()
		return len(onB.ids) == 1
	})
	if got := onB.ids[0]; got != want {
		t.Fatalf("frame on b carries trace %v; want %v", got, want)
	}
	var pub, del sdktrace.ReadOnlySpan
	for _, s := range recA.Ended() {
		if s.Name() == "chatgate.backplane.publish" {
			pub = s
		}
	}
	waitUntil(t, "the deliver span on b", func() bool {
		for _, s := range recB.Ended() {
			if s.Name() == "chatgate.backplane.deliver" {
				del = s
				return true
			}
		}
		return false
	})
	if pub == nil || pub.SpanKind() != trace.SpanKindProducer || pub.Parent().SpanID() != send.SpanContext().SpanID() {
		t.Fatalf("publish span %v; want a producer child of the send span", pub)
	}
	if del.SpanContext().TraceID() != want || del.Parent().SpanID() != pub.SpanContext().SpanID() || del.SpanKind() != trace.SpanKindConsumer {
		t.Fatalf("deliver span on b: trace %v parent %v; want trace %v, parent the publish span %v",
			del.SpanContext().TraceID(), del.Parent().SpanID(), want, pub.SpanContext().SpanID())
	}
}
