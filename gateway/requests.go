package gateway

import (
	"context"
	"math"
	"runtime/debug"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/attribute"
	"golang.org/x/time/rate"

	"github.com/chatgate/chatgate/gateway/protocol"
)

// The request handler. The reader hands it each inbound message: it calls
// beginRequest, then request (or abandonRequest if the message could not
// be read). The handler carries out one request at a time, on the reader's
// goroutine; it queues replies (send, reject) and asks for closes (close),
// and never touches the socket, so a reader or writer built otherwise can
// drive it unchanged.

// inbound is what kind of message the reader read.
type inbound uint8

const (
	inboundText     inbound = iota // a text message within --max-frame-bytes
	inboundBinary                  // a binary message (not read)
	inboundTooLarge                // a message over --max-frame-bytes (not kept)
)

// beginRequest reports whether a message that has begun to arrive is to be
// handled: false once the connection is closing (the message is then
// discarded unread). While a request is handled, a graceful close waits
// until it is done, so a send being handled is acked before the close frame.
func (c *client) beginRequest() bool { return c.out.beginHandling() }

// request handles one message and ends the request begun by beginRequest.
// data is only valid during the call.
func (c *client) request(kind inbound, data []byte) {
	switch kind {
	case inboundBinary:
		c.close(causeBinaryFrame)
	case inboundTooLarge:
		c.close(causeTooLarge)
	default:
		c.handleSafely(data)
	}
	if d := c.out.endHandling(); d != causeNone {
		c.close(d)
	}
}

// abandonRequest ends a request whose message could not be read: the read
// failure that follows decides how the connection ends, not a close asked
// for meanwhile.
func (c *client) abandonRequest() { c.out.endHandling() }

// handleSafely handles one frame; a panic (a bug) costs this connection
// alone: it is logged and the client is closed with 1011.
func (c *client) handleSafely(data []byte) {
	defer func() {
		if p := recover(); p != nil {
			c.logError("panic while handling a frame", "panic", p, "stack", string(debug.Stack()))
			c.close(causeInternal)
		}
	}()
	c.handle(data)
}

// handle processes one client frame.
func (c *client) handle(data []byte) {
	if !utf8.Valid(data) {
		c.close(causeInvalidUTF8)
		return
	}
	in, perr := protocol.Decode(data, c.srv.cfg.MaxTextBytes)
	if perr != nil {
		c.reject(perr)
		return
	}
	switch in.Type {
	case protocol.TypeJoin:
		c.join(in.Room, in.Since, in.Ref)
	case protocol.TypeLeave:
		m, ok := c.rooms.get(in.Room)
		if !ok {
			c.reject(protocol.NotJoinedError(in.Room, in.Ref))
			return
		}
		m.Leave()
		c.rooms.delete(in.Room)
		c.send(protocol.Left(in.Room))
	case protocol.TypeSend:
		c.publish(in.Room, in.Text, in.Ref)
	case protocol.TypeTyping:
		c.typing(in.Room, in.Ref)
	}
}

// publish sends text to room for a send request.
func (c *client) publish(room, text, ref string) {
	m, ok := c.rooms.get(room)
	if !ok {
		c.reject(protocol.NotJoinedError(room, ref))
		return
	}
	if ok, wait := c.allowSend(); !ok {
		c.reject(&protocol.Error{Code: protocol.CodeRateLimited, Message: "sending too fast; message dropped", Ref: ref, RetryAfterMs: wait})
		return
	}
	ctx, span := c.srv.tracer.Start(context.Background(), "chatgate.send", c.linkOptions()...)
	p, perr := m.Publish(ctx, text, ref)
	if span.IsRecording() {
		outcome := "published"
		if perr != nil {
			outcome = string(perr.Code)
		}
		span.SetAttributes(
			attribute.String("messaging.system", "chatgate"),
			attribute.String("messaging.operation.type", "send"),
			attribute.String("messaging.operation.name", "send"),
			attribute.String("chatgate.outcome", outcome),
		)
		if perr == nil {
			span.SetAttributes(
				attribute.String("chatgate.room_size", sizeBucket(p.Recipients)),
				attribute.Int("chatgate.recipients", p.Recipients),
			)
		}
	}
	span.End()
	if perr != nil {
		c.reject(perr)
		return
	}
	c.srv.obs.MessageAccepted()
}

func (c *client) join(room string, since *uint64, ref string) {
	if lim := c.joinLimiter(); !lim.Allow() {
		c.reject(&protocol.Error{Code: protocol.CodeRateLimited, Message: "joining too fast", Ref: ref, RetryAfterMs: retryAfterMs(lim)})
		return
	}
	if c.peer.ident != nil && !c.peer.ident.MayJoin(room) {
		c.reject(&protocol.Error{Code: protocol.CodeForbidden, Message: "your token does not allow room " + room, Ref: ref})
		return
	}
	if _, already := c.rooms.get(room); !already && len(c.rooms) >= c.srv.cfg.MaxRoomsPerConn {
		c.reject(&protocol.Error{Code: protocol.CodeRoomLimit, Message: "already in the most rooms a connection may join", Ref: ref})
		return
	}
	rejoined := c.srv.lingering.claim(c.user, room)
	m, perr := c.srv.broker.Join(c, room, since)
	rejoined()
	if perr != nil {
		if old, ok := c.rooms.get(room); ok && perr.Code == protocol.CodeForbidden {
			// Banned: a ban removed the membership the connection had
			// (it was told with left), so it no longer takes a slot.
			old.Leave()
			c.rooms.delete(room)
		}
		perr.Ref = ref
		c.reject(perr)
		return
	}
	c.rooms.set(room, m)
}

// reject sends an error envelope and counts a strike for the errors a
// well-behaved client does not cause; too many strikes close with 1008.
func (c *client) reject(e *protocol.Error) {
	c.srv.obs.RequestRejected(string(e.Code))
	c.send(protocol.ErrorEnvelope(e))
	switch e.Code {
	case protocol.CodeUnavailable, protocol.CodeInternal, protocol.CodeRoomLimit:
		return // not (necessarily) the client's fault
	}
	if c.strikeLimiter().Allow() {
		return
	}
	cause := causeProtocolAbuse
	if e.Code == protocol.CodeRateLimited {
		cause = causeRateAbuse
	}
	c.close(cause)
}

// allowSend takes a token from the connection's send budget and one from
// the budget it shares with its user's (or address's) other connections,
// or neither: a send refused by one budget costs the other nothing. When
// refused it says how long until both have a token.
func (c *client) allowSend() (ok bool, retryMs int64) {
	now := time.Now()
	own := c.sendLimiter().ReserveN(now, 1)
	shared := c.sharedLim.ReserveN(now, 1)
	if own.OK() && shared.OK() && own.DelayFrom(now) == 0 && shared.DelayFrom(now) == 0 {
		return true, 0
	}
	own.CancelAt(now)
	shared.CancelAt(now)
	return false, max(retryAfterMs(c.sendLim), retryAfterMs(c.sharedLim))
}

// retryAfterMs is how long until lim allows one more event.
func retryAfterMs(lim *rate.Limiter) int64 {
	deficit := 1 - lim.Tokens()
	if deficit <= 0 {
		return 1
	}
	return int64(math.Ceil(deficit / float64(lim.Limit()) * 1000))
}

// sizeBucket names a room size for traces without a per-size series.
func sizeBucket(n int) string {
	switch {
	case n <= 1:
		return "1"
	case n <= 10:
		return "2-10"
	case n <= 100:
		return "11-100"
	case n <= 1000:
		return "101-1000"
	default:
		return ">1000"
	}
}
