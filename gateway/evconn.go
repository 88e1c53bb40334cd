package gateway

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorilla/websocket"

	"github.com/chatgate/chatgate/gateway/broker"
	"github.com/chatgate/chatgate/gateway/internal/netpoll"
	"github.com/chatgate/chatgate/gateway/internal/wheel"
	"github.com/chatgate/chatgate/gateway/internal/wsgate"
	"github.com/chatgate/chatgate/gateway/protocol"
)

// errNoSyscallConn: the hijacked connection does not expose its socket, so
// the event loop cannot serve it (the goroutine reader and writer do).
var errNoSyscallConn = errors.New("gateway: connection has no socket for the event loop")

// evConn is one connection's I/O under the event loop (evloop.go). It is
// also the net.Conn gorilla/websocket reads and writes through: reads come
// from the frame gate, and writes (the control frames gorilla makes: pongs,
// pings, close frames) are queued for the flusher, so gorilla never blocks
// on the socket.
//
// Three parts run it, each at most one goroutine at a time, and the last
// to finish tears the connection down (sides):
//
//   - setup: the upgrade's goroutine, until the connection is registered
//     with the poller and the wheel;
//   - the read side: a goroutine started when the socket is readable
//     (readBusy keeps it to one), which ends for good when the peer's close
//     frame, the end of the stream or an error is read, or when shutdown
//     stops it;
//   - the write side: whichever flusher has the connection on its dirty
//     list (flushQueued keeps it there once), which ends once the close
//     frame is written, or at once on an abort.
type evConn struct {
	// static after newEvConn
	c    *client
	nc   net.Conn // the hijacked connection: closed at teardown
	raw  syscall.RawConn
	fd   int // raw's descriptor, valid until teardown
	loop *eventLoop
	fl   *flusher
	// reg is set by setup, read at teardown (which setup's side delays).
	reg *netpoll.Registration

	// attached is set once the upgrade has written its response: from
	// then on gorilla's writes are queued instead of written through.
	attached atomic.Bool

	// owned by the read side
	gate      wsgate.Gate
	readEnded bool
	discard   bool // input is no longer parsed, only read until the end
	// readBusy is 0 with no read goroutine, 1 with one, more when the
	// poller saw the socket readable again meanwhile.
	readBusy atomic.Int32
	stopRead atomic.Bool

	// ctl holds the control frames gorilla wrote, for the flusher to send
	// at the next frame boundary.
	ctlMu sync.Mutex
	ctl   []byte

	// owned by the write side
	flushQueued atomic.Bool
	batch       []*broker.Frame // taken from the outbox; batch[next:] not all written
	next        int
	off         int    // bytes of batch[next] (header and payload) already written
	ctlOut      []byte // control frames being written
	closeQueued bool   // the close frame has been asked for
	writeEnded  bool

	// times in unix nanoseconds, read by the wheel
	lastRead     atomic.Int64 // the peer's last bytes
	blockedSince atomic.Int64 // since when written bytes have been waiting for the socket; 0 when none
	graceUntil   atomic.Int64 // after our close frame: until when the peer may answer it; 0 before
	// owned by the wheel's goroutine (and setup, before the wheel has it)
	wh       wheel.Handle
	lastPing int64
	expires  int64 // the token's expiry; 0 for none

	sides atomic.Int32
}

// evHijacker hands gorilla's upgrader an evConn around the hijacked
// connection, or the connection itself when it has no socket to poll.
type evHijacker struct {
	http.ResponseWriter
	e *evConn // set by Hijack when the event loop can serve the connection
	l *eventLoop
	// limits of the frame gate
	maxBytes  int64
	maxFrames int
}

func (h *evHijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	nc, brw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	sc, ok := nc.(syscall.Conn)
	var raw syscall.RawConn
	if ok {
		raw, err = sc.SyscallConn()
	}
	fd := -1
	if ok && err == nil {
		fd, err = socketFD(raw)
	}
	if !ok || err != nil {
		// No socket to poll: this one is served by goroutines, its
		// frames counted as they are read.
		return &frameLimitConn{Conn: nc, max: h.maxFrames}, brw, nil
	}
	h.e = &evConn{nc: nc, raw: raw, fd: fd, loop: h.l}
	h.e.gate.Init(h.maxBytes, h.maxFrames, true)
	h.e.sides.Store(3) // setup, read, write
	return h.e, brw, nil
}

// attach makes e the I/O of client c and starts serving it: after this
// the flusher may write, and once registered the poller reads. id spreads
// connections over the flushers.
func (e *evConn) attach(c *client, id uint64) {
	e.c = c
	e.fl = e.loop.flusherFor(id)
	now := time.Now().UnixNano()
	e.lastRead.Store(now)
	e.lastPing = now
	if ident := c.peer.ident; ident != nil && !ident.Expires.IsZero() {
		e.expires = ident.Expires.UnixNano()
	}
	e.attached.Store(true)
}

