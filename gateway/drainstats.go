package gateway

import (
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/chatgate/chatgate/gateway/observe"
)

// drainStats passes every event on to the Observer it wraps and counts,
// from the start of a drain, what the drain's summary reports: connections
// ended by reason (the same events as chatgate_disconnects_total) and chat
// messages written to clients (the same events as
// chatgate_messages_delivered_total: traffic during the drain delay, and
// each client's queue, written before its close frame). Outside a drain it
// costs one atomic load per disconnect and per delivery.
type drainStats struct {
	observe.Observer

	// static after construction
	closed map[observe.DisconnectReason]*atomic.Int64

	counting atomic.Bool  // from BeginDrain
	flushed  atomic.Int64 // messages written since then
}

func newDrainStats(o observe.Observer) *drainStats {
	return &drainStats{Observer: o, closed: counters(observe.DisconnectReasons)}
}

func (d *drainStats) Disconnecting(r observe.DisconnectReason) {
	d.Observer.Disconnecting(r)
	if d.counting.Load() {
		count(d.closed, r)
	}
}

func (d *drainStats) Delivered(latency time.Duration, id trace.TraceID) {
	d.Observer.Delivered(latency, id)
	if d.counting.Load() {
		d.flushed.Add(1)
	}
}

// closedAttrs lists the non-zero counts by reason, in the vocabulary's
// order, for the drain's one summary line (it resets them).
func (d *drainStats) closedAttrs() []any {
	_, attrs := takeCounts(d.closed, observe.DisconnectReasons)
	return attrs
}
