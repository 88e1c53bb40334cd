package gateway

import (
	"context"
	"io"
	"log/slog"
	"time"

	"github.com/gorilla/websocket"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/time/rate"

	"github.com/chatgate/chatgate/gateway/broker"
	"github.com/chatgate/chatgate/gateway/protocol"
)

// client is one WebSocket connection, made of parts that each own their
// state:
//
//   - the reader (reader.go) is the connection's only reader: it runs on the
//     connection's goroutine (run) and hands each inbound message to the
//     request handler;
//   - the request handler (requests.go) carries out one request at a time on
//     the reader's goroutine: it owns the room memberships and the rate
//     limiters, and it only queues frames (send) and asks for closes
//     (close), never touching the socket;
//   - the outbox (outbox.go) owns the outbound queue, its accounting against
//     the per-connection and gateway-wide caps, and the closing state;
//   - the writer (writer.go) is the connection's only writer: its goroutine
//     takes batches from the outbox and writes them, and sends the close
//     frame.
//
// run returns only when both the reader and the writer are done.
type client struct {
	// static after construction
	srv  *Server
	conn *websocket.Conn
	id   string
	user protocol.User
	peer admitted // the client's address, its limit keys and its identity
	// handshake is the handshake's span, which a message's span links to;
	// nil when it was not traced.
	handshake *trace.SpanContext
	out       outbox

	// budgetKey names the send budget this connection shares with its
	// user's (or address's) other connections; sharedLim is that budget
	// (safe for concurrent use). Set before run.
	budgetKey string
	sharedLim *rate.Limiter

	// owned by the request handler (the reader's goroutine). The limiters
	// are made on first use (sendLimiter...): an idle connection does not
	// pay for them. sendLim is set at the handshake when a token overrides
	// the send limits.
	rooms   roomSet
	sendLim *rate.Limiter
	joinLim *rate.Limiter
	strikes *rate.Limiter // rate-limit and protocol violations

	typingLim typingLimiter // typing.go; owned by the request handler too

	// readerDone and writerDone announce the ends of the goroutine reader
	// and writer (readLoop, writeLoop); nil under the event loop.
	readerDone chan struct{}
	writerDone chan struct{}
}

// newClient makes the client of conn; ev is its event-loop I/O, or nil for
// the goroutine reader and writer.
func newClient(s *Server, conn *websocket.Conn, ev *evConn, id string, user protocol.User, peer admitted, handshake trace.SpanContext) *client {
	var notify func()
	if ev != nil {
		notify = ev.scheduleFlush
	}
	c := &client{
		srv:  s,
		conn: conn,
		id:   id,
		user: user,
		peer: peer,
	}
	if handshake.IsValid() {
		c.handshake = &handshake
	}
	c.out.init(&s.outboxes, notify)
	if ev == nil {
		c.readerDone, c.writerDone = make(chan struct{}), make(chan struct{})
	}
	return c
}

// run serves the connection with the goroutine reader and writer until
// both are done: it opens the connection, starts the writer, reads on this
// goroutine, then leaves every room and frees what the connection held.
func (c *client) run(autoJoin []string) {
	c.open(autoJoin)
	if ident := c.peer.ident; ident != nil && !ident.Expires.IsZero() {
		// A token that expires while connected ends the connection then;
		// the client reconnects with a fresh one.
		expiry := time.AfterFunc(time.Until(ident.Expires), func() { c.close(causeTokenExpired) })
		defer expiry.Stop()
	}
	go c.writeLoop()
	c.readLoop()
	c.leaveRooms()
	<-c.writerDone
	c.finish(c.conn.NetConn())
}

// finish frees what the connection held once both its sides are done and
// its rooms are left, with either I/O path: the admission slot and send
// budget, the socket, the registration.
func (c *client) finish(sock io.Closer) {
	s := c.srv
	// Free the admission slot before anyone can see the connection gone,
	// so an immediate reconnect is never refused for it.
	s.adm.release(c.peer.ipKey, c.peer.userKey())
	s.budgets.release(c.budgetKey)
	_ = sock.Close()
	s.unregister(c)
	s.obs.ConnClosed()
	c.debug("disconnected", "reason", c.out.closeCause().reason())
}

// open registers the connection with the Server, says welcome and makes
// the joins the URL asked for. The request handler runs it before any
// message is read.
func (c *client) open(autoJoin []string) {
	s := c.srv
	lateToDrain := !s.register(c)
	sendRate, sendBurst := c.sendLimits()

	c.send(c.welcome(protocol.Limits{
		SendPerSec:     float64(sendRate), // a token may override the defaults
		SendBurst:      sendBurst,
		MaxTextBytes:   s.cfg.MaxTextBytes,
		MaxRooms:       s.cfg.MaxRoomsPerConn,
		QueueBytes:     s.cfg.QueueBytes,
		WriteTimeoutMs: s.cfg.WriteTimeout.Milliseconds(),
		// The budget shared with the user's or the address's other
		// connections (a token's send_rate and send_burst set it too).
		SharedSendPerSec: float64(c.sharedLim.Limit()),
		SharedSendBurst:  c.sharedLim.Burst(),
	}))
	if lateToDrain {
		c.close(causeDrain)
	}
	for _, room := range autoJoin {
		if !protocol.ValidRoom(room) {
			c.reject(protocol.InvalidRoomError())
			continue
		}
		c.join(room, nil, "")
	}
	c.debug("connected", "ip", c.peer.ip, "user", c.user.ID)
}

