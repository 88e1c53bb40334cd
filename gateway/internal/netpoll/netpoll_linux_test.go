//go:build linux

package netpoll

import (
	"errors"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const waitTimeout = 10 * time.Second

// recorder collects a connection's events.
type recorder struct {
	mu     sync.Mutex
	events []Event
	signal chan struct{}
}

func newRecorder() *recorder { return &recorder{signal: make(chan struct{}, 1)} }

func (r *recorder) Ready(e Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
	select {
	case r.signal <- struct{}{}:
	default:
	}
}

// waitFor waits until an event with want has been seen since the last
// reset.
func (r *recorder) waitFor(t *testing.T, want Event) {
	t.Helper()
	deadline := time.After(waitTimeout)
	for {
		r.mu.Lock()
		for _, e := range r.events {
			if e&want != 0 {
				r.events = nil
				r.mu.Unlock()
				return
			}
		}
		r.mu.Unlock()
		select {
		case <-r.signal:
		case <-deadline:
			t.Fatalf("no %v event", want)
		}
	}
}

func (r *recorder) reset() {
	r.mu.Lock()
	r.events = nil
	r.mu.Unlock()
}

// readable counts the Readable events seen since the last reset (a
// socket is also writable as soon as it is registered).
func (r *recorder) readable() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, e := range r.events {
		if e&Readable != 0 {
			n++
		}
	}
	return n
}

func tcpPair(t *testing.T) (server, client *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return s.(*net.TCPConn), c.(*net.TCPConn)
}

func rawConn(t *testing.T, c *net.TCPConn) syscall.RawConn {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	return rc
}

// readNow reads what is waiting without blocking.
func readNow(rc syscall.RawConn, buf []byte) (int, error) {
	var n int
	var rerr error
	if err := rc.Read(func(fd uintptr) bool {
		n, rerr = unix.Read(int(fd), buf)
		return true
	}); err != nil {
		return 0, err
	}
	return n, rerr
}

func TestReadableWritableAndRemove(t *testing.T) {
	p, err := New(2)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	server, client := tcpPair(t)
	rc := rawConn(t, server)
	rec := newRecorder()
	reg, err := p.Add(rc, rec)
	if err != nil {
		t.Fatal(err)
	}

	// Data from the peer makes the socket readable, once per arrival
	// (edge-triggered), whether or not it is read.
	rec.reset()
	if _, err := client.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, Readable)
	buf := make([]byte, 64)
	if n, err := readNow(rc, buf); err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("read %q, %v", buf[:n], err)
	}
	if _, err := readNow(rc, buf); !errors.Is(err, unix.EAGAIN) {
		t.Fatalf("second read: %v; want EAGAIN", err)
	}

	// Fill the send buffer until a write would block; once the peer
	// reads, the socket is writable again.
	chunk := make([]byte, 64<<10)
	for {
		var werr error
		_ = rc.Write(func(fd uintptr) bool {
			_, werr = unix.Write(int(fd), chunk)
			return true
		})
		if errors.Is(werr, unix.EAGAIN) {
			break
		}
		if werr != nil {
			t.Fatal(werr)
		}
	}
	rec.reset()
	go func() {
		b := make([]byte, 1<<20)
		for {
			if _, err := client.Read(b); err != nil {
				return
			}
		}
	}()
	rec.waitFor(t, Writable)

	// The peer's end of stream is readable too.
	rec.reset()
	client.CloseWrite()
	rec.waitFor(t, Readable)

	// After Remove, nothing more is heard.
	reg.Remove(rc)
	rec.reset()
	client.Close()
	// A second registration on another pair proves the loop still runs,
	// and that the first handler heard nothing meanwhile.
	s2, c2 := tcpPair(t)
	rc2 := rawConn(t, s2)
	rec2 := newRecorder()
	reg2, err := p.Add(rc2, rec2)
	if err != nil {
		t.Fatal(err)
	}
	defer reg2.Remove(rc2)
	rec2.reset()
	c2.Write([]byte("x"))
	rec2.waitFor(t, Readable)
	if n := rec.readable(); n != 0 {
		t.Fatalf("removed handler heard %d events", n)
	}
}

// Many connections over several epoll instances each hear their own data.
func TestManyConnections(t *testing.T) {
	p, err := New(3)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	const n = 50
	recs := make([]*recorder, n)
	clients := make([]*net.TCPConn, n)
	for i := range n {
		s, c := tcpPair(t)
		recs[i], clients[i] = newRecorder(), c
		reg, err := p.Add(rawConn(t, s), recs[i])
		if err != nil {
			t.Fatal(err)
		}
		rc := rawConn(t, s)
		t.Cleanup(func() { reg.Remove(rc) })
	}
	for i := range n {
		recs[i].reset()
	}
	for i := 0; i < n; i += 2 {
		clients[i].Write([]byte("x"))
	}
	for i := 0; i < n; i += 2 {
		recs[i].waitFor(t, Readable)
	}
	for i := 1; i < n; i += 2 {
		if recs[i].readable() != 0 {
			t.Fatalf("connection %d heard data sent to another", i)
		}
	}
}

func TestAddAfterClose(t *testing.T) {
	p, err := New(1)
	if err != nil {
		t.Fatal(err)
	}
	p.Close()
	p.Close() // idempotent
	s, _ := tcpPair(t)
	if _, err := p.Add(rawConn(t, s), newRecorder()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Add after Close: %v", err)
	}
}

// A freed slot is reused with a new generation: an event still carrying
// the old registration's id finds no handler.
func TestSlotReuse(t *testing.T) {
	ep := &epoll{slots: make([]slot, 1)}
	a, b := newRecorder(), newRecorder()
	idA := ep.addLocked(a)
	ep.removeLocked(idA)
	idB := ep.addLocked(b)
	if uint32(idA) != uint32(idB) {
		t.Fatalf("slot not reused: %x then %x", idA, idB)
	}
	if h := ep.handlerLocked(idA); h != nil {
		t.Fatal("a stale id found the new registration's handler")
	}
	if h := ep.handlerLocked(idB); h != Handler(b) {
		t.Fatal("the new registration's id does not find its handler")
	}
	ep.removeLocked(idA) // stale: must not free b's slot
	if h := ep.handlerLocked(idB); h != Handler(b) {
		t.Fatal("removing a stale id freed the slot")
	}
	if h := ep.handlerLocked(0); h != nil {
		t.Fatal("id 0 (the wake-up) has a handler")
	}
}
