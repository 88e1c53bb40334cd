package gateway

import (
	"net"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/chatgate/chatgate/gateway/broker"
	"github.com/chatgate/chatgate/gateway/internal/wsgate"
)

// eventLoopServer starts a gateway with the event loop and n WebSocket
// clients whose sockets are drained raw (no allocation per read); it
// returns the server's clients and the bytes the readers have seen.
func eventLoopServer(tb testing.TB, n int) (*Server, []*client, *atomic.Int64) {
	tb.Helper()
	cfg := testConfig()
	cfg.Netpoll = true
	cfg.MaxConnsPerIP, cfg.MaxTCPConnsPerIP = 1<<20, 1<<20
	cfg.HandshakeRate, cfg.HandshakeBurst = 1e6, 1<<20
	srv, err := New(cfg, Options{Broker: testHub(tb, 0)})
	if err != nil {
		tb.Fatal(err)
	}
	if srv.loop == nil {
		tb.Skip("no event loop on this system")
	}
	ts := httptest.NewServer(srv)
	url := "ws" + strings.TrimPrefix(ts.URL, "http") + "/ws"
	var read atomic.Int64
	var conns []net.Conn
	for range n {
		ws, _, err := websocket.DefaultDialer.Dial(url, nil)
		if err != nil {
			tb.Fatal(err)
		}
		nc := ws.NetConn()
		conns = append(conns, nc)
		go func() {
			buf := make([]byte, 64<<10)
			for {
				k, err := nc.Read(buf)
				read.Add(int64(k))
				if err != nil {
					return
				}
			}
		}()
	}
	tb.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
		srv.BeginDrain()
		srv.ForceClose()
		ts.Close()
		srv.Close()
	})
	deadline := time.Now().Add(10 * time.Second)
	for srv.Conns() < n || srv.QueuedBytes() > 0 {
		if time.Now().After(deadline) {
			tb.Fatal("connections not up")
		}
		runtime.Gosched()
	}
	srv.mu.Lock()
	cs := make([]*client, 0, n)
	for c := range srv.clients {
		cs = append(cs, c)
	}
	srv.mu.Unlock()
	return srv, cs, &read
}

// broadcast hands f to every client and waits until every byte of it has
// reached its reader.
func broadcast(tb testing.TB, srv *Server, cs []*client, read *atomic.Int64, f *broker.Frame) {
	want := read.Load() + int64(len(cs)*wsgate.TextFrameLen(len(f.Data)))
	for _, c := range cs {
		c.Enqueue(f)
	}
	deadline := time.Now().Add(10 * time.Second)
	for read.Load() < want {
		if time.Now().After(deadline) {
			tb.Fatalf("broadcast not delivered: %d of %d bytes", read.Load(), want)
		}
		runtime.Gosched()
	}
}

// TestEventLoopFanoutDoesNotAllocate guards the whole evented delivery
// path, on real sockets: queueing a shared frame to every connection,
// the flushers' writes and the accounting allocate nothing once warm.
func TestEventLoopFanoutDoesNotAllocate(t *testing.T) {
	srv, cs, read := eventLoopServer(t, 50)
	f := &broker.Frame{Data: []byte(`{"type":"message","room":"r","seq":1,"from":{"id":"u","name":"n"},"text":"hi","ts":1}`)}
	for range 20 { // warm the queues, the dirty lists and the scratch
		broadcast(t, srv, cs, read, f)
	}
	allocs := testing.AllocsPerRun(50, func() { broadcast(t, srv, cs, read, f) })
	if allocs > 0 {
		t.Fatalf("a broadcast to 50 evented connections allocated %.1f times; want 0", allocs)
	}
}

