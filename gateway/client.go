package gateway

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"math"
	"net"
	"runtime/debug"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/time/rate"

	"github.com/chatgate/chatgate/gateway/auth"
	"github.com/chatgate/chatgate/gateway/broker"
	"github.com/chatgate/chatgate/gateway/observe"
	"github.com/chatgate/chatgate/gateway/protocol"
)

const (
	// maxMessageBytes caps one coalesced outbound WebSocket message, so a
	// long backlog goes out as several messages with pings between them.
	maxMessageBytes = 64 << 10
	// closeGrace is how long the writer waits, after its close frame, for
	// the peer's close before it drops the TCP connection.
	closeGrace = time.Second
	// maxSpareQueue is the largest queue backing array kept for reuse, so an
	// idle connection does not pin a big slice.
	maxSpareQueue = 256
)

// client is one WebSocket connection. It has exactly one reader (the HTTP
// handler goroutine, readLoop) and one writer (writeLoop); the handler
// returns only when both are done.
type client struct {
	// static after construction
	srv  *Server
	conn *websocket.Conn
	id   string
	user protocol.User
	ip   string // the client address, for logs
	// ipKey is what the per-IP limits count: ip, or its IPv6 prefix.
	ipKey string
	log   *slog.Logger

	// spanOpts start a message's span: a link to the handshake's.
	spanOpts []trace.SpanStartOption
	// ident is the verified token's identity; nil for anonymous users.
	ident *auth.Identity

	// budgetKey names the send budget this connection shares with its
	// user's (or address's) other connections; sharedLim is that budget
	// (safe for concurrent use). Set before the loops start.
	budgetKey string
	sharedLim *rate.Limiter

	// owned by the read loop
	rooms   map[string]broker.Membership
	sendLim *rate.Limiter
	joinLim *rate.Limiter
	strikes *rate.Limiter // rate-limit and protocol violations

	// channels: wake is poked by producers (never closed); readerDone is
	// closed by readLoop, writerDone by writeLoop.
	wake       chan struct{}
	readerDone chan struct{}
	writerDone chan struct{}

	mu sync.Mutex
	// queue holds frames not yet taken by the writer; spare is the writer's
	// previous batch, kept for reuse.
	queue []*broker.Frame
	spare []*broker.Frame
	// queued counts the bytes of the live frames (everything but history
	// replays) in queue or taken by the writer and not yet settled: what
	// --queue-bytes caps. replayBytes and replayFrames count the replayed
	// history frames likewise. The gateway chose to send a replay at once,
	// so its bytes do not count against --queue-bytes; only how many
	// replay frames may wait is capped (maxReplayFrames). Both byte counts
	// are part of the gateway-wide total (Server.queued).
	queued       int
	replayBytes  int
	replayFrames int
	// Once closing is set no frame is queued again. flush says whether the
	// writer writes what is queued before the close frame; closeCode 0
	// means no close frame (the peer is gone or the socket is stuck).
	closing   bool
	flush     bool
	closeCode int
	closeWhy  protocol.CloseReason
	reason    observe.DisconnectReason
	// handling is set while the reader carries out a client frame; a
	// graceful close requested meanwhile waits in deferred until it is
	// done, so a send being handled is acked before the close frame.
	handling bool
	deferred *closeRequest
}

type closeRequest struct {
	code   int
	why    protocol.CloseReason
	reason observe.DisconnectReason
}

func newClient(s *Server, conn *websocket.Conn, id string, user protocol.User, ip, ipKey string, handshake trace.SpanContext) *client {
	cfg := &s.cfg
	return &client{
		spanOpts: []trace.SpanStartOption{
			trace.WithSpanKind(trace.SpanKindServer),
			trace.WithLinks(trace.Link{SpanContext: handshake}),
		},
		srv:        s,
		conn:       conn,
		id:         id,
		user:       user,
		ip:         ip,
		ipKey:      ipKey,
		log:        s.log.With("conn", id),
		rooms:      make(map[string]broker.Membership),
		sendLim:    rate.NewLimiter(rate.Limit(cfg.SendRate), cfg.SendBurst),
		joinLim:    rate.NewLimiter(rate.Limit(cfg.JoinRate), cfg.JoinBurst),
		strikes:    rate.NewLimiter(rate.Every(cfg.AbuseWindow/time.Duration(cfg.AbuseStrikes)), cfg.AbuseStrikes),
		wake:       make(chan struct{}, 1),
		readerDone: make(chan struct{}),
		writerDone: make(chan struct{}),
	}
}

