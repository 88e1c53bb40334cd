package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/chatgate/chatgate/gateway/observe"
	"github.com/chatgate/chatgate/gateway/protocol"
)

// endpoint is one route: its method, the scope it needs and its handler.
type endpoint struct {
	endpoint observe.APIEndpoint
	method   string
	scope    Scope
	serve    func(h *Handler, ctx context.Context, c *call) (any, *protocol.Error)
}

var (
	epPublish    = endpoint{observe.APIPublish, http.MethodPost, ScopePublish, (*Handler).publish}
	epBatch      = endpoint{observe.APIPublishBatch, http.MethodPost, ScopePublish, (*Handler).publishBatch}
	epDisconnect = endpoint{observe.APIDisconnect, http.MethodPost, ScopeModerate, (*Handler).disconnect}
	epBan        = endpoint{observe.APIBan, http.MethodPost, ScopeModerate, (*Handler).ban}
	epUnban      = endpoint{observe.APIUnban, http.MethodPost, ScopeModerate, (*Handler).unban}
	epRooms      = endpoint{observe.APIRooms, http.MethodGet, ScopeRead, (*Handler).rooms}
	epPresence   = endpoint{observe.APIPresence, http.MethodGet, ScopeRead, (*Handler).presence}
	epHistory    = endpoint{observe.APIHistory, http.MethodGet, ScopeRead, (*Handler).history}
)

// route finds the endpoint of path, and the room it names for the room
// endpoints (/v1/rooms/{room}/presence and /v1/rooms/{room}/history).
func route(path string) (ep endpoint, room string, ok bool) {
	switch path {
	case "/v1/publish":
		return epPublish, "", true
	case "/v1/publish/batch":
		return epBatch, "", true
	case "/v1/disconnect":
		return epDisconnect, "", true
	case "/v1/ban":
		return epBan, "", true
	case "/v1/unban":
		return epUnban, "", true
	case "/v1/rooms":
		return epRooms, "", true
	}
	rest, ok := strings.CutPrefix(path, "/v1/rooms/")
	if !ok {
		return endpoint{}, "", false
	}
	room, what, ok := strings.Cut(rest, "/")
	if !ok || room == "" {
		return endpoint{}, "", false
	}
	switch what {
	case "presence":
		return epPresence, room, true
	case "history":
		return epHistory, room, true
	}
	return endpoint{}, "", false
}

type errorBody struct {
	Error *Error `json:"error"`
}

func newErrorObject(e *protocol.Error) *Error {
	return &Error{Code: e.Code, Message: e.Message, RetryAfterMs: e.RetryAfterMs}
}

// writeJSON answers status with v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		status = http.StatusInternalServerError
		b.Reset()
		b.WriteString(`{"error":{"code":"internal","message":"encoding the answer failed"}}` + "\n")
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", strconv.Itoa(b.Len()))
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}

// decodeBody reads the request body, at most max bytes, as one JSON object
// into v, refusing unknown fields and trailing data, with errors that say
// what to fix.
func decodeBody(c *call, max int64, v any) *protocol.Error {
	body := http.MaxBytesReader(c.w, c.r.Body, max)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	tooLarge := func(err error) bool {
		var mbe *http.MaxBytesError
		return errors.As(err, &mbe)
	}
	if err := dec.Decode(v); err != nil {
		switch {
		case tooLarge(err):
			return &protocol.Error{Code: protocol.CodeTooLarge, Message: fmt.Sprintf("the request body is larger than %d bytes (--api-max-body-bytes)", max)}
		case errors.Is(err, io.EOF):
			return &protocol.Error{Code: protocol.CodeBadRequest, Message: "the request body is empty; send a JSON object"}
		}
		return &protocol.Error{Code: protocol.CodeBadRequest, Message: "the request body is not a valid request: " + describeJSONError(err)}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		if tooLarge(err) {
			return &protocol.Error{Code: protocol.CodeTooLarge, Message: fmt.Sprintf("the request body is larger than %d bytes (--api-max-body-bytes)", max)}
		}
		return &protocol.Error{Code: protocol.CodeBadRequest, Message: "the request body has data after its JSON object"}
	}
	return nil
}

// describeJSONError turns encoding/json's errors into messages about the
// request, not about Go types.
func describeJSONError(err error) string {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		field := te.Field
		if field == "" {
			return "the body must be a JSON object"
		}
		return fmt.Sprintf("field %s must be %s, not %s", field, jsonKind(te.Type), te.Value)
	case errors.As(err, &se):
		return fmt.Sprintf("invalid JSON at byte %d: %s", se.Offset, strings.TrimPrefix(se.Error(), "json: "))
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "the JSON ends too early"
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}

func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a non-negative integer"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "an integer"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Struct, reflect.Map, reflect.Pointer:
		return "an object"
	case reflect.Bool:
		return "true or false"
	}
	return "something else"
}

// query checks the request's query parameters: only the known ones, each
// at most once.
func query(c *call, known ...string) (url.Values, *protocol.Error) {
	q, err := url.ParseQuery(c.r.URL.RawQuery)
	if err != nil {
		return nil, &protocol.Error{Code: protocol.CodeBadRequest, Message: "the query string is malformed"}
	}
	for k, vs := range q {
		if !slices.Contains(known, k) {
			return nil, &protocol.Error{Code: protocol.CodeBadRequest, Message: fmt.Sprintf("unknown query parameter %q (known: %s)", k, strings.Join(known, ", "))}
		}
		if len(vs) > 1 {
			return nil, &protocol.Error{Code: protocol.CodeBadRequest, Message: fmt.Sprintf("query parameter %q is given %d times", k, len(vs))}
		}
	}
	return q, nil
}

// limitParam reads the limit query parameter: def when absent, 1..max.
func limitParam(q url.Values, def, max int) (int, *protocol.Error) {
	v := q.Get("limit")
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > max {
		return 0, &protocol.Error{Code: protocol.CodeBadRequest, Message: fmt.Sprintf("limit must be an integer from 1 to %d", max)}
	}
	return n, nil
}

// limiters are the per-key rate limits. A key's limiter is kept while it
// is in use and forgotten once it has refilled (a full limiter is the
// same as a new one), swept at most once a second: the set stays as small
// as the keys (and JWT subjects) active in the last burst/rate seconds.
type limiters struct {
	// static after construction
	rate  rate.Limit
	burst int
	now   func() time.Time

	mu        sync.Mutex
	byKey     map[string]*rate.Limiter // guarded by mu
	lastSweep time.Time                // guarded by mu
}

func newLimiters(r float64, burst int, now func() time.Time) *limiters {
	return &limiters{rate: rate.Limit(r), burst: burst, now: now, byKey: make(map[string]*rate.Limiter)}
}

// allow takes n tokens from key's limiter, or none; when refused it says
// how long until n are there.
func (l *limiters) allow(key string, n int) (ok bool, retryMs int64) {
	l.mu.Lock()
	now := l.now()
	if now.Sub(l.lastSweep) >= time.Second {
		l.lastSweep = now
		for k, lim := range l.byKey {
			if lim.TokensAt(now) >= float64(l.burst) {
				delete(l.byKey, k)
			}
		}
	}
	lim := l.byKey[key]
	if lim == nil {
		lim = rate.NewLimiter(l.rate, l.burst)
		l.byKey[key] = lim
	}
	l.mu.Unlock()
	if lim.AllowN(now, n) {
		return true, 0
	}
	deficit := float64(n) - lim.TokensAt(now)
	return false, max(1, int64(math.Ceil(deficit/float64(l.rate)*1000)))
}
