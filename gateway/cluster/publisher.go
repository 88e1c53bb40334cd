package cluster

import (
	"cmp"
	"context"
	"errors"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/chatgate/chatgate/gateway/broker"
	"github.com/chatgate/chatgate/gateway/protocol"
	"github.com/chatgate/chatgate/internal/ctxsleep"
)

// yieldWindow is how long a replica holds new messages of a room after a
// yield request: a few round trips to the NATS server.
const yieldWindow = 5 * time.Millisecond

// publisher stores one room's messages from this replica in the stream,
// one at a time, each expecting the room's last seq. A served room's
// publisher takes the room's position into account; the server API's
// system messages to a room this replica does not serve go through a
// standalone one (r nil, see systemPublisher).
type publisher struct {
	// static after construction
	bp      *Backplane
	name    string
	subject string
	r       *room // nil for a standalone publisher

	mu     sync.Mutex // one local publish at a time per room
	expect uint64     // the subject's last seq as this replica believes; guarded by mu
	stale  bool       // expect must be refreshed from the stream; guarded by mu
	epoch  uint64     // the epoch expect belongs to; guarded by mu
	floor  uint64     // standalone: the room's floor as last read; guarded by mu

	// yieldUntil (unix ns): another replica lost publish races in this
	// room and asked the others to hold new messages until then.
	yieldUntil atomic.Int64
}

// yieldFor holds this replica's next new message of the room for d.
func (p *publisher) yieldFor(d time.Duration) {
	p.yieldUntil.Store(time.Now().Add(d).UnixNano())
}

// Publish stores the message in the stream, waits until this replica has
// delivered it (so the sender's own message is queued to the sender), then
// queues the ack and returns: the broker contract's order (see package
// broker). Nothing is acked unless stored. The wait is bounded by the
// send's budget (PublishTimeout, from the start of Publish), by a change
// of stream and by Close; a send stored but not delivered here within
// them is answered unavailable, like a send whose PubAck was lost.
func (ms *membership) Publish(ctx context.Context, text, ref string) (broker.Published, *protocol.Error) {
	r, bp := ms.r, ms.r.bp
	ctx, cancel := context.WithTimeout(ctx, bp.cfg.PublishTimeout)
	defer cancel()
	r.mu.Lock()
	joined := r.index[ms.m.sub] == ms.m && !r.closed
	n := len(r.members)
	r.mu.Unlock()
	if !joined {
		return broker.Published{}, protocol.NotJoinedError(r.name, ref)
	}
	seq, ep, err := r.pub.publish(ctx, ms.m.sub.User(), text, false)
	if err != nil {
		bp.met.publishErrors.Inc()
		bp.log.Debug("publish failed", "err", err)
		return broker.Published{}, withRef(unavailable("the message was not stored; send it again"), ref)
	}
	if perr := r.ackDelivered(ctx, ms.m, seq, ep, ref); perr != nil {
		return broker.Published{}, perr
	}
	return broker.Published{Seq: seq, Recipients: n}, nil
}

// ownSend is a send of this replica, stored, waiting for this replica to
// deliver it.
type ownSend struct {
	seq  uint64
	at   time.Time     // when the PubAck came
	done chan struct{} // closed once delivered, or when the room moves or closes
}

// ackDelivered waits until this replica has delivered seq (published by m
// in epoch ep) to the room's members, m included, then queues m's ack. A
// message a delivery gap skipped (gone from the stream before this replica
// could deliver it, counted and logged) is acked too: it was stored, and the
// gap is every local member's.
func (r *room) ackDelivered(ctx context.Context, m *member, seq, ep uint64, ref string) *protocol.Error {
	perr := r.settleOwnSend(ctx, seq, ep, true, func(delivered bool) *protocol.Error {
		if r.index[m.sub] != m {
			return protocol.NotJoinedError(r.name, ref)
		}
		if delivered {
			r.sendLocked(m, &broker.Frame{Data: protocol.Ack(ref, r.name, seq)}, 0)
		}
		return nil
	})
	if perr == nil {
		return nil
	}
	return withRef(perr, ref)
}

// systemDelivered waits until this replica has delivered the server API's
// system message seq (published in epoch ep) to the room's members, as a
// member's Publish waits before its ack (the broker contract): what the
// API call does next on this replica, a disconnect say, then comes after
// the message. It returns how many members it was queued to. A room that
// closed meanwhile (its last member left) had nobody left to deliver to:
// the message is stored all the same.
func (r *room) systemDelivered(ctx context.Context, seq, ep uint64) (int, *protocol.Error) {
	var n int
	perr := r.settleOwnSend(ctx, seq, ep, false, func(delivered bool) *protocol.Error {
		if delivered {
			n = len(r.members)
		}
		return nil
	})
	return n, perr
}

