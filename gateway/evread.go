package gateway

import (
	"bytes"
	"errors"
	"io"
	"time"

	"github.com/gorilla/websocket"

	"github.com/chatgate/chatgate/gateway/internal/wsgate"
)

// The event loop's read side: a goroutine that exists only while the
// socket has something to read.

// readChunk is how much is read from the socket at a time.
const readChunk = 4 << 10

// kickRead makes sure a read goroutine looks at the socket: it starts one,
// or tells the running one to look again before it returns.
func (e *evConn) kickRead() {
	if e.readBusy.Add(1) == 1 {
		go e.serveRead()
	}
}

// serveRead reads until the socket has nothing more (or the connection's
// input has ended), then returns; the poller starts another when the socket
// is readable again.
func (e *evConn) serveRead() {
	for {
		e.readAvailable()
		if e.readEnded {
			e.sideDone() // readBusy stays set: no read goroutine starts again
			return
		}
		if e.readBusy.CompareAndSwap(1, 0) {
			return
		}
		e.readBusy.Store(1) // readable again meanwhile: look again
	}
}

// readAvailable reads what the socket holds and handles every whole
// message, until the socket would block or the input ends.
func (e *evConn) readAvailable() {
	for !e.readEnded {
		if e.stopRead.Load() {
			e.endRead(nil)
			return
		}
		var buf []byte
		if e.discard {
			buf = discardBuf[:]
		} else {
			buf = e.gate.Space(readChunk)
		}
		n, err := readNow(e.fd, buf)
		if n > 0 {
			e.lastRead.Store(time.Now().UnixNano())
			if !e.discard {
				e.gate.Commit(n)
				e.handleArrived()
			}
			continue
		}
		switch {
		case err == errWouldBlock:
			if !e.discard {
				e.gate.Trim()
			}
			return
		case err == nil:
			e.endRead(io.EOF)
		default:
			e.endRead(err)
		}
	}
}

// discardBuf takes input that is no longer parsed (it is never read).
var discardBuf [readChunk]byte

// endRead ends the read side; err, if any, says how the input ended.
func (e *evConn) endRead(err error) {
	if err != nil {
		e.c.readFailed(err)
	}
	e.readEnded = true
}

// handleArrived hands every whole message the gate holds to gorilla and
// the request handler, and answers pings.
func (e *evConn) handleArrived() {
	for !e.readEnded && !e.discard {
		kind, payload, err := e.gate.Next()
		if err != nil { // a bug: a message not read to its end
			e.c.logError("frame gate out of step", "err", err)
			e.c.close(causeInternal)
			e.discard = true
			return
		}
		switch kind {
		case wsgate.Need:
			return
		case wsgate.Ping:
			// gorilla frames the pong; it is queued for the flusher.
			_ = e.c.conn.WriteControl(websocket.PongMessage, payload, time.Now().Add(e.c.srv.cfg.WriteTimeout))
		case wsgate.Pong:
		case wsgate.TooManyFrames:
			e.c.readFailed(errTooManyFrames)
			e.discard = true // the stream cannot be parsed past the limit
		case wsgate.TooBig:
			// The gate skips the rest of the message.
			if e.c.beginRequest() {
				e.c.request(inboundTooLarge, nil)
			}
		case wsgate.Binary:
			if e.c.beginRequest() {
				e.c.request(inboundBinary, nil)
			}
		case wsgate.Release:
			e.readMessage()
		}
	}
}

// readMessage reads the message the gate released and hands it to the
// request handler, as readLoop does.
func (e *evConn) readMessage() {
	c := e.c
	mt, r, err := c.conn.NextReader()
	if err != nil {
		e.endRead(err)
		return
	}
	if !c.beginRequest() {
		_, _ = io.Copy(io.Discard, r) // closing: discarded unread
		return
	}
	_ = mt // the gate releases text messages only
	buf := readBufs.Get().(*bytes.Buffer)
	buf.Reset()
	// The gate has checked the size: at most --max-frame-bytes.
	if _, err := buf.ReadFrom(r); err != nil {
		readBufs.Put(buf)
		c.abandonRequest()
		e.endRead(err)
		return
	}
	c.srv.obs.FrameReceived(buf.Len())
	c.request(inboundText, buf.Bytes())
	if buf.Cap() <= 64<<10 {
		readBufs.Put(buf)
	}
}

// errWouldBlock is what readNow and writeNow return when the socket is not
// ready.
var errWouldBlock = errors.New("gateway: socket would block")
