package gateway

import (
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/gorilla/websocket"
	"go.opentelemetry.io/otel/trace"

	"github.com/chatgate/chatgate/gateway/broker"
	"github.com/chatgate/chatgate/gateway/protocol"
)

// offlineClients builds n clients with no socket, enough to exercise the
// enqueue path that fan-out runs for every recipient.
func offlineClients(tb testing.TB, n int) (*Server, []*client) {
	tb.Helper()
	srv, err := New(testConfig(), Options{Broker: testHub(tb, 0)})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(srv.Close)
	cs := make([]*client, n)
	for i := range cs {
		cs[i] = newClient(srv, nil, nil, "c", protocol.User{ID: "u", Name: "n"}, admitted{ip: "127.0.0.1", ipKey: "127.0.0.1"}, trace.SpanContext{})
	}
	return srv, cs
}

// take empties a client's outbox the way the writer does (take, settle,
// recycle), keeping the backing array for reuse.
func take(c *client) {
	batch, _, _ := c.out.take()
	c.out.settle(batch)
	c.out.recycle(batch)
	select {
	case <-c.out.wake:
	default:
	}
}

// TestFanoutEnqueueDoesNotAllocate guards the per-recipient path: handing a
// shared, already-encoded frame to a member's queue allocates nothing once
// the queues are warm.
func TestFanoutEnqueueDoesNotAllocate(t *testing.T) {
	_, cs := offlineClients(t, 100)
	f := &broker.Frame{Data: []byte(`{"type":"message","room":"r","seq":1,"from":{"id":"u","name":"n"},"text":"hi","ts":1}`)}
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
			f := &broker.Frame{Data: make([]byte, 120)}
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

// BenchmarkIdleConnMemory reports heap plus stack per idle WebSocket, with
// the test's own gorilla clients (about 9 KiB each with default buffers) in
// the same process; chatbench's connect scenario measures the server alone.
// Run with -bench IdleConnMemory -benchtime 1x.
func BenchmarkIdleConnMemory(b *testing.B) {
	const n = 2000
	cfg := testConfig()
	cfg.MaxConnsPerIP = 1 << 20
	cfg.HandshakeRate, cfg.HandshakeBurst = 1e6, 1<<20
	for i := 0; i < b.N; i++ {
		srv, err := New(cfg, Options{Broker: testHub(b, 0)})
		if err != nil {
			b.Fatal(err)
		}
		ts := httptest.NewServer(srv)
		url := "ws" + strings.TrimPrefix(ts.URL, "http") + "/ws"
		before := memNow()
		conns := make([]*websocket.Conn, 0, n)
		for j := 0; j < n; j++ {
			c, _, err := websocket.DefaultDialer.Dial(url, nil)
			if err != nil {
				b.Fatal(err)
			}
			conns = append(conns, c)
		}
		for srv.Conns() < n {
			runtime.Gosched()
		}
		after := memNow()
		b.ReportMetric(float64(after-before)/n, "B/conn(server+client)")
		for _, c := range conns {
			c.Close()
		}
		srv.BeginDrain()
		srv.ForceClose()
		ts.Close()
		srv.Close()
	}
}

// memNow is heap plus stack in use after a full collection.
func memNow() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapInuse + m.StackInuse
}