// settleOwnSend waits until this replica has delivered seq, a send of its
// own published in epoch ep (awaitDeliveryLocked), and returns how the wait
// ended. With r.mu held: a room that moved to another stream meanwhile
// gets errLostWithStream (stored in a stream the room has left, lost or
// replaced while the PubAck was on its way: it may never be delivered);
// otherwise reached is called with whether the delivery reached seq, to act
// on it, and its error, if any, is returned. Then a delivered send gets
// nil; a room that closed gets shuttingDown when closedFails, nil when
// not; and a send not delivered in time errNotDeliveredInTime. An
// unavailable error is counted in publishErrors.
func (r *room) settleOwnSend(ctx context.Context, seq, ep uint64, closedFails bool, reached func(delivered bool) *protocol.Error) *protocol.Error {
	r.mu.Lock()
	r.awaitDeliveryLocked(ctx, seq, ep)
	var perr *protocol.Error
	if r.epoch != ep {
		perr = errLostWithStream()
	} else if perr = reached(r.lastSeq >= seq); perr == nil {
		switch {
		case r.lastSeq >= seq:
		case r.closed:
			if closedFails {
				perr = shuttingDown()
			}
		default:
			perr = errNotDeliveredInTime()
		}
	}
	r.mu.Unlock()
	if perr != nil && perr.Code == protocol.CodeUnavailable {
		r.bp.met.publishErrors.Inc()
	}
	return perr
}

// awaitDeliveryLocked waits until this replica has delivered seq,
// published in epoch ep, the room moves to another stream or closes, or
// ctx ends. r.mu is held on entry and on return, released while waiting.
func (r *room) awaitDeliveryLocked(ctx context.Context, seq, ep uint64) {
	if r.lastSeq >= seq || r.epoch != ep || r.closed {
		return
	}
	w := &ownSend{seq: seq, at: time.Now(), done: make(chan struct{})}
	i, _ := slices.BinarySearchFunc(r.sends, seq, func(s *ownSend, seq uint64) int { return cmp.Compare(s.seq, seq) })
	r.sends = slices.Insert(r.sends, i, w)
	r.mu.Unlock()
	select {
	case <-w.done:
	case <-ctx.Done():
	}
	r.mu.Lock()
	if i := slices.Index(r.sends, w); i >= 0 {
		r.sends = slices.Delete(r.sends, i, i+1)
	}
}

func errLostWithStream() *protocol.Error {
	return unavailable("the message was lost with the NATS stream before it was delivered; send it again")
}

func errNotDeliveredInTime() *protocol.Error {
	return unavailable("the message was stored but not delivered in time; it may still arrive: look for it before sending it again")
}

// deliveredLocked wakes the sends of this replica that the room's delivery
// has reached (their seq is at or below its position).
func (r *room) deliveredLocked() {
	i := 0
	for ; i < len(r.sends) && r.sends[i].seq <= r.lastSeq; i++ {
		close(r.sends[i].done)
	}
	if i > 0 {
		clear(r.sends[:i])
		r.sends = r.sends[i:]
	}
}

// releaseSendsLocked wakes every waiting send: the room moved to another
// stream or closed.
func (r *room) releaseSendsLocked() int {
	n := len(r.sends)
	for _, w := range r.sends {
		close(w.done)
	}
	clear(r.sends)
	r.sends = r.sends[:0]
	return n
}

func withRef(e *protocol.Error, ref string) *protocol.Error {
	e.Ref = ref
	return e
}

