// Package wsgate holds the bytes read from a WebSocket client's socket and
// hands gorilla/websocket's reader whole messages only, so that reading a
// message never waits for the network.
//
// gorilla/websocket reads frames from an io.Reader and blocks in it until
// a frame's bytes have arrived. A server that reads a socket only when
// epoll says it is readable, instead of keeping a goroutine blocked in Read
// per connection, must therefore never call gorilla's reader before a
// whole message is buffered. The Gate parses frame headers (never
// payloads) as bytes arrive and releases a message to the reader once its
// final frame is complete, together with the control frames interleaved
// with its fragments; after the message has been read the Gate's released
// part is empty again, so gorilla's buffer is too.
//
// A ping or pong, between messages or between the fragments of one, is
// taken out of the stream and reported to the caller as soon as it is
// whole (gorilla would read on after a control frame, and a client may
// wait for its pong before finishing a message); a close frame is released
// for gorilla to answer and report; a malformed header is released so that
// gorilla reports the protocol error. The Gate also bounds each message: its size and its
// number of data frames, from the headers, before the payload is buffered.
package wsgate

import (
	"encoding/binary"
	"errors"
	"sync"
)

// Kind is what Next found.
type Kind uint8

const (
	// Need: no whole message yet; read more from the socket.
	Need Kind = iota
	// Release: a whole message, a close frame or a malformed frame is
	// released; call the WebSocket reader (NextReader) and read to the
	// end.
	Release
	// Ping: a ping was taken out of the stream; answer it with a pong
	// carrying the payload.
	Ping
	// Pong: a pong was taken out of the stream.
	Pong
	// TooManyFrames: the message in progress has more data frames than
	// allowed.
	TooManyFrames
	// TooBig: the message in progress carries more payload than allowed.
	// Its frames are skipped as they arrive, never buffered or released.
	TooBig
	// Binary: a binary message begins, and the Gate was made text-only.
	// Its frames are skipped as they arrive.
	Binary
)

// ErrNotReleased is what Read returns when nothing is released: the caller
// read past a message, which is a bug, reported instead of blocking.
var ErrNotReleased = errors.New("wsgate: read with no message released")

// ErrUnread is what Next returns while released bytes have not been read.
var ErrUnread = errors.New("wsgate: the released message was not read to its end")

// WebSocket opcodes (RFC 6455 5.2).
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xa

	maxControlPayload = 125
)

// Gate is one connection's inbound buffer. It is not safe for concurrent
// use: the connection's reader owns it.
type Gate struct {
	// static after New
	maxFrames int
	maxBytes  int64
	textOnly  bool

	// buf holds the bytes read and not yet consumed: buf[rd:rel] is the
	// released part not yet read, buf[rel:scan] whole frames of the
	// message in progress, buf[scan:] an incomplete frame.
	buf  []byte
	bp   *[]byte // buf's pool entry while buf is a pooled chunk
	rd   int
	rel  int
	scan int
	// the message in progress
	inMsg  bool
	frames int
	size   int64
	// skipping: the message in progress is being dropped (Binary,
	// TooBig): skipLeft more payload bytes of its current frame, which is
	// its last if skipFin.
	skipping bool
	skipLeft uint64
	skipFin  bool
	// cutAt and cutLen are a ping or pong still in buf, already reported:
	// the next call takes it out (its payload was valid until then).
	cutAt, cutLen int
}

// New returns a Gate that allows messages of at most maxBytes of payload
// in at most maxFrames data frames (0: no limit). A textOnly Gate reports
// a binary message as soon as it begins (Binary) and skips it.
func New(maxBytes int64, maxFrames int, textOnly bool) *Gate {
	g := new(Gate)
	g.Init(maxBytes, maxFrames, textOnly)
	return g
}

// Init sets up a zero Gate in place, as New does.
func (g *Gate) Init(maxBytes int64, maxFrames int, textOnly bool) {
	g.maxBytes, g.maxFrames, g.textOnly = maxBytes, maxFrames, textOnly
}

