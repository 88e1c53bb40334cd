package gateway

import (
	"errors"
	"net"
	"time"

	"github.com/gorilla/websocket"

	"github.com/chatgate/chatgate/gateway/broker"
	"github.com/chatgate/chatgate/gateway/protocol"
)

const (
	// maxMessageBytes caps one coalesced outbound WebSocket message, so a
	// long backlog goes out as several messages with pings between them.
	maxMessageBytes = 64 << 10
	// closeGrace is how long the writer waits, after its close frame, for
	// the peer's close before it drops the TCP connection.
	closeGrace = time.Second
)

// writeLoop is the connection's only writer: it drains the outbox without
// blocking, writes the batch as few coalesced messages, then blocks until
// poked or a ping is due. Every write carries a deadline. It touches the
// queue only through the outbox (take, settle, recycle, release).
func (c *client) writeLoop() {
	defer close(c.writerDone)
	defer c.out.release()
	ping := time.NewTicker(c.srv.cfg.PingInterval)
	defer ping.Stop()
	for {
		select {
		case <-c.out.wake:
		case <-ping.C:
			if err := c.writePing(); err != nil {
				c.writeFailed(err)
				return
			}
			continue
		}
		closing, err := c.flushQueue(ping)
		if err != nil {
			c.writeFailed(err)
			return
		}
		if closing {
			c.finishClose()
			return
		}
	}
}

// flushQueue writes everything queued, batch after batch, until the outbox
// is empty. It reports whether the client is closing.
func (c *client) flushQueue(ping *time.Ticker) (closing bool, err error) {
	for {
		batch, closing, flush := c.out.take()
		if len(batch) == 0 {
			c.out.recycle(batch)
			return closing, nil
		}
		if closing && !flush {
			c.out.settle(batch)
			return true, nil
		}
		for start := 0; start < len(batch); {
			end, size := start, 0
			for end < len(batch) && (end == start || size+len(batch[end].Data)+1 <= maxMessageBytes) {
				size += len(batch[end].Data) + 1
				end++
			}
			if err := c.writeMessage(batch[start:end]); err != nil {
				c.out.settle(batch[start:])
				return true, err
			}
			if aborted := c.out.settle(batch[start:end]); aborted {
				c.out.settle(batch[end:])
				return true, nil
			}
			start = end
			select { // control frames never wait behind a long backlog
			case <-ping.C:
				if err := c.writePing(); err != nil {
					c.out.settle(batch[end:])
					return true, err
				}
			default:
			}
		}
		c.out.recycle(batch)
	}
}

// writeMessage writes frames as one text message, '\n'-separated.
func (c *client) writeMessage(frames []*broker.Frame) error {
	start := time.Now()
	if err := c.conn.SetWriteDeadline(start.Add(c.srv.cfg.WriteTimeout)); err != nil {
		return err
	}
	w, err := c.conn.NextWriter(websocket.TextMessage)
	if err != nil {
		return err
	}
	size := 0
	for i, f := range frames {
		if i > 0 {
			if _, err := w.Write(newline); err != nil {
				return err
			}
			size++
		}
		if _, err := w.Write(f.Data); err != nil {
			return err
		}
		size += len(f.Data)
	}
	if err := w.Close(); err != nil {
		return err
	}
	now := time.Now()
	obs := c.srv.obs
	obs.FrameWritten(size, 1, now.Sub(start))
	for _, f := range frames {
		if !f.Accepted.IsZero() {
			obs.Delivered(now.Sub(f.Accepted), f.TraceID)
		}
	}
	return nil
}

var newline = []byte{'\n'}

func (c *client) writePing() error {
	return c.conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(c.srv.cfg.WriteTimeout))
}

// writeFailed closes for a failed write (a timeout or another error) and
// drops the socket.
func (c *client) writeFailed(err error) {
	c.close(writeFailure(err))
	c.debug("write failed", "err", err)
	_ = c.conn.NetConn().Close()
}

// writeFailure is the close cause of a failed write.
func writeFailure(err error) closeCause {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return causeWriteTimeout
	}
	return causeWriteError
}

// finishClose sends the close frame, if any, gives the peer a moment to
// answer, then drops the TCP connection.
func (c *client) finishClose() {
	if code, why := c.out.closeFrame(); code != 0 {
		// A close frame waits behind whatever the socket still holds; a
		// peer that cannot take it within the write timeout is dropped.
		deadline := time.Now().Add(c.srv.cfg.WriteTimeout)
		if err := c.conn.WriteControl(websocket.CloseMessage, protocol.ClosePayload(code, why), deadline); err == nil {
			t := time.NewTimer(closeGrace)
			select {
			case <-c.readerDone:
			case <-t.C:
			}
			t.Stop()
		}
	}
	_ = c.conn.NetConn().Close()
}
