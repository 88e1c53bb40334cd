package gateway

import (
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/chatgate/chatgate/gateway/internal/netpoll"
	"github.com/chatgate/chatgate/gateway/internal/wheel"
)

// The event loop serves connections without goroutines of their own
// (--netpoll, Linux): an idle connection costs its memory and nothing else.
//
//   - Reading: the poller (epoll, gateway/internal/netpoll) says when a
//     socket is readable; a goroutine is started for that connection only
//     then, reads what has arrived without blocking, hands each whole
//     message to gorilla/websocket and the request handler, and returns.
//     The frame gate (gateway/internal/wsgate) makes sure gorilla only ever
//     reads whole messages, so it never waits for the network.
//   - Writing: a producer (a broadcast, a reply) queues a frame in the
//     connection's outbox, which puts the connection on one flusher's dirty
//     list. A flusher is one goroutine per core: it takes each dirty
//     connection's queue and writes it with one non-blocking writev,
//     framed once (a broadcast's bytes are shared by every recipient). A
//     socket that cannot take everything is left for the poller's
//     "writable" event; the write deadline is then checked by the wheel.
//   - Time: one wheel visits every connection once per revolution to send
//     pings and enforce the pong timeout, the write timeout, the close
//     grace and the token's expiry, instead of a ticker and timers per
//     connection.
//
// The goroutine-per-connection reader and writer (reader.go, writer.go)
// remain for other systems and for --netpoll=false; both drive the same
// request handler and outbox.
type eventLoop struct {
	// static after newEventLoop
	poller   *netpoll.Poller
	flushers []*flusher
	wheel    *wheel.Wheel

	closeOnce sync.Once
}

// newEventLoop starts the poller, a flusher per core and the wheel.
func newEventLoop(cfg *Config) (*eventLoop, error) {
	n := runtime.GOMAXPROCS(0)
	p, err := netpoll.New(n)
	if err != nil {
		return nil, fmt.Errorf("event loop: %w", err)
	}
	l := &eventLoop{poller: p, wheel: wheel.New(wheelRevolution(cfg), wheelSlots)}
	for range n {
		f := &flusher{wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}), delay: cfg.WriteDelay}
		l.flushers = append(l.flushers, f)
		go f.run()
	}
	return l, nil
}

// wheelSlots spreads the wheel's visits over a revolution.
const wheelSlots = 64

// wheelRevolution is how often each connection's timers are checked: a
// quarter of the shortest timeout the wheel enforces, between 10 ms and
// 1 s, so each is enforced within a quarter of itself (and the close grace,
// 1 s, within a revolution).
func wheelRevolution(cfg *Config) time.Duration {
	shortest := min(cfg.PingInterval, cfg.PongTimeout-cfg.PingInterval, cfg.WriteTimeout)
	return min(max(shortest/4, 10*time.Millisecond), time.Second)
}

// close stops the flushers, the wheel and the poller, once. Every
// connection must be gone.
func (l *eventLoop) close() {
	l.closeOnce.Do(func() {
		for _, f := range l.flushers {
			close(f.stop)
			<-f.done
		}
		l.wheel.Close()
		_ = l.poller.Close()
	})
}

// flusherFor picks the flusher of a connection.
func (l *eventLoop) flusherFor(id uint64) *flusher {
	return l.flushers[id%uint64(len(l.flushers))]
}

// flusher is one goroutine that writes the queues of its connections.
type flusher struct {
	// static
	wake  chan struct{} // poked (never closed) when dirty gains a connection
	stop  chan struct{}
	done  chan struct{}
	delay time.Duration // --write-delay: how long a wake-up waits for more to write

	mu    sync.Mutex
	dirty []*evConn // connections with something to write, each once

	// owned by the flusher's goroutine
	scratch flushScratch
}

// add puts e on the dirty list; e.flushQueued keeps it there at most once.
func (f *flusher) add(e *evConn) {
	f.mu.Lock()
	f.dirty = append(f.dirty, e)
	f.mu.Unlock()
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

func (f *flusher) run() {
	defer close(f.done)
	var work []*evConn
	var t *time.Timer
	if f.delay > 0 {
		t = time.NewTimer(time.Hour)
		t.Stop()
	}
	for {
		select {
		case <-f.wake:
		case <-f.stop:
			return
		}
		if t != nil {
			// Let more frames gather, so each write carries several.
			t.Reset(f.delay)
			select {
			case <-t.C:
			case <-f.stop:
				return
			}
		}
		for {
			f.mu.Lock()
			work, f.dirty = f.dirty, work[:0]
			f.mu.Unlock()
			if len(work) == 0 {
				break
			}
			for i, e := range work {
				// Cleared first: a frame queued during the flush puts
				// the connection back on the list.
				e.flushQueued.Store(false)
				e.flush(&f.scratch)
				work[i] = nil
			}
		}
	}
}
