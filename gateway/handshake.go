// The WebSocket handshake: admission checks, the upgrade and its span.

package gateway

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/http"

	"github.com/gorilla/websocket"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/time/rate"

	"github.com/chatgate/chatgate/gateway/auth"
	"github.com/chatgate/chatgate/gateway/observe"
	"github.com/chatgate/chatgate/gateway/protocol"
)

func (s *Server) serveWS(w http.ResponseWriter, r *http.Request) {
	// The handshake is a server span of its own that ends when the
	// upgrade completes, not when the socket closes.
	span := trace.SpanFromContext(context.Background()) // a no-op span unless tracing
	if s.tracing {
		ctx := s.propagator.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		_, span = s.tracer.Start(ctx, "chatgate.handshake", trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(semconv.HTTPRequestMethodKey.String(r.Method), semconv.URLPath(r.URL.Path)))
	}
	a, why, status := s.admit(w, r)
	if why != "" {
		s.obs.ConnRejected(why)
		endHandshake(span, status, string(why))
		return
	}
	// Counted from here so that shutdown waits for failed upgrades too.
	s.handlers.Add(1)
	conn, ev, err := s.upgrade(w, r)
	if err != nil {
		defer s.handlers.Done()
		// The upgrader has already answered with an HTTP error.
		s.adm.release(a.ipKey, a.userKey())
		s.obs.ConnRejected(observe.RejectBadRequest)
		s.log.Debug("upgrade failed", "err", err)
		endHandshake(span, http.StatusBadRequest, string(observe.RejectBadRequest))
		return
	}
	endHandshake(span, http.StatusSwitchingProtocols, "accepted")
	id := newID()
	var user protocol.User
	if a.ident != nil {
		// The verified identity, never the name query parameter: nobody
		// speaks as someone else.
		name, ok := protocol.ValidName(a.ident.Name)
		if !ok {
			name = displayName(a.ident.UserID, id) // the user id, when presentable
		}
		user = protocol.User{ID: a.ident.UserID, Name: name}
	} else {
		user = s.guestUser(r, id)
	}
	c := newClient(s, conn, ev, "c_"+id, user, a, span.SpanContext())
	var tokenRate float64
	var tokenBurst int
	if a.ident != nil && a.ident.SendRate > 0 {
		tokenRate, tokenBurst = a.ident.SendRate, a.ident.SendBurst
		burst := a.ident.SendBurst
		if burst <= 0 {
			burst = s.cfg.SendBurst
		}
		c.sendLim = rate.NewLimiter(rate.Limit(a.ident.SendRate), burst)
	}
	// The budget shared with the user's (or the address's) other
	// connections; a token's send_rate and send_burst apply to it too.
	c.budgetKey = budgetKey(a.userKey(), a.ipKey)
	c.sharedLim = s.budgets.acquire(c.budgetKey, tokenRate, tokenBurst)
	s.obs.ConnAccepted()
	autoJoin := r.URL.Query()["room"]
	if ev != nil {
		// The event loop serves it from here; the handler returns and
		// the connection has no goroutine until it has something to
		// read or write.
		ev.attach(c, s.connSeq.Add(1))
		c.open(autoJoin)
		ev.register()
		return
	}
	// The connection gets a goroutine of its own and the HTTP handler
	// returns: its goroutine's stack, grown while parsing the request, and
	// the hijacked HTTP connection's buffers are then freed instead of
	// being held for the connection's whole life.
	go func() {
		defer s.handlers.Done()
		c.run(autoJoin)
	}()
}

