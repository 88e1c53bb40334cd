package gateway

import (
	"time"

	"github.com/gorilla/websocket"

	"github.com/chatgate/chatgate/gateway/internal/wsgate"
)

// The event loop's write side: a flusher writes a connection's queue with
// non-blocking writevs. Each frame is its own WebSocket message, framed
// once: the header is computed per write into the flusher's scratch, and
// the payload is the frame's shared bytes, so a broadcast is never copied
// per recipient.

const (
	// maxWriteFrames caps the frames of one writev (two slices each,
	// within maxIovecs).
	maxWriteFrames = maxIovecs/2 - 1
	// maxWriteBytes caps the bytes of one writev, so that a long backlog
	// goes out in several, with control frames between them.
	maxWriteBytes = 256 << 10
)

// flushScratch is a flusher's reusable memory for building a writev.
type flushScratch struct {
	iov  []iovecT
	hdrs []byte
}

// flush writes what the connection has queued until the socket is full or
// nothing is left; once the connection is closing and everything is
// written, it sends the close frame and ends the write side. Only the
// connection's flusher calls it.
func (e *evConn) flush(sc *flushScratch) {
	if e.writeEnded {
		return
	}
	for {
		if len(e.ctlOut) == 0 && e.off == 0 {
			// Control frames go out between messages, never behind a
			// backlog: they are taken whenever no frame is half written.
			e.ctlMu.Lock()
			e.ctlOut, e.ctl = e.ctl, e.ctlOut[:0]
			e.ctlMu.Unlock()
		}
		if e.next == len(e.batch) {
			e.recycleBatch()
			batch, closing, flush := e.c.out.take()
			if len(batch) > 0 && closing && !flush {
				e.c.out.settle(batch) // aborted: dropped
				e.c.out.recycle(batch)
				batch = nil
			}
			if len(batch) > 0 {
				e.batch = batch
			} else if len(e.ctlOut) == 0 {
				if closing {
					if e.finishClose() {
						continue // the close frame was queued: write it
					}
					return
				}
				e.blockedSince.Store(0)
				return
			}
		}
		written, total, took, err := e.writeSome(sc)
		if written > 0 {
			e.advance(written, took)
		}
		if err == errWouldBlock || err == nil && written < total {
			if err == errWouldBlock {
				// The poller's writable event resumes; the wheel
				// enforces the write timeout meanwhile.
				e.blockedSince.CompareAndSwap(0, time.Now().UnixNano())
				return
			}
			continue
		}
		if err != nil {
			e.writeFailed(err)
			return
		}
	}
}

// writeSome writes the control frames being sent and as many queued frames
// as one writev takes. It returns the bytes written and offered, and how
// long the write took.
func (e *evConn) writeSome(sc *flushScratch) (written, total int, took time.Duration, err error) {
	if cap(sc.hdrs) < (maxWriteFrames+1)*wsgate.MaxServerHeader {
		sc.hdrs = make([]byte, 0, (maxWriteFrames+1)*wsgate.MaxServerHeader)
		sc.iov = make([]iovecT, 0, maxIovecs)
	}
	iov, hdrs := sc.iov[:0], sc.hdrs[:0]
	add := func(b []byte) {
		if len(b) > 0 {
			iov = append(iov, iovecT{})
			iovec(&iov[len(iov)-1], b)
			total += len(b)
		}
	}
	add(e.ctlOut)
	skip := e.off
	for i := e.next; i < len(e.batch) && i-e.next < maxWriteFrames && total < maxWriteBytes; i++ {
		data := e.batch[i].Data
		start := len(hdrs)
		hdrs = wsgate.AppendTextHeader(hdrs, len(data))
		h := hdrs[start:]
		if skip >= len(h) {
			skip -= len(h)
			h = nil
		} else {
			h, skip = h[skip:], 0
		}
		add(h)
		add(data[skip:])
		skip = 0
	}
	if len(iov) == 0 {
		return 0, 0, 0, nil
	}
	start := time.Now()
	written, err = writeNow(e.fd, iov)
	took = time.Since(start)
	clear(iov) // no pointers kept past the write
	sc.iov, sc.hdrs = iov[:0], hdrs[:0]
	return written, total, took, err
}

// advance accounts n bytes written by a write that took took: control
// frames first, then frames, which are settled with the outbox once whole.
func (e *evConn) advance(n int, took time.Duration) {
	if len(e.ctlOut) > 0 {
		k := min(n, len(e.ctlOut))
		e.ctlOut = e.ctlOut[:copy(e.ctlOut, e.ctlOut[k:])]
		n -= k
	}
	first := e.next
	now := time.Now()
	obs := e.c.srv.obs
	payload := 0
	for n > 0 && e.next < len(e.batch) {
		f := e.batch[e.next]
		wire := wsgate.TextFrameLen(len(f.Data))
		if e.off+n < wire {
			e.off += n
			break
		}
		n -= wire - e.off
		e.off = 0
		e.next++
		payload += len(f.Data)
		if !f.Accepted.IsZero() {
			obs.Delivered(now.Sub(f.Accepted), f.TraceID)
		}
	}
	if e.next > first {
		obs.FrameWritten(payload, e.next-first, took)
	}
	if e.next > first && e.c.out.settle(e.batch[first:e.next]) {
		// Aborted meanwhile (an eviction): what is not begun is dropped;
		// a frame half written is finished first, or the stream breaks.
		keep := e.next
		if e.off > 0 {
			keep++
		}
		e.c.out.settle(e.batch[keep:])
		clear(e.batch[keep:])
		e.batch = e.batch[:keep]
	}
}

// recycleBatch gives a written batch back to the outbox.
func (e *evConn) recycleBatch() {
	if e.batch != nil {
		e.c.out.recycle(e.batch)
		e.batch, e.next, e.off = nil, 0, 0
	}
}

// finishClose runs once everything queued is written and the connection
// is closing: the first time it asks gorilla for the close frame (which
// lands in ctl) and reports true; once that is written too (or none is
// due) it ends the write side.
func (e *evConn) finishClose() (more bool) {
	if !e.closeQueued {
		e.closeQueued = true
		if p := e.closeFramePayload(); p != nil {
			deadline := time.Now().Add(e.c.srv.cfg.WriteTimeout)
			// An error means gorilla has sent a close frame already
			// (its answer to the peer's).
			if err := e.c.conn.WriteControl(websocket.CloseMessage, p, deadline); err == nil {
				return true
			}
		}
	}
	code, _ := e.c.out.closeFrame()
	e.endWrite(code != 0)
	return false
}

// writeFailed ends the write side after a failed write.
func (e *evConn) writeFailed(err error) {
	e.c.close(writeFailure(err))
	e.c.debug("write failed", "err", err)
	if e.next < len(e.batch) {
		e.c.out.settle(e.batch[e.next:])
	}
	e.endWrite(false)
}

// endWrite ends the write side. After a close frame the peer has
// closeGrace to answer it (the wheel ends the wait); otherwise the
// connection is dropped at once.
func (e *evConn) endWrite(closeSent bool) {
	e.writeEnded = true
	e.blockedSince.Store(0)
	e.recycleBatch()
	e.c.out.release()
	if closeSent {
		e.graceUntil.Store(time.Now().Add(closeGrace).UnixNano())
	} else {
		e.shutdown()
	}
	e.sideDone()
}
