package gateway

import (
	"sync"
	"sync/atomic"

	"github.com/chatgate/chatgate/gateway/broker"
	"github.com/chatgate/chatgate/gateway/observe"
	"github.com/chatgate/chatgate/gateway/protocol"
)

// maxSpareQueue is the largest queue backing array kept for reuse, so an
// idle connection does not pin a big slice.
const maxSpareQueue = 256

// outboxShared is what every outbox of a Server shares: the caps, the
// gateway-wide total, where to report, and how to pick a close's retry_ms.
type outboxShared struct {
	limits outboxLimits
	total  *atomic.Int64 // the gateway-wide total
	obs    observe.Observer
	// retryMs picks a close frame's jittered retry_ms.
	retryMs func() int64
}

// outboxLimits are what an outbox is capped by.
type outboxLimits struct {
	queueBytes   int   // --queue-bytes: live bytes one connection may have waiting
	totalBytes   int64 // --total-queue-bytes: bytes all connections may have waiting
	replayFrames int   // replayed frames one connection may have waiting
}

// outbox is one connection's outbound side: the frames queued for its
// writer, what they cost, and whether (and why) the connection is closing.
// It is the only owner of that state; producers (brokers, the request
// handler), the writer and the Server all go through its methods.
//
// Accounting: live is the bytes of the live frames (everything but history
// replays) queued or taken by the writer and not yet settled, what
// --queue-bytes caps. replayBytes and replayFrames count the replayed
// history frames likewise. The gateway chose to send a replay at once, so
// its bytes do not count against --queue-bytes; only how many replay frames
// may wait is capped. Both byte counts are part of the gateway-wide total
// (total), which every outbox of a Server shares. The invariant, which
// TestQueueAccountingNeverLeaks checks for every way a connection ends:
// once the writer has returned and release has run, the connection counts
// for nothing in total.
//
// Closing: once closing is set nothing is queued again. flush says whether
// the writer writes what is queued before the close frame. A close asked
// for while a request is being handled waits (deferred) until it is done,
// so a send being handled is acked before the close frame.
type outbox struct {
	// static after construction
	sh *outboxShared
	// wake is poked (never closed) whenever there is something for the
	// writer to do: a frame queued or a close begun. With the event loop
	// the writer is no goroutine of the connection's own: notify is called
	// instead, and wake is nil.
	wake   chan struct{}
	notify func()

	mu sync.Mutex
	// queue holds frames not yet taken by the writer; spare is the writer's
	// previous batch, kept for reuse.
	queue        []*broker.Frame
	spare        []*broker.Frame
	live         int
	replayBytes  int
	replayFrames int
	closing      bool
	flush        bool
	cause        closeCause // why it is closing; causeNone while open
	closeRetryMs int64      // the close frame's retry_ms, for causes that carry one
	handling     bool       // a request is being handled
	deferred     closeCause // a graceful close asked for while handling
}

// init sets up an outbox (in place: it is part of its client) whose
// writer is woken by notify, or, when notify is nil, through wake.
func (o *outbox) init(sh *outboxShared, notify func()) {
	o.sh, o.notify = sh, notify
	if notify == nil {
		o.wake = make(chan struct{}, 1)
	}
}

