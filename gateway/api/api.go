// Package api is chatgate's server API: JSON over HTTP, on a listener of
// its own (--api-addr), through which an application's backend publishes
// system messages, disconnects and bans users, and reads presence, the
// active rooms and history. docs/api.md is its reference.
//
// Every request carries an API key (from --api-keys-file, each with a name
// and scopes) or, with --api-jwt, a JWT whose audience is "api", as a
// bearer token. Requests are rate limited per key, bounded in size and in
// time, measured (chatgate_api_requests_total, chatgate_api_request_duration_seconds),
// traced (a server span each) and, for moderation, written to the audit
// log. Keys are never logged.
//
// The API acts through the broker (broker.Operator), so whatever it does
// holds on every replica in cluster mode.
package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/chatgate/chatgate/gateway/auth"
	"github.com/chatgate/chatgate/gateway/broker"
	"github.com/chatgate/chatgate/gateway/observe"
	"github.com/chatgate/chatgate/gateway/protocol"
)

// Deps are what the API acts through and reports to.
type Deps struct {
	// Broker carries out every call (required).
	Broker broker.Operator
	// MaxTextBytes is the longest text a publish may carry: the chat's
	// --max-text-bytes, so a system message fits wherever a member's does.
	MaxTextBytes int
	Logger       *slog.Logger
	// Observer counts published messages (chatgate_messages_published_total);
	// Metrics the API's requests. Either may be nil.
	Observer observe.Observer
	Metrics  observe.APIObserver
	// Tracer and Propagator as for the chat listener; nil means no tracing
	// and otel's global propagator.
	Tracer     trace.TracerProvider
	Propagator propagation.TextMapPropagator
	// JWT is how the chat's tokens are checked (--jwt-secret-file,
	// --jwt-keys-file, --jwt-issuer, --jwt-leeway); with Config.JWT the API
	// checks its own tokens with the same keys, requiring audience "api"
	// and an exp. Its Audience is ignored.
	JWT auth.Config
}

// Handler serves the API. Close it to stop watching its keys.
type Handler struct {
	// static after construction
	cfg        Config
	op         broker.Operator
	maxText    int
	log        *slog.Logger
	obs        observe.Observer
	metrics    observe.APIObserver
	tracer     trace.Tracer
	propagator propagation.TextMapPropagator
	jwt        *auth.Authenticator // nil without --api-jwt
	limits     *limiters
	stop       context.CancelFunc
	watchers   sync.WaitGroup

	keys atomic.Pointer[keySet] // replaced whole on reload
}