// User implements broker.Subscriber.
func (c *client) User() protocol.User { return c.user }

// Enqueue implements broker.Subscriber. It never blocks: over the
// per-connection cap the client is evicted with 4008 (and over the
// gateway-wide cap a backed-up client is shed with 1013); the eviction
// itself happens on the writer, off the broadcast path.
//
// A history replay (f.Replay) is written at the pace the client reads it,
// like everything else, but does not count against --queue-bytes: the
// gateway queued it all at once, and any history a room holds must reach a
// client that reads at a normal pace, however its texts encode. Only the
// number of replay frames waiting is capped, at a full replay of every room
// the connection may be in: a client that keeps re-joining with since
// without reading what it asked for is a slow consumer.
func (c *client) Enqueue(f *broker.Frame) {
	if evicted, live := c.out.push(f); evicted != causeNone {
		c.traceEviction(evicted, live)
	}
}

// send queues a frame for this client alone.
func (c *client) send(data []byte) { c.Enqueue(&broker.Frame{Data: data}) }

// close ends the connection for cause (see closeCause and outbox.close).
func (c *client) close(cause closeCause) {
	if c.out.close(cause) {
		code, _ := cause.frame(0)
		c.debug("closing connection", "reason", cause.reason(), "code", code)
	}
}

// traceEviction records an eviction as a span of its own, linked to the
// connection's handshake.
func (c *client) traceEviction(cause closeCause, queued int) {
	_, span := c.srv.tracer.Start(context.Background(), "chatgate.evict", c.linkOptions()...)
	if span.IsRecording() {
		span.SetAttributes(
			attribute.String("chatgate.disconnect.reason", string(cause.reason())),
			attribute.Int("chatgate.queue_bytes", queued),
		)
	}
	span.End()
}

// leaveAll removes the client from every room. run calls it once the
// reader is done.
func (c *client) leaveAll() {
	c.rooms.each(func(_ string, m broker.Membership) { m.Leave() })
	c.rooms = nil
}

// debug logs msg at debug level with the connection's id; nothing is
// allocated for it when debug logging is off.
func (c *client) debug(msg string, args ...any) {
	l := c.srv.log
	if !l.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	l.Debug(msg, append([]any{"conn", c.id}, args...)...)
}

// logError logs msg at error level with the connection's id.
func (c *client) logError(msg string, args ...any) {
	c.srv.log.Error(msg, append([]any{"conn", c.id}, args...)...)
}

// linkOptions start a span of this connection: a server span linked to
// the handshake's. Without tracing there are none (and nothing is
// allocated per message for them).
func (c *client) linkOptions() []trace.SpanStartOption {
	if !c.srv.tracing {
		return nil
	}
	opts := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindServer)}
	if c.handshake != nil {
		opts = append(opts, trace.WithLinks(trace.Link{SpanContext: *c.handshake}))
	}
	return opts
}

// sendLimits are the connection's send rate and burst: a token's, or the
// defaults. The limiter itself need not exist yet.
func (c *client) sendLimits() (rate.Limit, int) {
	if c.sendLim != nil {
		return c.sendLim.Limit(), c.sendLim.Burst()
	}
	return rate.Limit(c.srv.cfg.SendRate), c.srv.cfg.SendBurst
}

// sendLimiter, joinLimiter and strikeLimiter are the request handler's
// limiters, made on first use.
func (c *client) sendLimiter() *rate.Limiter {
	if c.sendLim == nil {
		cfg := &c.srv.cfg
		c.sendLim = rate.NewLimiter(rate.Limit(cfg.SendRate), cfg.SendBurst)
	}
	return c.sendLim
}

func (c *client) joinLimiter() *rate.Limiter {
	if c.joinLim == nil {
		cfg := &c.srv.cfg
		c.joinLim = rate.NewLimiter(rate.Limit(cfg.JoinRate), cfg.JoinBurst)
	}
	return c.joinLim
}

func (c *client) strikeLimiter() *rate.Limiter {
	if c.strikes == nil {
		cfg := &c.srv.cfg
		c.strikes = rate.NewLimiter(rate.Every(cfg.AbuseWindow/time.Duration(cfg.AbuseStrikes)), cfg.AbuseStrikes)
	}
	return c.strikes
}

// roomSet is a connection's memberships by room name. A connection is in
// few rooms (--max-rooms, 16 by default), so a slice searched in order
// costs less memory than a map and no more time.
type roomSet []roomEntry

type roomEntry struct {
	name string
	m    broker.Membership
}

func (rs roomSet) get(name string) (broker.Membership, bool) {
	for _, e := range rs {
		if e.name == name {
			return e.m, true
		}
	}
	return nil, false
}

// set adds or replaces name's membership.
func (rs *roomSet) set(name string, m broker.Membership) {
	for i := range *rs {
		if (*rs)[i].name == name {
			(*rs)[i].m = m
			return
		}
	}
	*rs = append(*rs, roomEntry{name, m})
}

func (rs *roomSet) delete(name string) {
	for i, e := range *rs {
		if e.name == name {
			last := len(*rs) - 1
			(*rs)[i] = (*rs)[last]
			(*rs)[last] = roomEntry{}
			*rs = (*rs)[:last]
			return
		}
	}
}

func (rs roomSet) each(f func(name string, m broker.Membership)) {
	for _, e := range rs {
		f(e.name, e.m)
	}
}
