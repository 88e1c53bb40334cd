package gateway

import (
	"strconv"
	"testing"

	"go.opentelemetry.io/otel/trace"

	"github.com/chatgate/chatgate/gateway/hub"
	"github.com/chatgate/chatgate/gateway/protocol"
)

// offlineClients builds n clients with no socket, enough to exercise the
// enqueue path that fan-out runs for every recipient.
func offlineClients(tb testing.TB, n int) (*Server, []*client) {
	tb.Helper()
	srv, err := New(testConfig(), Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(srv.Close)
	cs := make([]*client, n)
	for i := range cs {
		cs[i] = newClient(srv, nil, "c", protocol.User{ID: "u", Name: "n"}, "127.0.0.1", trace.SpanContext{})
	}
	return srv, cs
}

// take empties a client's queue the way the writer does, keeping the
// backing array for reuse.
func take(c *client) {
	c.mu.Lock()
	batch := c.queue
	c.queue = c.spare[:0]
	c.inflight += c.queued
	c.mu.Unlock()
	c.settle(batch)
	c.recycle(batch)
	select {
	case <-c.wake:
	default:
	}
}

// TestFanoutEnqueueDoesNotAllocate guards the per-recipient path: handing a
// shared, already-encoded frame to a member's queue allocates nothing once
// the queues are warm.
func TestFanoutEnqueueDoesNotAllocate(t *testing.T) {
	_, cs := offlineClients(t, 100)
	f := &hub.Frame{Data: []byte(`{"type":"message","room":"r","seq":1,"from":{"id":"u","name":"n"},"text":"hi","ts":1}`)}
	for _, c := range cs { // warm the queue arrays
		for i := 0; i < 4; i++ {
			c.Enqueue(f)
		}
		take(c)
	}
	allocs := testing.AllocsPerRun(100, func() {
		for _, c := range cs {
			c.Enqueue(f)
		}
		for _, c := range cs {
			take(c)
		}
	})
	if allocs != 0 {
		t.Fatalf("fan-out to 100 queues allocated %.1f times per broadcast; want 0", allocs)
	}
}

func BenchmarkFanoutEnqueue(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			_, cs := offlineClients(b, n)
			f := &hub.Frame{Data: make([]byte, 120)}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				for _, c := range cs {
					c.Enqueue(f)
				}
				if i%16 == 15 {
					for _, c := range cs {
						take(c)
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/recipient")
		})
	}
}