// User implements broker.Subscriber.
func (c *client) User() protocol.User { return c.user }

// Enqueue implements broker.Subscriber. It never blocks: over the per-client
// cap the client is evicted with 4008 (and over the gateway-wide cap a
// backed-up client is shed with 1013); the eviction itself happens on the
// writer, off the broadcast path.
//
// A history replay (f.Replay) is written at the pace the client reads it,
// like everything else, but does not count against --queue-bytes: the
// gateway queued it all at once, and any history a room holds must reach a
// client that reads at a normal pace, however its texts encode. Only the
// number of replay frames waiting is capped, at a full replay of every room
// the connection may be in: a client that keeps re-joining with since
// without reading what it asked for is a slow consumer.
func (c *client) Enqueue(f *broker.Frame) {
	n := len(f.Data) + 1 // the '\n' separator
	cfg := &c.srv.cfg
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return
	}
	if f.Replay {
		c.replayBytes += n
		c.replayFrames++
	} else {
		c.queued += n
	}
	total := c.srv.queued.Add(int64(n))
	c.queue = append(c.queue, f)
	queued := c.queued // before an eviction drops the queue
	var evicted observe.DisconnectReason
	switch {
	case c.queued > cfg.QueueBytes || c.replayFrames > c.maxReplayFrames():
		evicted = observe.DisconnectSlowConsumer
		c.beginCloseLocked(protocol.CloseSlowConsumer, protocol.CloseReason{R: "slow_consumer", RetryMs: c.srv.retryMs()}, evicted, false)
	case total > cfg.TotalQueueBytes && c.queued+c.replayBytes > cfg.QueueBytes/16:
		evicted = observe.DisconnectOverloaded
		c.beginCloseLocked(protocol.CloseTryAgainLater, protocol.CloseReason{R: "overloaded", RetryMs: c.srv.retryMs()}, evicted, false)
	}
	c.mu.Unlock()
	c.srv.obs.QueueSampled(queued)
	c.poke()
	if evicted != "" {
		c.traceEviction(evicted, queued)
	}
}

func (c *client) poke() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// send queues a frame for this client alone.
func (c *client) send(data []byte) { c.Enqueue(&broker.Frame{Data: data}) }

// beginCloseLocked starts closing with the first reason given; later calls
// change nothing. It reports whether this call started the close. Without
// flush the queue is dropped at once. c.mu must be held.
func (c *client) beginCloseLocked(code int, why protocol.CloseReason, reason observe.DisconnectReason, flush bool) bool {
	if c.closing {
		return false
	}
	c.closing, c.flush, c.closeCode, c.closeWhy, c.reason = true, flush, code, why, reason
	if !flush {
		c.dropQueueLocked()
	}
	c.srv.obs.Disconnecting(reason)
	return true
}

// abortLocked ends the connection without writing anything more: it begins
// a close without flush with this reason and code, or, when a close is
// already under way, stops its flush. Either way whatever is still queued
// can no longer be written, so it leaves the gateway-wide total here. Every
// failure path (a failed read or write, a forced close) ends this way: a
// flushing close must not keep its queue counted once the socket is gone.
// c.mu must be held.
func (c *client) abortLocked(code int, why protocol.CloseReason, reason observe.DisconnectReason) (started bool) {
	if c.beginCloseLocked(code, why, reason, false) {
		return true
	}
	if c.flush {
		c.flush = false
		c.dropQueueLocked()
	}
	return false
}

// releaseQueue runs when the writer has returned: nothing it took is in
// flight any more (it settles every batch before returning) and nothing
// queued will ever be written, so the connection's bytes leave the
// gateway-wide total whatever ended it.
func (c *client) releaseQueue() {
	c.mu.Lock()
	c.closing, c.flush = true, false
	c.srv.queued.Add(-int64(c.queued + c.replayBytes))
	c.queued, c.replayBytes, c.replayFrames = 0, 0, 0
	clear(c.queue)
	c.queue = c.queue[:0]
	c.mu.Unlock()
}