// New checks cfg, loads the keys and starts watching them.
func New(cfg Config, d Deps) (*Handler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if d.Broker == nil {
		return nil, errors.New("api: no broker")
	}
	h := &Handler{
		cfg:        cfg,
		op:         d.Broker,
		maxText:    d.MaxTextBytes,
		log:        d.Logger,
		obs:        d.Observer,
		metrics:    d.Metrics,
		propagator: d.Propagator,
		limits:     newLimiters(cfg.Rate, cfg.Burst, time.Now),
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	if h.obs == nil {
		h.obs = observe.Nop{}
	}
	if h.metrics == nil {
		h.metrics = nopMetrics{}
	}
	if h.maxText <= 0 {
		h.maxText = protocol.DefaultMaxTextBytes
	}
	tp := d.Tracer
	if tp == nil {
		tp = noop.NewTracerProvider()
	}
	h.tracer = tp.Tracer("github.com/chatgate/chatgate/gateway/api")
	if h.propagator == nil {
		h.propagator = otel.GetTextMapPropagator()
	}
	h.keys.Store(&keySet{})
	if cfg.KeysFile != "" {
		ks, err := loadKeys(cfg.KeysFile)
		if err != nil {
			return nil, err
		}
		h.keys.Store(ks)
		h.log.Info("api keys loaded", "file", cfg.KeysFile, "keys", ks.names())
	}
	if cfg.JWT {
		jc := d.JWT
		jc.Audience, jc.RequireExpiry = Audience, true
		a, err := auth.New(jc, h.log)
		if err != nil {
			return nil, fmt.Errorf("--api-jwt: %w", err)
		}
		h.jwt = a
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.stop = cancel
	if cfg.KeysFile != "" {
		h.watchers.Go(func() {
			if err := auth.WatchFile(ctx, cfg.KeysFile, "api keys", h.log, h.reloadKeys); err != nil {
				h.log.Error("cannot watch the api keys file; key changes need a restart", "file", cfg.KeysFile, "err", err)
			}
		})
	}
	if h.jwt != nil {
		h.watchers.Go(func() {
			if err := h.jwt.Watch(ctx); err != nil {
				h.log.Error("cannot watch the jwt keys file for the api; rotation needs a restart", "err", err)
			}
		})
	}
	return h, nil
}

// reloadKeys replaces the keys with the file's; a file that fails to load
// keeps the previous keys in force.
func (h *Handler) reloadKeys() {
	ks, err := loadKeys(h.cfg.KeysFile)
	if err != nil {
		h.log.Error("reloading api keys failed; keeping the previous keys", "file", h.cfg.KeysFile, "err", err)
		return
	}
	h.keys.Store(ks)
	h.log.Info("reloaded api keys", "file", h.cfg.KeysFile, "keys", ks.names())
}

// Close stops watching the keys files and waits for the watchers.
func (h *Handler) Close() {
	h.stop()
	h.watchers.Wait()
}

// The API's own error codes, beside the protocol's (docs/api.md, "Errors").
const (
	CodeUnauthorized     protocol.ErrorCode = "unauthorized"
	CodeNotFound         protocol.ErrorCode = "not_found"
	CodeMethodNotAllowed protocol.ErrorCode = "method_not_allowed"
)

// status is the HTTP status of an error code.
func status(code protocol.ErrorCode) int {
	switch code {
	case protocol.CodeBadRequest, protocol.CodeInvalidRoom:
		return http.StatusBadRequest
	case protocol.CodeTooLarge:
		return http.StatusRequestEntityTooLarge
	case protocol.CodeRateLimited:
		return http.StatusTooManyRequests
	case protocol.CodeRoomLimit, protocol.CodeUnavailable:
		return http.StatusServiceUnavailable
	case CodeUnauthorized:
		return http.StatusUnauthorized
	case protocol.CodeForbidden:
		return http.StatusForbidden
	case CodeNotFound:
		return http.StatusNotFound
	case CodeMethodNotAllowed:
		return http.StatusMethodNotAllowed
	}
	return http.StatusInternalServerError
}

// principal is who made a request: a key's name, or "jwt:" and a token's
// subject.
type principal struct {
	name   string
	scopes Scope
}

// call is one request being served.
type call struct {
	r    *http.Request
	w    http.ResponseWriter
	who  principal
	room string // from the path, for the room endpoints
	span trace.Span
	// audit holds the moderation details the audit line reports.
	audit []any
}

// ServeHTTP serves one request: authenticate, rate-limit, route, check
// the scope, carry it out; measure, trace and (for moderation) audit it.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rt, room, found := route(r.URL.Path)
	ep := observe.APIOther
	if found {
		ep = rt.endpoint
	}
	ctx := h.propagator.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
	ctx, span := h.tracer.Start(ctx, "chatgate.api."+string(ep), trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(semconv.HTTPRequestMethodKey.String(r.Method), attribute.String("chatgate.api.endpoint", string(ep))))
	ctx, cancel := context.WithTimeout(ctx, h.cfg.Timeout)
	defer cancel()
	c := &call{r: r.WithContext(ctx), w: w, room: room, span: span}
	result, code := h.serveSafely(ctx, c, rt, found)
	h.metrics.APIRequest(ep, result, time.Since(start))
	if span.IsRecording() {
		span.SetAttributes(semconv.HTTPResponseStatusCode(code), attribute.String("chatgate.outcome", result))
		if c.who.name != "" {
			span.SetAttributes(attribute.String("chatgate.api.key", c.who.name))
		}
		if code >= 500 {
			span.SetStatus(codes.Error, result)
		}
	}
	span.End()
	if rt.scope == ScopeModerate && found && c.who.name != "" {
		attrs := append([]any{"action", string(ep), "key", c.who.name, "remote", r.RemoteAddr}, c.audit...)
		attrs = append(attrs, "result", result)
		if sc := span.SpanContext(); sc.IsValid() {
			attrs = append(attrs, "trace_id", sc.TraceID().String())
		}
		h.log.Info("audit", attrs...)
	}
}

// serveSafely is serve; a panic (a bug) costs this request alone, answered
// with 500 internal.
func (h *Handler) serveSafely(ctx context.Context, c *call, rt endpoint, found bool) (result string, code int) {
	defer func() {
		if p := recover(); p != nil {
			h.log.Error("panic while serving an api request", "panic", p, "stack", string(debug.Stack()))
			result, code = h.fail(c, &protocol.Error{Code: protocol.CodeInternal, Message: "internal error"})
		}
	}()
	return h.serve(ctx, c, rt, found)
}

func (h *Handler) serve(ctx context.Context, c *call, rt endpoint, found bool) (result string, code int) {
	who, perr := h.authenticate(c.r)
	if perr != nil {
		c.w.Header().Set("WWW-Authenticate", `Bearer realm="chatgate-api"`)
		return h.fail(c, perr)
	}
	c.who = who
	if ok, wait := h.limits.allow(who.name, 1); !ok {
		return h.fail(c, &protocol.Error{Code: protocol.CodeRateLimited, Message: "too many requests for key " + who.name, RetryAfterMs: wait})
	}
	switch {
	case !found:
		return h.fail(c, &protocol.Error{Code: CodeNotFound, Message: "no such endpoint: " + c.r.URL.Path + " (see docs/api.md)"})
	case c.r.Method != rt.method:
		c.w.Header().Set("Allow", rt.method)
		return h.fail(c, &protocol.Error{Code: CodeMethodNotAllowed, Message: c.r.Method + " is not allowed here; use " + rt.method})
	case who.scopes&rt.scope == 0:
		return h.fail(c, &protocol.Error{Code: protocol.CodeForbidden, Message: fmt.Sprintf("key %s lacks the %s scope", who.name, rt.scope)})
	}
	if c.room != "" && !protocol.ValidRoom(c.room) {
		return h.fail(c, protocol.InvalidRoomError())
	}
	resp, perr := rt.serve(h, ctx, c)
	if ctx.Err() != nil {
		perr = timeoutError() // whatever the broker said when it gave up
	}
	if perr != nil {
		return h.fail(c, perr)
	}
	writeJSON(c.w, http.StatusOK, resp)
	if r, ok := resp.(interface{ result() string }); ok {
		return r.result(), http.StatusOK
	}
	return "ok", http.StatusOK
}

func timeoutError() *protocol.Error {
	return &protocol.Error{Code: protocol.CodeUnavailable, Message: "the request did not finish within --api-timeout", RetryAfterMs: 1000}
}

// authenticate finds the request's key or, with --api-jwt, verifies its
// token. The credential itself is never logged.
func (h *Handler) authenticate(r *http.Request) (principal, *protocol.Error) {
	scheme, tok, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	tok = strings.TrimSpace(tok)
	if !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return principal{}, &protocol.Error{Code: CodeUnauthorized, Message: "missing credentials: send Authorization: Bearer <api key>"}
	}
	if k, ok := h.keys.Load().match(tok); ok {
		return principal{name: k.name, scopes: k.scopes}, nil
	}
	if h.jwt != nil && strings.Count(tok, ".") == 2 {
		id, err := h.jwt.Authenticate(tok)
		if err == nil {
			var s Scope
			for _, name := range id.Scopes {
				s |= scopeNames[name] // scopes of other services are ignored
			}
			return principal{name: "jwt:" + id.UserID, scopes: s}, nil
		}
		h.log.Debug("api token refused", "err", err)
	}
	return principal{}, &protocol.Error{Code: CodeUnauthorized, Message: "invalid credentials"}
}

// fail answers perr and returns its result and status.
func (h *Handler) fail(c *call, perr *protocol.Error) (string, int) {
	code := status(perr.Code)
	if perr.RetryAfterMs > 0 {
		c.w.Header().Set("Retry-After", strconv.FormatInt(int64(math.Ceil(float64(perr.RetryAfterMs)/1000)), 10))
	}
	writeJSON(c.w, code, errorBody{Error: newErrorObject(perr)})
	return string(perr.Code), code
}

type nopMetrics struct{}

func (nopMetrics) APIRequest(observe.APIEndpoint, string, time.Duration) {}
