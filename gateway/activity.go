package gateway

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/chatgate/chatgate/gateway/observe"
	"github.com/chatgate/chatgate/gateway/protocol"
)

// activity passes every event on to the Observer it wraps and counts what
// the once-a-minute "activity" log line reports (Run logs it at info):
// connections opened, ended by reason and refused by reason, chat messages
// accepted, requests answered with an error by code, and guest identities
// by outcome. Each counted event costs one atomic add; deliveries (one per
// recipient) are not counted here.
type activity struct {
	observe.Observer

	// static after construction: a counter for every value of each
	// vocabulary, in the vocabulary's order
	every    time.Duration // how often Run logs (a minute)
	closed   map[observe.DisconnectReason]*atomic.Int64
	rejected map[observe.RejectReason]*atomic.Int64
	errors   map[string]*atomic.Int64
	guests   map[observe.GuestOutcome]*atomic.Int64

	opened   atomic.Int64
	messages atomic.Int64
}

func newActivity(o observe.Observer) *activity {
	a := &activity{
		Observer: o,
		every:    time.Minute,
		closed:   counters(observe.DisconnectReasons),
		rejected: counters(observe.RejectReasons),
		errors:   counters(errorCodes),
		guests:   counters(observe.GuestOutcomes),
	}
	return a
}

func counters[K comparable](keys []K) map[K]*atomic.Int64 {
	m := make(map[K]*atomic.Int64, len(keys))
	for _, k := range keys {
		m[k] = new(atomic.Int64)
	}
	return m
}

func count[K comparable](m map[K]*atomic.Int64, k K) {
	if n := m[k]; n != nil {
		n.Add(1)
	}
}

func (a *activity) ConnAccepted() {
	a.Observer.ConnAccepted()
	a.opened.Add(1)
}

func (a *activity) ConnRejected(r observe.RejectReason) {
	a.Observer.ConnRejected(r)
	count(a.rejected, r)
}

func (a *activity) Disconnecting(r observe.DisconnectReason) {
	a.Observer.Disconnecting(r)
	count(a.closed, r)
}

func (a *activity) MessageAccepted() {
	a.Observer.MessageAccepted()
	a.messages.Add(1)
}

func (a *activity) RequestRejected(code string) {
	a.Observer.RequestRejected(code)
	count(a.errors, code)
}

// guest counts a guest identity's outcome (not an Observer event: see
// Server.guestOutcome).
func (a *activity) guest(o observe.GuestOutcome) { count(a.guests, o) }

// takeCounts returns the counts since the last take, by vocabulary order and
// without the zero ones, and resets them.
func takeCounts[K ~string](m map[K]*atomic.Int64, order []K) (total int64, attrs []any) {
	for _, k := range order {
		if n := m[k].Swap(0); n > 0 {
			total += n
			attrs = append(attrs, slog.Int64(string(k), n))
		}
	}
	return total, attrs
}

// log writes one "activity" line with the counts since the previous one
// and the connections open now, and resets the counts. A window with no
// connection open and nothing counted writes nothing.
func (a *activity) log(log *slog.Logger, window time.Duration, open int) {
	opened, messages := a.opened.Swap(0), a.messages.Swap(0)
	closed, closedBy := takeCounts(a.closed, observe.DisconnectReasons)
	rejected, rejectedBy := takeCounts(a.rejected, observe.RejectReasons)
	errs, errsBy := takeCounts(a.errors, errorCodes)
	guests, guestsBy := takeCounts(a.guests, observe.GuestOutcomes)
	if open == 0 && opened+messages+closed+rejected+errs+guests == 0 {
		return
	}
	log.Info("activity", "window", window.Round(time.Second).String(), "conns", open,
		"opened", opened, "closed", closed, slog.Group("closed_by", closedBy...),
		"rejected", rejected, slog.Group("rejected_by", rejectedBy...),
		"messages", messages, "request_errors", errs, slog.Group("request_errors_by", errsBy...),
		slog.Group("guests", guestsBy...))
}

// errorCodes is protocol.ErrorCodes as strings, the RequestRejected codes.
var errorCodes = func() []string {
	out := make([]string, len(protocol.ErrorCodes))
	for i, c := range protocol.ErrorCodes {
		out[i] = string(c)
	}
	return out
}()

// logActivity logs the activity line every a.every until ctx ends.
func (s *Server) logActivity(ctx context.Context) {
	t := time.NewTicker(s.activity.every)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			s.activity.log(s.log, now.Sub(last), s.Conns())
			last = now
		}
	}
}

// startActivityLog logs the activity line every minute until the returned
// func is called (Run does, when it returns).
func (s *Server) startActivityLog() (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.logActivity(ctx)
	}()
	return func() {
		cancel()
		<-done
	}
}