// dropQueueLocked discards what the writer has not taken yet; what it has
// taken is settled by the writer. c.mu must be held.
func (c *client) dropQueueLocked() {
	live, replay, replayN := frameCost(c.queue)
	c.queued -= live
	c.replayBytes -= replay
	c.replayFrames -= replayN
	c.srv.queued.Add(-int64(live + replay))
	clear(c.queue)
	c.queue = c.queue[:0]
}

// frameCost is what frames count for in the queue accounting: the bytes of
// live frames, the bytes of replayed ones, and how many are replayed.
func frameCost(frames []*broker.Frame) (live, replay, replayN int) {
	for _, f := range frames {
		if f.Replay {
			replay += len(f.Data) + 1
			replayN++
		} else {
			live += len(f.Data) + 1
		}
	}
	return live, replay, replayN
}

// maxReplayFrames is how many replayed frames may wait: a full history of
// every room the connection may be in.
func (c *client) maxReplayFrames() int {
	return c.srv.cfg.MaxRoomsPerConn * c.srv.cfg.History
}

// traceEviction records an eviction as a span of its own, linked to the
// connection's handshake.
func (c *client) traceEviction(reason observe.DisconnectReason, queued int) {
	_, span := c.srv.tracer.Start(context.Background(), "chatgate.evict", c.spanOpts...)
	if span.IsRecording() {
		span.SetAttributes(
			attribute.String("chatgate.disconnect.reason", string(reason)),
			attribute.Int("chatgate.queue_bytes", queued),
		)
	}
	span.End()
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

// closeWith asks the writer to close the connection. With flush, what is
// already queued is written before the close frame.
func (c *client) closeWith(code int, why protocol.CloseReason, reason observe.DisconnectReason, flush bool) {
	c.mu.Lock()
	if flush && c.handling && !c.closing {
		if c.deferred == nil {
			c.deferred = &closeRequest{code: code, why: why, reason: reason}
		}
		c.mu.Unlock()
		return
	}
	started := c.beginCloseLocked(code, why, reason, flush)
	c.mu.Unlock()
	if started {
		c.log.Debug("closing connection", "reason", reason, "code", code)
		c.poke()
	}
}

// beginHandling marks the reader busy with a frame; it reports false, and
// the frame is to be discarded, once the client is closing.
func (c *client) beginHandling() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return false
	}
	c.handling = true
	return true
}

// endHandling clears the busy mark and carries out a graceful close that
// was requested meanwhile.
func (c *client) endHandling() {
	c.mu.Lock()
	c.handling = false
	d := c.deferred
	c.deferred = nil
	c.mu.Unlock()
	if d != nil {
		c.closeWith(d.code, d.why, d.reason, true)
	}
}

// ---- write loop ----

