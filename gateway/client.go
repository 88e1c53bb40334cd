package gateway

import (
	"context"
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
	log  *slog.Logger
	// spanOpts start a message's span: a link to the handshake's.
	spanOpts []trace.SpanStartOption
	out      *outbox

	// budgetKey names the send budget this connection shares with its
	// user's (or address's) other connections; sharedLim is that budget
	// (safe for concurrent use). Set before run.
	budgetKey string
	sharedLim *rate.Limiter

	// owned by the request handler (the reader's goroutine)
	rooms   map[string]broker.Membership
	sendLim *rate.Limiter
	joinLim *rate.Limiter
	strikes *rate.Limiter // rate-limit and protocol violations

	typingLim typingLimiter // typing.go; owned by the request handler too

	// readerDone is closed by the reader, writerDone by the writer.
	readerDone chan struct{}
	writerDone chan struct{}
}

func newClient(s *Server, conn *websocket.Conn, id string, user protocol.User, peer admitted, handshake trace.SpanContext) *client {
	cfg := &s.cfg
	return &client{
		spanOpts: []trace.SpanStartOption{
			trace.WithSpanKind(trace.SpanKindServer),
			trace.WithLinks(trace.Link{SpanContext: handshake}),
		},
		srv:  s,
		conn: conn,
		id:   id,
		user: user,
		peer: peer,
		log:  s.log.With("conn", id),
		out: newOutbox(outboxLimits{
			queueBytes: cfg.QueueBytes,
			totalBytes: cfg.TotalQueueBytes,
			// A full replay of every room the connection may be in.
			replayFrames: cfg.MaxRoomsPerConn * s.history,
		}, &s.queued, s.obs, s.retryMs),
		rooms:      make(map[string]broker.Membership),
		sendLim:    rate.NewLimiter(rate.Limit(cfg.SendRate), cfg.SendBurst),
		joinLim:    rate.NewLimiter(rate.Limit(cfg.JoinRate), cfg.JoinBurst),
		strikes:    rate.NewLimiter(rate.Every(cfg.AbuseWindow/time.Duration(cfg.AbuseStrikes)), cfg.AbuseStrikes),
		readerDone: make(chan struct{}),
		writerDone: make(chan struct{}),
	}
}

// run serves the connection until both its reader and its writer are done:
// it registers the connection, says welcome, makes the joins the URL asked
// for, starts the writer, reads on this goroutine, then leaves every room
// and frees what the connection held.
func (c *client) run(autoJoin []string) {
	s := c.srv
	lateToDrain := !s.register(c)

	c.send(c.welcome(protocol.Limits{
		SendPerSec:     float64(c.sendLim.Limit()), // a token may override the defaults
		SendBurst:      c.sendLim.Burst(),
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
	c.log.Debug("connected", "ip", c.peer.ip, "user", c.user.ID)

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
	// Free the admission slot before anyone can see the connection gone,
	// so an immediate reconnect is never refused for it.
	s.adm.release(c.peer.ipKey, c.peer.userKey())
	s.budgets.release(c.budgetKey)
	_ = c.conn.NetConn().Close()

	s.unregister(c)
	s.obs.ConnClosed()
	c.log.Debug("disconnected", "reason", c.out.closeCause().reason())
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
		c.log.Debug("closing connection", "reason", cause.reason(), "code", code)
	}
}

// traceEviction records an eviction as a span of its own, linked to the
// connection's handshake.
func (c *client) traceEviction(cause closeCause, queued int) {
	_, span := c.srv.tracer.Start(context.Background(), "chatgate.evict", c.spanOpts...)
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
	for name, m := range c.rooms {
		m.Leave()
		delete(c.rooms, name)
	}
}