// poke wakes the writer.
func (o *outbox) poke() {
	if o.notify != nil {
		o.notify()
		return
	}
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// push queues f unless the connection is closing. It never blocks. Over
// the per-connection cap (live bytes, or replay frames waiting) it evicts
// the connection as a slow consumer; over the gateway-wide cap, a
// connection with a backlog of its own is shed as overloaded. It returns
// the eviction's cause (causeNone if none) and the live bytes queued before
// the eviction dropped them.
func (o *outbox) push(f *broker.Frame) (evicted closeCause, live int) {
	n := len(f.Data) + 1 // the '\n' separator
	o.mu.Lock()
	if o.closing {
		o.mu.Unlock()
		return causeNone, 0
	}
	if f.Replay {
		o.replayBytes += n
		o.replayFrames++
	} else {
		o.live += n
	}
	total := o.sh.total.Add(int64(n))
	o.queue = append(o.queue, f)
	live = o.live
	switch {
	case o.live > o.sh.limits.queueBytes || o.replayFrames > o.sh.limits.replayFrames:
		evicted = causeSlowConsumer
	case total > o.sh.limits.totalBytes && o.live+o.replayBytes > o.sh.limits.queueBytes/16:
		evicted = causeOverloaded
	}
	if evicted != causeNone {
		o.beginCloseLocked(evicted)
	}
	o.mu.Unlock()
	o.sh.obs.QueueSampled(live)
	o.poke()
	return evicted, live
}

// close begins closing for cause. A cause with flush is graceful: what is
// queued is written before the close frame, and while a request is being
// handled the close waits until it is done. A cause without flush aborts:
// nothing more is written, and a graceful close already under way stops
// flushing (whatever is still queued can then never be written, so it
// leaves the gateway-wide total at once). Only the first cause is kept. It
// reports whether this call began the close, and pokes the writer.
func (o *outbox) close(cause closeCause) (started bool) {
	o.mu.Lock()
	switch {
	case cause.flushes() && o.handling && !o.closing:
		if o.deferred == causeNone {
			o.deferred = cause
		}
	case cause.flushes():
		started = o.beginCloseLocked(cause)
	default:
		started = o.beginCloseLocked(cause)
		if !started && o.flush {
			o.flush = false
			o.dropLocked()
		}
	}
	o.mu.Unlock()
	o.poke()
	return started
}

// beginCloseLocked starts closing for cause unless a close has begun
// already. Without flush the queue is dropped at once. o.mu must be held.
func (o *outbox) beginCloseLocked(cause closeCause) bool {
	if o.closing {
		return false
	}
	o.closing, o.flush, o.cause = true, cause.flushes(), cause
	if cause.retries() {
		o.closeRetryMs = o.sh.retryMs()
	}
	if !o.flush {
		o.dropLocked()
	}
	o.sh.obs.Disconnecting(cause.reason())
	return true
}

// beginHandling marks a request as being handled; it reports false, and the
// request is to be discarded, once the connection is closing.
func (o *outbox) beginHandling() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closing {
		return false
	}
	o.handling = true
	return true
}

// endHandling clears the mark and returns the graceful close that was asked
// for meanwhile, if any (causeNone otherwise), for the caller to carry out.
func (o *outbox) endHandling() closeCause {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.handling = false
	d := o.deferred
	o.deferred = causeNone
	return d
}

// take hands the writer everything queued. closing and flush say whether
// the connection is closing, and whether what is taken is still to be
// written. Every frame taken must be settled.
func (o *outbox) take() (batch []*broker.Frame, closing, flush bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	batch = o.queue
	o.queue, o.spare = o.spare[:0], nil
	return batch, o.closing, o.flush
}

// settle accounts frames the writer took as gone (written or dropped). It
// reports whether the connection has been aborted meanwhile (closing
// without flush), in which case the rest of the batch must be dropped too.
func (o *outbox) settle(frames []*broker.Frame) (aborted bool) {
	live, replay, replayN := frameCost(frames)
	o.mu.Lock()
	o.live -= live
	o.replayBytes -= replay
	o.replayFrames -= replayN
	aborted = o.closing && !o.flush
	o.mu.Unlock()
	o.sh.total.Add(-int64(live + replay))
	return aborted
}

// recycle keeps a drained batch's backing array as the next spare.
func (o *outbox) recycle(batch []*broker.Frame) {
	if cap(batch) > maxSpareQueue {
		return
	}
	clear(batch)
	o.mu.Lock()
	o.spare = batch[:0]
	o.mu.Unlock()
}

// dropLocked discards what the writer has not taken yet; what it has taken
// is settled by the writer. o.mu must be held.
func (o *outbox) dropLocked() {
	live, replay, replayN := frameCost(o.queue)
	o.live -= live
	o.replayBytes -= replay
	o.replayFrames -= replayN
	o.sh.total.Add(-int64(live + replay))
	clear(o.queue)
	o.queue = o.queue[:0]
}

// release runs when the writer has returned: nothing it took is in flight
// any more (it settles every batch before returning) and nothing queued
// will ever be written, so the connection's bytes leave the gateway-wide
// total whatever ended it.
func (o *outbox) release() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.closing, o.flush = true, false
	o.sh.total.Add(-int64(o.live + o.replayBytes))
	o.live, o.replayBytes, o.replayFrames = 0, 0, 0
	clear(o.queue)
	o.queue = o.queue[:0]
}

// liveBytes is the live bytes queued or in flight: what --queue-bytes caps.
func (o *outbox) liveBytes() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.live
}

// closeCause is why the connection is closing; causeNone while it is open.
func (o *outbox) closeCause() closeCause {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.cause
}

// closeFrame is the close frame to send: code 0 means none (the peer is
// gone or the socket is stuck).
func (o *outbox) closeFrame() (code int, why protocol.CloseReason) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.cause.frame(o.closeRetryMs)
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
