package natstest

import (
	"fmt"
	"net"
	"sync"
	"testing"
)

// Relay is a TCP relay in front of a server that a test can freeze. While
// frozen it moves no byte in either direction, and connections made to it
// are accepted but get no answer: to its clients the server looks like a
// process stopped with SIGSTOP (sockets open, nothing read or written).
// Thaw resumes every connection where it stopped, nothing lost.
type Relay struct {
	// static after NewRelay
	t      testing.TB
	ln     net.Listener
	target string
	done   chan struct{} // closed by Close

	mu     sync.Mutex
	thawed chan struct{} // closed while not frozen; replaced by Freeze
	conns  map[net.Conn]struct{}

	wg sync.WaitGroup // the accept loop and every copier
}

// NewRelay listens on a random loopback port and relays every connection
// to target (host:port). It is closed when the test ends.
func NewRelay(t testing.TB, target string) *Relay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("relay: %v", err)
	}
	r := &Relay{t: t, ln: ln, target: target, done: make(chan struct{}), thawed: make(chan struct{}), conns: make(map[net.Conn]struct{})}
	close(r.thawed)
	r.wg.Add(1)
	go r.accept()
	t.Cleanup(r.Close)
	return r
}

// URL is the relay's NATS URL.
func (r *Relay) URL() string { return fmt.Sprintf("nats://%s", r.ln.Addr()) }

// Freeze stops every byte until Thaw.
func (r *Relay) Freeze() {
	r.mu.Lock()
	defer r.mu.Unlock()
	select {
	case <-r.thawed:
		r.thawed = make(chan struct{})
	default: // already frozen
	}
}

// Thaw lets the bytes flow again.
func (r *Relay) Thaw() {
	r.mu.Lock()
	defer r.mu.Unlock()
	select {
	case <-r.thawed:
	default:
		close(r.thawed)
	}
}

// Close stops the relay and drops every connection through it.
func (r *Relay) Close() {
	r.mu.Lock()
	select {
	case <-r.done:
		r.mu.Unlock()
		return
	default:
	}
	close(r.done)
	for c := range r.conns {
		_ = c.Close()
	}
	r.mu.Unlock()
	_ = r.ln.Close()
	r.wg.Wait()
}

// gate blocks while the relay is frozen; it reports false once it is closed.
func (r *Relay) gate() bool {
	r.mu.Lock()
	thawed := r.thawed
	r.mu.Unlock()
	select {
	case <-thawed:
		return true
	case <-r.done:
		return false
	}
}

func (r *Relay) track(cs ...net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	select {
	case <-r.done:
		return false
	default:
	}
	for _, c := range cs {
		r.conns[c] = struct{}{}
	}
	return true
}

func (r *Relay) accept() {
	defer r.wg.Done()
	for {
		client, err := r.ln.Accept()
		if err != nil {
			return
		}
		server, err := net.Dial("tcp", r.target)
		if err != nil {
			_ = client.Close()
			continue
		}
		if !r.track(client, server) {
			_ = client.Close()
			_ = server.Close()
			return
		}
		r.wg.Add(2)
		go r.copy(server, client)
		go r.copy(client, server)
	}
}

// copy moves bytes from src to dst, passing the gate before every read and
// every write; when either side ends, both are closed.
func (r *Relay) copy(dst, src net.Conn) {
	defer r.wg.Done()
	defer func() {
		_ = dst.Close()
		_ = src.Close()
		r.mu.Lock()
		delete(r.conns, dst)
		delete(r.conns, src)
		r.mu.Unlock()
	}()
	buf := make([]byte, 32<<10)
	for r.gate() {
		n, err := src.Read(buf)
		if n > 0 {
			if !r.gate() {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return // EOF, a reset, or Close
		}
	}
}
