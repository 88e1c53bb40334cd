package gateway

import (
	"bufio"
	"errors"
	"net"
	"net/http"

	"github.com/chatgate/chatgate/gateway/internal/wsgate"
)

// errTooManyFrames is the read error of a connection whose client sent more
// than --max-message-frames frames in one message.
var errTooManyFrames = errors.New("gateway: too many frames in one message")

// frameLimitConn bounds the number of frames in each inbound WebSocket
// message. The frame size limit (--max-frame-bytes) counts payload only,
// and gorilla/websocket assembles a fragmented message inside its reader,
// so without this one unfinished message could carry any number of empty
// continuation frames, each costing a header parse and a read.
//
// It watches the bytes the WebSocket reader reads, parsing only frame
// headers (2 to 14 bytes) and skipping payloads by length: a few integer
// operations per frame, nothing per payload byte, no allocation. When a
// frame would exceed the limit, the bytes before that frame's header are
// still returned (so earlier messages are handled), and every later read
// fails with errTooManyFrames. Control frames (ping, pong, close), which may
// come between the fragments of a message, are not counted. Frames are
// otherwise not validated here: gorilla/websocket does that.
type frameLimitConn struct {
	net.Conn
	max int // static: most frames per message

	// owned by the connection's one reader
	hdr         [14]byte
	hdrLen      int    // bytes of hdr collected
	payloadLeft uint64 // payload bytes of the current frame still to skip
	frames      int    // frames of the message in progress, 0 between messages
	err         error  // sticky once the limit is exceeded
}

func (c *frameLimitConn) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.Conn.Read(p)
	if cut, ok := c.scan(p[:n]); !ok {
		c.err = errTooManyFrames
		if cut == 0 {
			return 0, c.err
		}
		return cut, nil
	}
	return n, err
}

// scan advances the parser over b. If a frame in b exceeds the limit it
// returns ok false and how many bytes of b come before that frame's header
// (0 if the header began in an earlier read).
func (c *frameLimitConn) scan(b []byte) (cut int, ok bool) {
	i := 0
	for i < len(b) {
		if c.payloadLeft > 0 {
			skip := uint64(len(b) - i)
			if skip > c.payloadLeft {
				skip = c.payloadLeft
			}
			c.payloadLeft -= skip
			i += int(skip)
			continue
		}
		// Collect the header: 2 bytes, then the extended length and the
		// mask key the second byte announces.
		start := i - c.hdrLen // where this header began, if in b
		c.hdr[c.hdrLen] = b[i]
		c.hdrLen++
		i++
		if c.hdrLen < 2 || c.hdrLen < wsgate.HeaderLen(c.hdr[1]) {
			continue
		}
		c.hdrLen = 0
		c.payloadLeft = wsgate.PayloadLen(c.hdr[:])
		if opcode := c.hdr[0] & 0x0f; opcode < 8 { // a data frame
			if opcode != 0 { // text or binary: a new message
				c.frames = 0
			}
			c.frames++
			if c.frames > c.max {
				return max(start, 0), false
			}
			if c.hdr[0]&0x80 != 0 { // FIN: the message is complete
				c.frames = 0
			}
		}
	}
	return 0, true
}

// frameLimitWriter hands gorilla/websocket's upgrader a connection wrapped
// in frameLimitConn when it hijacks the HTTP connection.
type frameLimitWriter struct {
	http.ResponseWriter
	max int
}

func (w frameLimitWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	return &frameLimitConn{Conn: conn, max: w.max}, brw, nil
}