// chunk is the read size: buffers of this capacity are pooled, so an idle
// connection holds none.
const chunk = 4 << 10

var pool = sync.Pool{New: func() any { b := make([]byte, 0, chunk); return &b }}

// Space returns room to read at least min bytes into; Commit(n) then keeps
// n of them.
func (g *Gate) Space(min int) []byte {
	if g.buf == nil {
		g.bp = pool.Get().(*[]byte)
		g.buf = (*g.bp)[:0]
	}
	if cap(g.buf)-len(g.buf) < min {
		nb := make([]byte, len(g.buf), len(g.buf)+max(min, chunk))
		copy(nb, g.buf)
		g.putBuf()
		g.buf = nb
	}
	return g.buf[len(g.buf):cap(g.buf)]
}

// Commit keeps n bytes read into the slice Space returned.
func (g *Gate) Commit(n int) { g.buf = g.buf[:len(g.buf)+n] }

// Buffered is the number of bytes held.
func (g *Gate) Buffered() int { return len(g.buf) - g.rd }

func (g *Gate) putBuf() {
	if g.bp != nil {
		*g.bp = g.buf[:0]
		pool.Put(g.bp)
	}
	g.buf, g.bp = nil, nil
}

// Reset drops whatever is held and gives the buffer back; the Gate is then
// as new.
func (g *Gate) Reset() {
	g.putBuf()
	g.rd, g.rel, g.scan, g.cutAt, g.cutLen = 0, 0, 0, 0, 0
	g.inMsg, g.frames, g.size = false, 0, 0
	g.skipping, g.skipLeft, g.skipFin = false, 0, false
}

// drop discards buf[:n].
func (g *Gate) drop(n int) {
	g.buf = g.buf[:copy(g.buf, g.buf[n:])]
	g.scan = max(g.scan-n, 0)
}

// skip starts dropping the message in progress: the frames of it before
// scan, and the frame at scan whose header is hl long, payload n long.
func (g *Gate) skip(hl int, n uint64, fin bool) {
	g.drop(g.scan + hl)
	g.scan = 0
	g.skipping, g.skipLeft, g.skipFin = true, n, fin
	g.inMsg = !fin
}

// Read gives the WebSocket reader the released bytes; it never blocks.
func (g *Gate) Read(p []byte) (int, error) {
	if g.rd == g.rel {
		return 0, ErrNotReleased
	}
	n := copy(p, g.buf[g.rd:g.rel])
	g.rd += n
	return n, nil
}

// Trim gives the buffer back to the pool if nothing is held, as after a
// read that found nothing: an idle connection holds no buffer.
func (g *Gate) Trim() {
	if len(g.buf) == 0 && g.cutLen == 0 {
		g.putBuf()
	}
}

// compact drops the consumed part; the buffer goes back to the pool once
// nothing is held.
func (g *Gate) compact() {
	if g.rel == 0 {
		g.Trim()
		return
	}
	if g.rel == len(g.buf) {
		g.putBuf()
	} else {
		n := copy(g.buf, g.buf[g.rel:])
		g.buf = g.buf[:n]
	}
	g.scan -= g.rel
	g.rd, g.rel = 0, 0
}

// release hands buf[:end] to the reader.
func (g *Gate) release(end int) Kind {
	g.rd, g.rel, g.scan = 0, end, max(g.scan, end)
	return Release
}