// register hands the connection to the poller and the wheel, and ends
// setup. If registering fails the connection is dropped.
func (e *evConn) register() {
	reg, err := e.loop.poller.Add(e.raw, e)
	if err != nil {
		e.c.debug("cannot register with the poller", "err", err)
		e.c.close(causeReadError)
		e.stopRead.Store(true)
		e.kickRead() // the read side ends at once
	} else {
		e.reg = reg
	}
	e.loop.wheel.Add(e, &e.wh)
	e.sideDone()
}

// sideDone ends one of the three parts; the last one tears down.
func (e *evConn) sideDone() {
	if e.sides.Add(-1) == 0 {
		// Off the flusher's and the wheel's goroutines: leaving the
		// rooms takes their locks.
		go e.teardown()
	}
}

// teardown frees everything the connection held. Nothing else runs for it
// any more.
func (e *evConn) teardown() {
	if e.reg != nil {
		e.reg.Remove(e.raw)
	}
	e.loop.wheel.Remove(&e.wh)
	e.c.leaveRooms()
	e.c.finish(e.nc)
	e.gate.Reset()
	e.c.srv.handlers.Done()
}

// Ready implements netpoll.Handler, on the poller's goroutine.
func (e *evConn) Ready(ev netpoll.Event) {
	if ev&netpoll.Readable != 0 {
		e.kickRead()
	}
	if ev&netpoll.Writable != 0 && e.blockedSince.Load() != 0 {
		e.scheduleFlush()
	}
}

// scheduleFlush puts the connection on its flusher's list, once.
func (e *evConn) scheduleFlush() {
	if e.flushQueued.CompareAndSwap(false, true) {
		e.fl.add(e)
	}
}

// shutdown stops the connection's I/O at once: the socket is shut down (it
// is closed at teardown, so its descriptor cannot be reused meanwhile), so
// the read side reads its end and the write side fails.
func (e *evConn) shutdown() {
	shutdownNow(e.fd)
	e.stopRead.Store(true)
	e.kickRead()
	e.scheduleFlush()
}

// ---- the net.Conn gorilla sees ----

// Read gives gorilla the bytes the gate has released: a whole message.
func (e *evConn) Read(p []byte) (int, error) { return e.gate.Read(p) }

// Write writes the upgrade's response through to the socket; after that it
// queues what gorilla writes (control frames) for the flusher.
func (e *evConn) Write(p []byte) (int, error) {
	if !e.attached.Load() {
		return e.nc.Write(p)
	}
	e.ctlMu.Lock()
	e.ctl = append(e.ctl, p...)
	e.ctlMu.Unlock()
	e.scheduleFlush()
	return len(p), nil
}

// Close is how the Server drops a connection at once (ForceClose): the
// socket is shut down, and the connection torn down when its parts end.
func (e *evConn) Close() error {
	if !e.attached.Load() {
		return e.nc.Close()
	}
	e.shutdown()
	return nil
}

func (e *evConn) LocalAddr() net.Addr  { return e.nc.LocalAddr() }
func (e *evConn) RemoteAddr() net.Addr { return e.nc.RemoteAddr() }

// Deadlines apply to the upgrade only; afterwards the wheel enforces the
// heartbeat and write timeouts.
func (e *evConn) SetDeadline(t time.Time) error {
	if e.attached.Load() {
		return nil
	}
	return e.nc.SetDeadline(t)
}

func (e *evConn) SetReadDeadline(t time.Time) error {
	if e.attached.Load() {
		return nil
	}
	return e.nc.SetReadDeadline(t)
}

func (e *evConn) SetWriteDeadline(t time.Time) error {
	if e.attached.Load() {
		return nil
	}
	return e.nc.SetWriteDeadline(t)
}

// ---- the wheel ----

// Visit implements wheel.Item: the connection's timers, once per
// revolution.
func (e *evConn) Visit(now time.Time) {
	t := now.UnixNano()
	cfg := &e.c.srv.cfg
	if g := e.graceUntil.Load(); g != 0 {
		if t > g {
			e.shutdown() // the peer did not answer our close frame in time
		}
		return
	}
	if b := e.blockedSince.Load(); b != 0 && t-b > int64(cfg.WriteTimeout) {
		e.c.close(causeWriteTimeout)
		e.c.debug("write failed", "err", "write timeout")
		e.shutdown()
		return
	}
	if t-e.lastRead.Load() > int64(cfg.PongTimeout) {
		e.c.close(causeHeartbeat)
	}
	if e.expires != 0 && t >= e.expires {
		e.c.close(causeTokenExpired)
	}
	if t-e.lastPing >= int64(cfg.PingInterval) {
		e.lastPing = t
		// An error here is gorilla refusing after its close frame.
		_ = e.c.conn.WriteControl(websocket.PingMessage, nil, now.Add(cfg.WriteTimeout))
	}
}

// closeFramePayload is the payload of the close frame for the outbox's
// cause (nil for none).
func (e *evConn) closeFramePayload() []byte {
	code, why := e.c.out.closeFrame()
	if code == 0 {
		return nil
	}
	return protocol.ClosePayload(code, why)
}
