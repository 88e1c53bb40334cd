package gateway

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

var readBufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// readLoop is the connection's only reader: it keeps the read deadline
// (heartbeats), reads each message up to --max-frame-bytes and hands it to
// the request handler (beginRequest, request). It returns when the socket
// fails or closes; messages that arrive once closing has begun are
// discarded unread.
func (c *client) readLoop() {
	defer close(c.readerDone)
	pongTimeout := c.srv.cfg.PongTimeout
	extend := func() { _ = c.conn.SetReadDeadline(time.Now().Add(pongTimeout)) }
	extend()
	c.conn.SetPongHandler(func(string) error { extend(); return nil })
	c.conn.SetPingHandler(func(data string) error {
		extend() // a client's own ping shows it is alive too
		err := c.conn.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(c.srv.cfg.WriteTimeout))
		var ne net.Error
		if err == nil || errors.Is(err, websocket.ErrCloseSent) || errors.As(err, &ne) && ne.Timeout() {
			return nil // a pong that cannot go out now is not a read failure
		}
		return err
	})
	maxFrame := int64(c.srv.cfg.MaxFrameBytes)
	for {
		mt, r, err := c.conn.NextReader()
		if err != nil {
			c.readFailed(err)
			return
		}
		extend()
		if !c.beginRequest() {
			continue // closing: NextReader discards the unread message
		}
		if mt == websocket.BinaryMessage {
			c.request(inboundBinary, nil)
			continue
		}
		buf := readBufs.Get().(*bytes.Buffer)
		buf.Reset()
		_, err = buf.ReadFrom(io.LimitReader(r, maxFrame+1))
		switch {
		case err != nil:
			readBufs.Put(buf)
			c.abandonRequest()
			c.readFailed(err)
			return
		case int64(buf.Len()) > maxFrame:
			c.request(inboundTooLarge, nil)
		default:
			c.srv.obs.FrameReceived(buf.Len())
			c.request(inboundText, buf.Bytes())
		}
		if buf.Cap() <= 64<<10 {
			readBufs.Put(buf)
		}
	}
}

// readFailed closes for a failed read: the peer's close frame, a heartbeat
// timeout, a message in too many fragments, or another error.
func (c *client) readFailed(err error) {
	cause := causeReadError
	var ce *websocket.CloseError
	var ne net.Error
	switch {
	case errors.Is(err, errTooManyFrames):
		// Only reading has failed: what is queued goes out first, as for
		// a message over --max-frame-bytes.
		cause = causeTooManyFrames
	case errors.As(err, &ce) && ce.Code != websocket.CloseAbnormalClosure:
		// The peer sent a close frame; the library has answered it.
		cause = causeClientClose
	case errors.As(err, &ne) && ne.Timeout():
		cause = causeHeartbeat
	}
	c.close(cause)
	c.debug("read ended", "err", err)
}