// Next parses what has arrived and says what to do. With Ping and Pong the
// frame's payload is returned (a ping's is to be echoed); it is valid until
// the next call.
func (g *Gate) Next() (Kind, []byte, error) {
	if g.rd != g.rel {
		return Need, nil, ErrUnread
	}
	if g.cutLen > 0 {
		g.buf = append(g.buf[:g.cutAt], g.buf[g.cutAt+g.cutLen:]...)
		g.cutLen = 0
	}
	g.compact()
	for {
		if g.skipping {
			if g.skipLeft > 0 {
				k := int(min(g.skipLeft, uint64(len(g.buf))))
				g.drop(k)
				g.skipLeft -= uint64(k)
				if g.skipLeft > 0 {
					return Need, nil, nil
				}
			}
			if g.skipFin {
				g.skipping = false
			}
		}
		h := g.buf[g.scan:]
		if len(h) < 2 {
			return Need, nil, nil
		}
		hl := HeaderLen(h[1])
		if len(h) < hl {
			return Need, nil, nil
		}
		b0, op := h[0], h[0]&0x0f
		fin := b0&0x80 != 0
		n := PayloadLen(h)
		control := op >= 0x8
		if g.skipping && !control && op != opContinuation {
			// A new message while one was being skipped: the peer broke
			// the rules, which is not ours to report here.
			g.skipping, g.inMsg = false, false
		}
		valid := b0&0x70 == 0 && h[1]&0x80 != 0 && n>>63 == 0 // no RSV bits, masked, 63-bit length
		switch {
		case control:
			valid = valid && fin && n <= maxControlPayload && (op == opClose || op == opPing || op == opPong)
		case op == opText || op == opBinary:
			valid = valid && !g.inMsg
		case op == opContinuation:
			valid = valid && g.inMsg
		default:
			valid = false
		}
		if !valid {
			// gorilla reads up to this header and reports the error.
			return g.release(g.scan + hl), nil, nil
		}
		if g.skipping && op == opContinuation {
			g.skip(hl, n, fin) // the next frame of the skipped message
			continue
		}
		if g.textOnly && op == opBinary {
			g.skip(hl, n, fin)
			return Binary, nil, nil
		}
		if !control {
			// The limits apply from the header, before the payload
			// is buffered.
			frames, size := g.frames+1, g.size+int64(n)
			if op != opContinuation {
				frames, size = 1, int64(n)
			}
			if g.maxFrames > 0 && frames > g.maxFrames {
				return TooManyFrames, nil, nil
			}
			if g.maxBytes > 0 && size > g.maxBytes {
				g.skip(hl, n, fin)
				return TooBig, nil, nil
			}
		}
		total := hl + int(n)
		if len(h) < total {
			return Need, nil, nil
		}
		if control {
			if op == opClose {
				// gorilla answers it, after reading any fragments
				// before it, and reports the close.
				return g.release(g.scan + total), nil, nil
			}
			// A ping or pong, between messages or between the
			// fragments of one, is taken out of the stream here:
			// gorilla would read on after it.
			p := h[hl:total]
			unmask(p, h[hl-4:hl])
			g.cutAt, g.cutLen = g.scan, total
			if op == opPing {
				return Ping, p, nil
			}
			return Pong, p, nil
		}
		if op != opContinuation {
			g.inMsg, g.frames, g.size = true, 0, 0
		}
		g.frames++
		g.size += int64(n)
		g.scan += total
		if fin {
			g.inMsg = false
			return g.release(g.scan), nil, nil
		}
	}
}

// HeaderLen is the length of a frame header whose second byte is b1.
func HeaderLen(b1 byte) int {
	n := 2
	switch b1 & 0x7f {
	case 126:
		n += 2
	case 127:
		n += 8
	}
	if b1&0x80 != 0 {
		n += 4
	}
	return n
}

// PayloadLen reads the payload length of a whole frame header (HeaderLen
// bytes).
func PayloadLen(h []byte) uint64 {
	switch l := h[1] & 0x7f; l {
	case 126:
		return uint64(binary.BigEndian.Uint16(h[2:4]))
	case 127:
		return binary.BigEndian.Uint64(h[2:10])
	default:
		return uint64(l)
	}
}

func unmask(p, key []byte) {
	for i := range p {
		p[i] ^= key[i&3]
	}
}