// publish stores one message (a system message, from the server API, when
// system) and returns its stream seq and the room's epoch it was published
// in, within ctx (the send's budget). It expects the subject's last seq to
// be what this replica believes; when another replica got there first, it
// refreshes that from the stream and tries again, a few times.
func (p *publisher) publish(ctx context.Context, from protocol.User, text string, system bool) (uint64, uint64, error) {
	r, bp := p.r, p.bp
	if !bp.Up() {
		return 0, 0, errUnavailable
	}
	start := time.Now()
	ctx, span := bp.tracer.Start(ctx, "chatgate.backplane.publish", trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(attribute.String("messaging.system", "nats"), attribute.String("messaging.operation.type", "send")))
	defer span.End()

	p.mu.Lock()
	defer p.mu.Unlock()
	// Fairness: a replica with a queue of local sends would win every race
	// (its next publish leaves as soon as its PubAck arrives, before a
	// competing replica can retry) and could starve the others. A replica
	// that keeps losing asks the others to yield (see below); honour such
	// a request before a new message (not before a retry).
	if yield := time.Until(time.Unix(0, p.yieldUntil.Load())); yield > 0 {
		ctxsleep.Sleep(ctx, yield)
	}
	var known, floor, ep uint64
	if r != nil {
		r.mu.Lock()
		known, floor, ep = r.lastMsg, r.floor, r.epoch
		r.mu.Unlock()
	} else {
		floor, ep = p.floor, bp.epoch.Load()
	}
	if ep != p.epoch {
		// A new stream: what we believed of the old one is void.
		p.epoch, p.expect, p.stale = ep, 0, true
	}
	if known > p.expect {
		p.expect, p.stale = known, false
	}
	ts := strconv.FormatInt(start.UnixMilli(), 10)
	var err error
	for try := 0; try < maxPublishTries; try++ {
		if p.stale {
			if p.expect, floor, err = p.lastOfSubject(ctx, floor); err != nil {
				break
			}
			p.stale, p.floor = false, floor
		}
		msg := nats.NewMsg(p.subject)
		if system {
			msg.Header.Set(hdrSystem, "1")
		}
		msg.Header.Set(hdrFrom, url.PathEscape(from.ID))
		msg.Header.Set(hdrName, url.PathEscape(from.Name))
		msg.Header.Set(hdrTS, ts)
		prev := p.expect
		if prev == 0 {
			// Expecting an empty subject: this message starts the chain.
			prev = floor
			msg.Header.Set(hdrStart, "1")
		}
		msg.Header.Set(hdrPrev, strconv.FormatUint(prev, 10))
		bp.cfg.Prop.Inject(ctx, headerCarrier(msg.Header))
		msg.Data = []byte(text)
		var ack *jetstream.PubAck
		ack, err = bp.js.PublishMsg(ctx, msg, jetstream.WithExpectLastSequencePerSubject(p.expect), jetstream.WithRetryAttempts(0))
		if err == nil {
			p.expect = ack.Sequence
			bp.met.publishDuration.Observe(time.Since(start).Seconds())
			span.SetAttributes(attribute.Int64("chatgate.seq", int64(ack.Sequence)), attribute.Int("chatgate.publish_tries", try+1))
			return ack.Sequence, ep, nil
		}
		last, ok := wrongLastSeq(err)
		if !ok {
			break
		}
		// Another replica stored a message first. The error names the
		// subject's last seq; take it (or read it when it cannot be
		// parsed) and try again at once (the winner pauses, see above);
		// after a few losses, with a small jittered pause.
		if last > 0 {
			p.expect = last
		} else {
			p.stale = true
		}
		span.AddEvent("wrong last sequence")
		bp.met.conflicts.Inc()
		if try%4 == 1 {
			bp.out.push(yieldPrefix+p.name, "", presenceMsg{R: bp.id, K: kindYield})
		}
		if try >= 4 && !ctxsleep.Sleep(ctx, backoff(try-4, 50*time.Microsecond, time.Millisecond)) {
			break
		}
	}
	p.stale = true
	span.SetStatus(codes.Error, err.Error())
	return 0, 0, err
}

// lastOfSubject reads the subject's last seq from the stream (0 when it
// holds none, with a fresh floor).
func (p *publisher) lastOfSubject(ctx context.Context, floor uint64) (uint64, uint64, error) {
	s := p.bp.streamHandle()
	if s == nil {
		return 0, floor, errUnavailable
	}
	last, _, floor, err := standing(ctx, s, p.subject, floor)
	return last, floor, err
}

// wrongLastSeq reports whether err is JetStream's "wrong last sequence",
// and the subject's actual last seq when the description gives it (0
// otherwise, or when the subject is empty).
func wrongLastSeq(err error) (uint64, bool) {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) || (apiErr.ErrorCode != jetstream.JSErrCodeStreamWrongLastSequence &&
		apiErr.ErrorCode != jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
		return 0, false
	}
	_, num, _ := strings.Cut(apiErr.Description, "wrong last sequence: ")
	last, _ := strconv.ParseUint(strings.TrimSpace(num), 10, 64)
	return last, true
}