// upgrade completes the WebSocket handshake. With the event loop the
// connection gets an evConn (frame gate and queued writes); otherwise, or
// when the connection has no socket to poll, it is read and written by
// goroutines of its own, and the hijacked connection counts the frames of
// each inbound message.
func (s *Server) upgrade(w http.ResponseWriter, r *http.Request) (*websocket.Conn, *evConn, error) {
	if s.loop == nil {
		conn, err := s.upgrader.Upgrade(frameLimitWriter{ResponseWriter: w, max: s.cfg.MessageFrames()}, r, nil)
		return conn, nil, err
	}
	h := &evHijacker{ResponseWriter: w, l: s.loop, maxBytes: int64(s.cfg.MaxFrameBytes), maxFrames: s.cfg.MessageFrames()}
	conn, err := s.evUpgrader.Upgrade(h, r, nil)
	if err != nil {
		return nil, nil, err
	}
	return conn, h.e, nil // h.e is nil when there was no socket to poll
}

// admitted is a connection that passed the pre-upgrade checks.
type admitted struct {
	ip    string         // the client address (clientIP), for logs
	ipKey string         // what the per-IP limits count (ipLimitKey)
	ident *auth.Identity // nil without --auth jwt
}

// userKey is what the per-user limit counts: empty for anonymous users.
func (a admitted) userKey() string {
	if a.ident == nil {
		return ""
	}
	return a.ident.UserID
}

// admit runs the checks that come before the upgrade. On refusal it has
// answered the request and returns the reason and status; on success the
// caller must release the admission slot.
func (s *Server) admit(w http.ResponseWriter, r *http.Request) (a admitted, why observe.RejectReason, status int) {
	if !websocket.IsWebSocketUpgrade(r) {
		reject(w, http.StatusBadRequest, 0, "this endpoint speaks WebSocket only (GET with Upgrade: websocket)")
		return a, observe.RejectBadRequest, http.StatusBadRequest
	}
	if s.draining.Load() {
		reject(w, http.StatusServiceUnavailable, 1, "draining: reconnect to another replica")
		return a, observe.RejectDraining, http.StatusServiceUnavailable
	}
	if !s.origins.check(r) {
		s.log.Debug("origin refused", "origin", r.Header.Get("Origin"))
		reject(w, http.StatusForbidden, 0, "origin not allowed")
		return a, observe.RejectOrigin, http.StatusForbidden
	}
	if !s.adm.allowHandshake() {
		reject(w, http.StatusServiceUnavailable, 1+rand.IntN(5), "at capacity")
		return a, observe.RejectRate, http.StatusServiceUnavailable
	}
	if s.auth != nil {
		ident, err := s.auth.Authenticate(auth.TokenFromRequest(r))
		if err != nil {
			// Only a short code goes back; the token is never logged.
			challenge := `Bearer realm="chatgate"`
			code := "missing_token"
			if !errors.Is(err, auth.ErrMissing) {
				code = "invalid_token"
				challenge += `, error="invalid_token"`
			}
			// The cause names what failed (signature, expiry, issuer...),
			// never the token itself.
			s.log.Debug("authentication failed", "code", code, "cause", err.Error())
			w.Header().Set("WWW-Authenticate", challenge)
			reject(w, http.StatusUnauthorized, 0, code)
			return a, observe.RejectAuth, http.StatusUnauthorized
		}
		a.ident = &ident
	}
	a.ip = clientIP(r, s.cfg.TrustedProxies)
	a.ipKey = ipLimitKey(a.ip, s.cfg.IPv6PrefixLen)
	ok, why, status := s.adm.admit(a.ipKey, a.userKey())
	if !ok {
		msg := "at capacity"
		switch why {
		case observe.RejectPerIP:
			msg = "too many connections from this address"
		case observe.RejectPerUser:
			msg = "too many connections for this user"
		}
		reject(w, status, 1+rand.IntN(5), msg)
		return admitted{}, why, status
	}
	return a, "", 0
}

func endHandshake(span trace.Span, status int, outcome string) {
	if span.IsRecording() {
		span.SetAttributes(semconv.HTTPResponseStatusCode(status), attribute.String("chatgate.handshake.outcome", outcome))
		if status >= 500 {
			span.SetStatus(codes.Error, outcome)
		}
	}
	span.End()
}