// writeLoop is the connection's only writer: it drains the queue without
// blocking, writes the batch as few coalesced messages, then blocks until
// poked or a ping is due. Every write carries a deadline.
func (c *client) writeLoop() {
	defer close(c.writerDone)
	defer c.releaseQueue()
	ping := time.NewTicker(c.srv.cfg.PingInterval)
	defer ping.Stop()
	for {
		select {
		case <-c.wake:
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

// flushQueue writes everything queued, batch after batch, until the queue is
// empty. It reports whether the client is closing.
func (c *client) flushQueue(ping *time.Ticker) (closing bool, err error) {
	for {
		c.mu.Lock()
		batch := c.queue
		c.queue, c.spare = c.spare[:0], nil
		closing, flush := c.closing, c.flush
		c.mu.Unlock()
		if len(batch) == 0 {
			c.recycle(batch)
			return closing, nil
		}
		if closing && !flush {
			c.settle(batch)
			return true, nil
		}
		for start := 0; start < len(batch); {
			end, size := start, 0
			for end < len(batch) && (end == start || size+len(batch[end].Data)+1 <= maxMessageBytes) {
				size += len(batch[end].Data) + 1
				end++
			}
			if err := c.writeMessage(batch[start:end]); err != nil {
				c.settle(batch[start:])
				return true, err
			}
			if aborted := c.settle(batch[start:end]); aborted {
				c.settle(batch[end:])
				return true, nil
			}
			start = end
			select { // control frames never wait behind a long backlog
			case <-ping.C:
				if err := c.writePing(); err != nil {
					c.settle(batch[end:])
					return true, err
				}
			default:
			}
		}
		c.recycle(batch)
	}
}

// settle accounts frames the writer took as gone (written or dropped). It
// reports whether the client has been aborted meanwhile (closing without
// flush), in which case the rest of the batch must be dropped too.
func (c *client) settle(frames []*broker.Frame) (aborted bool) {
	live, replay, replayN := frameCost(frames)
	c.mu.Lock()
	c.queued -= live
	c.replayBytes -= replay
	c.replayFrames -= replayN
	aborted = c.closing && !c.flush
	c.mu.Unlock()
	c.srv.queued.Add(-int64(live + replay))
	return aborted
}

// recycle keeps a drained batch's backing array as the next spare.
func (c *client) recycle(batch []*broker.Frame) {
	if cap(batch) > maxSpareQueue {
		return
	}
	clear(batch)
	c.mu.Lock()
	c.spare = batch[:0]
	c.mu.Unlock()
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
	obs.FrameWritten(size, len(frames), now.Sub(start))
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

// writeFailed records why a write failed and drops the socket.
func (c *client) writeFailed(err error) {
	reason := observe.DisconnectWriteError
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		reason = observe.DisconnectWriteTimeout
	}
	c.mu.Lock()
	c.abortLocked(0, protocol.CloseReason{}, reason)
	c.mu.Unlock()
	c.log.Debug("write failed", "err", err)
	_ = c.conn.NetConn().Close()
}

// finishClose sends the close frame, if any, gives the peer a moment to
// answer, then drops the TCP connection.
func (c *client) finishClose() {
	c.mu.Lock()
	code, why := c.closeCode, c.closeWhy
	c.mu.Unlock()
	if code != 0 {
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

// ---- read loop ----

var readBufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// readLoop is the connection's only reader. It returns when the socket
// fails or closes; frames that arrive once closing has begun are discarded.
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
		if !c.beginHandling() {
			continue // closing: NextReader discards the unread message
		}
		if mt == websocket.BinaryMessage {
			c.closeWith(protocol.CloseUnsupportedData, protocol.CloseReason{R: "binary_frame"}, observe.DisconnectBinaryFrame, true)
			c.endHandling()
			continue
		}
		buf := readBufs.Get().(*bytes.Buffer)
		buf.Reset()
		_, err = buf.ReadFrom(io.LimitReader(r, maxFrame+1))
		switch {
		case err != nil:
			readBufs.Put(buf)
			c.readFailed(err)
			return
		case int64(buf.Len()) > maxFrame:
			c.closeWith(protocol.CloseMessageTooBig, protocol.CloseReason{R: "too_large"}, observe.DisconnectTooLarge, true)
		default:
			c.srv.obs.FrameReceived(buf.Len())
			c.handleSafely(buf.Bytes())
		}
		if buf.Cap() <= 64<<10 {
			readBufs.Put(buf)
		}
		c.endHandling()
	}
}

func (c *client) readFailed(err error) {
	if errors.Is(err, errTooManyFrames) {
		// Only reading has failed: what is queued goes out first, as for a
		// message over --max-frame-bytes. (No frame is being handled, so
		// there is no reply to wait for.)
		c.mu.Lock()
		started := c.beginCloseLocked(protocol.CloseMessageTooBig, protocol.CloseReason{R: "too_many_frames"}, observe.DisconnectTooManyFrames, true)
		c.mu.Unlock()
		if started {
			c.log.Debug("closing connection", "reason", observe.DisconnectTooManyFrames, "code", protocol.CloseMessageTooBig)
		}
		c.poke()
		return
	}
	code, why, reason := 0, protocol.CloseReason{}, observe.DisconnectReadError
	var ce *websocket.CloseError
	var ne net.Error
	switch {
	case errors.As(err, &ce) && ce.Code != websocket.CloseAbnormalClosure:
		// The peer sent a close frame; the library has answered it.
		reason = observe.DisconnectClientClose
	case errors.As(err, &ne) && ne.Timeout():
		code, why, reason = protocol.CloseHeartbeatTimeout, protocol.CloseReason{R: "heartbeat_timeout"}, observe.DisconnectPingTimeout
	}
	c.mu.Lock()
	started := c.abortLocked(code, why, reason)
	c.mu.Unlock()
	if started {
		c.log.Debug("read ended", "reason", reason, "err", err)
	}
	c.poke()
}

// handleSafely handles one frame; a panic (a bug) costs this connection
// alone: it is logged and the client is closed with 1011.
func (c *client) handleSafely(data []byte) {
	defer func() {
		if p := recover(); p != nil {
			c.log.Error("panic while handling a frame", "panic", p, "stack", string(debug.Stack()))
			c.closeWith(protocol.CloseInternalError, protocol.CloseReason{R: "internal"}, observe.DisconnectInternal, true)
		}
	}()
	c.handle(data)
}

// handle processes one client frame.
func (c *client) handle(data []byte) {
	if !utf8.Valid(data) {
		c.closeWith(protocol.CloseInvalidPayload, protocol.CloseReason{R: "invalid_utf8"}, observe.DisconnectInvalidUTF8, true)
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
		m, ok := c.rooms[in.Room]
		if !ok {
			c.reject(protocol.NotJoinedError(in.Room, in.Ref))
			return
		}
		m.Leave()
		delete(c.rooms, in.Room)
		c.send(protocol.Left(in.Room))
	case protocol.TypeSend:
		m, ok := c.rooms[in.Room]
		if !ok {
			c.reject(protocol.NotJoinedError(in.Room, in.Ref))
			return
		}
		if ok, wait := c.allowSend(); !ok {
			c.reject(&protocol.Error{Code: protocol.CodeRateLimited, Message: "sending too fast; message dropped", Ref: in.Ref, RetryAfterMs: wait})
			return
		}
		ctx, span := c.srv.tracer.Start(context.Background(), "chatgate.send", c.spanOpts...)
		p, perr := m.Publish(ctx, in.Text, in.Ref)
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
}

func (c *client) join(room string, since *uint64, ref string) {
	if !c.joinLim.Allow() {
		c.reject(&protocol.Error{Code: protocol.CodeRateLimited, Message: "joining too fast", Ref: ref, RetryAfterMs: retryAfterMs(c.joinLim)})
		return
	}
	if c.ident != nil && !c.ident.MayJoin(room) {
		c.reject(&protocol.Error{Code: protocol.CodeForbidden, Message: "your token does not allow room " + room, Ref: ref})
		return
	}
	if _, already := c.rooms[room]; !already && len(c.rooms) >= c.srv.cfg.MaxRoomsPerConn {
		c.reject(&protocol.Error{Code: protocol.CodeRoomLimit, Message: "already in the most rooms a connection may join", Ref: ref})
		return
	}
	m, perr := c.srv.broker.Join(c, room, since)
	if perr != nil {
		perr.Ref = ref
		c.reject(perr)
		return
	}
	c.rooms[room] = m
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
	if c.strikes.Allow() {
		return
	}
	reason, r := observe.DisconnectProtocolError, "protocol_errors"
	if e.Code == protocol.CodeRateLimited {
		reason, r = observe.DisconnectRateAbuse, "rate_abuse"
	}
	c.closeWith(protocol.ClosePolicyViolation, protocol.CloseReason{R: r}, reason, true)
}

// allowSend takes a token from the connection's send budget and one from
// the budget it shares with its user's (or address's) other connections,
// or neither: a send refused by one budget costs the other nothing. When
// refused it says how long until both have a token.
func (c *client) allowSend() (ok bool, retryMs int64) {
	now := time.Now()
	own := c.sendLim.ReserveN(now, 1)
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

// userKey is what the per-user connection limit counts.
func (c *client) userKey() string {
	if c.ident == nil {
		return ""
	}
	return c.ident.UserID
}

// leaveAll removes the client from every room. Called by the handler once
// the reader is done.
func (c *client) leaveAll() {
	for name, m := range c.rooms {
		m.Leave()
		delete(c.rooms, name)
	}
}