// TestIdleConnectionsHoldNoGoroutine: with the event loop, open
// connections that have nothing to read or write hold no goroutine.
func TestIdleConnectionsHoldNoGoroutine(t *testing.T) {
	before := runtime.NumGoroutine()
	srv, cs, read := eventLoopServer(t, 200)
	f := &broker.Frame{Data: []byte(`{"type":"message"}`)}
	broadcast(t, srv, cs, read, f)
	// The test's own 200 readers, the poller, flushers and wheel are the
	// only new goroutines; allow a few for the HTTP server.
	deadline := time.Now().Add(10 * time.Second)
	for {
		extra := runtime.NumGoroutine() - before - 200
		if extra <= 2*runtime.GOMAXPROCS(0)+8 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines beyond the test's readers for 200 idle connections", extra)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// BenchmarkEventLoopFanout measures the evented delivery path per
// recipient on real sockets (the readers run in the same process).
func BenchmarkEventLoopFanout(b *testing.B) {
	srv, cs, read := eventLoopServer(b, 500)
	f := &broker.Frame{Data: make([]byte, 120)}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		broadcast(b, srv, cs, read, f)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(cs)), "ns/delivery")
}

// TestWriteDelayGathersFrames: with --write-delay, frames queued to a
// connection within the delay go out in one write (without it, frames
// queued 20 ms apart each get a write of their own).
func TestWriteDelayGathersFrames(t *testing.T) {
	ts := newTestServer(t, func(c *Config) {
		c.Netpoll = true
		c.WriteDelay = 400 * time.Millisecond
	})
	if ts.srv.loop == nil {
		t.Skip("no event loop on this system")
	}
	c := ts.dial(t, "")
	cl := ts.onlyClient(t)
	for i := range 5 {
		cl.send([]byte(`{"type":"test","n":` + string(rune('0'+i)) + `}`))
		time.Sleep(20 * time.Millisecond) // spacing, well within the delay
	}
	for range 5 {
		c.Expect("test")
	}
	// The first may still go out with the welcome's write, whose flush
	// takes whatever is queued before it returns; the rest wait together.
	// (The write is counted just after the bytes leave: wait for it.)
	ts.obs.waitFor(t, "one write carrying the frames queued within the delay", func() bool { return ts.obs.mostPerWrite >= 4 })
}

// TestEventLoopConnectionMemory guards what an idle evented connection
// joined to a room costs in live heap (the server's part plus the test's
// own client socket, about 0.4 KiB). The RSS target (4 KiB per
// connection, docs/benchmarks.md) is measured by chatbench; this catches a
// regression such as a buffer kept per connection.
func TestEventLoopConnectionMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 2000 connections")
	}
	const n = 2000
	budget := 3 << 10
	if raceEnabled {
		// The race detector's runtime roughly triples live heap (2.8 KB
		// measured without it, 8.8 KB with it); .ci/run also runs this
		// test without it, against the real budget.
		budget = 12 << 10
	}
	cfg := testConfig()
	cfg.Netpoll = true
	cfg.MaxConnsPerIP, cfg.MaxTCPConnsPerIP = 1<<20, 1<<20
	cfg.HandshakeRate, cfg.HandshakeBurst = 1e6, 1<<20
	srv, err := New(cfg, Options{Broker: testHub(t, 0)})
	if err != nil {
		t.Fatal(err)
	}
	if srv.loop == nil {
		t.Skip("no event loop on this system")
	}
	ts := httptest.NewServer(srv)
	defer func() {
		srv.BeginDrain()
		srv.ForceClose()
		ts.Close()
		srv.Close()
	}()
	url := "ws" + strings.TrimPrefix(ts.URL, "http") + "/ws?room=lobby"
	dial := func() net.Conn {
		ws, _, err := websocket.DefaultDialer.Dial(url, nil)
		if err != nil {
			t.Fatal(err)
		}
		return ws.NetConn() // the client's WebSocket state is dropped
	}
	warm := []net.Conn{dial()}
	heap := func() uint64 {
		var m runtime.MemStats
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	settle := func(want int) {
		deadline := time.Now().Add(30 * time.Second)
		for srv.Conns() < want || srv.QueuedBytes() > 0 {
			if time.Now().After(deadline) {
				t.Fatalf("%d connections up; want %d", srv.Conns(), want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	settle(1)
	before := heap()
	conns := make([]net.Conn, 0, n)
	for range n {
		conns = append(conns, dial())
	}
	settle(n + 1)
	per := float64(heap()-before) / n
	t.Logf("%.0f bytes of live heap per idle connection joined to a room (server and client socket)", per)
	if per > float64(budget) {
		t.Fatalf("%.0f bytes per connection; the budget is %d", per, budget)
	}
	for _, c := range append(conns, warm...) {
		c.Close()
	}
}
