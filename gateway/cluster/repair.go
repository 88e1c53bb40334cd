package cluster

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/synadia-io/orbit.go/jetstreamext"
)

// Repair: reading a room's stored messages after its position from the
// stream, with batched Direct Gets (no consumer), and delivering them
// before the live messages held meanwhile. See the package doc for when
// a room repairs, and chain.go for the decisions.

// hdrNumPending, on a batched Direct Get's message, counts the messages
// of the request's subject still stored after it.
const hdrNumPending = "Nats-Num-Pending"

// repairCause says why a room repaired (a metric label).
type repairCause string

const (
	// causeGap: a live message named a message this replica did not get.
	causeGap repairCause = "gap"
	// causeDropped: the NATS client dropped live messages of the room (its
	// dispatcher channel was full: a slow consumer).
	causeDropped repairCause = "dropped"
	// causeResync: the stream was checked after a (re)connect, or the
	// room moved to a new stream; live messages may have been missed.
	causeResync repairCause = "resync"
	// causeAck: a send of this replica, stored, had not come back live
	// within auditAfter.
	causeAck repairCause = "ack"
	// causeHint: another replica's snapshot showed a later message than
	// this replica delivered, still missing here after auditAfter.
	causeHint repairCause = "hint"
)

var repairCauses = []repairCause{causeGap, causeDropped, causeResync, causeAck, causeHint}

const (
	// maxHeld bounds the live messages a room holds while it repairs;
	// past it they are dropped and the repair reads them from the stream.
	maxHeld = 4096
	// repairBatch is how many messages one Direct Get returns at most.
	repairBatch = 256
	// repairWorkers is how many rooms repair at once.
	repairWorkers = 16
	// auditAfter is how long a send's ack, or a later message another
	// replica reported, may wait for the live message before the room
	// repairs (checked every presence tick).
	auditAfter = 250 * time.Millisecond
	// lagPatience is how long a repair keeps asking when the stream's
	// answers lack a message it knows is stored (a follower that has not
	// caught up) before it delivers what it has and counts the rest lost.
	lagPatience = time.Second
)

// repairState is a room's repair bookkeeping; guarded by the room's mu.
type repairState struct {
	active   bool        // live messages are held: setting up, or repairing
	setup    bool        // the room is being set up: no position yet
	queued   bool        // queued, running, or waiting to retry
	parked   bool        // stopped while the backplane was down; the audit requeues it
	again    bool        // asked again while queued: do another pass
	want     uint64      // a seq known to be stored that the repair must reach
	held     []*liveMsg  // live messages received while active, in order
	overflow bool        // held reached maxHeld and live messages were dropped
	started  time.Time   // when the repair was asked
	reached  time.Time   // when a pass first reached the end of the stream's answer
	attempt  int         // failed or waiting passes, for the backoff
	retry    *time.Timer // armed while waiting to retry
	hint     uint64      // a later seq another replica reported
	hintAt   time.Time
}

// onLive takes a live message of the room in the order NATS delivered it.
func (r *room) onLive(lm *liveMsg) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case r.closed:
	case r.rep.active:
		r.holdLocked(lm)
	default:
		switch liveStep(r.lastSeq, lm.seq, lm.last) {
		case stepDeliver:
			r.deliverLocked(&lm.stored, lm.at)
		case stepGap:
			r.bp.met.liveGaps.Inc()
			r.holdLocked(lm)
			r.startRepairLocked(causeGap, 0)
		}
	}
}

func (r *room) holdLocked(lm *liveMsg) {
	if len(r.rep.held) >= maxHeld {
		r.rep.overflow = true
		return
	}
	r.rep.held = append(r.rep.held, lm)
}

func (r *room) dropHeldLocked() {
	clear(r.rep.held)
	r.rep.held, r.rep.overflow = nil, false
}

// resumeLocked ends the setup: the held live messages go through at the
// position setup found, or start a repair.
func (r *room) resumeLocked() {
	if r.rep.queued || r.rep.again {
		r.rep.again = false
		r.queueRepairLocked()
		return
	}
	steps, wait := afterRepair(r.lastSeq, r.heldLinksLocked(), false)
	r.applyHeldLocked(steps)
	if wait {
		r.bp.met.liveGaps.Inc()
		r.startRepairLocked(causeGap, 0)
		return
	}
	r.rep.active = false
	r.dropHeldLocked()
}

// requestRepair asks for a repair of the room.
func (r *room) requestRepair(cause repairCause, want uint64) {
	r.mu.Lock()
	if !r.closed {
		r.startRepairLocked(cause, want)
	}
	r.mu.Unlock()
}

// startRepairLocked starts a repair, or another pass of the one under way.
func (r *room) startRepairLocked(cause repairCause, want uint64) {
	rs := &r.rep
	r.bp.met.repairs[cause].Inc()
	rs.want = max(rs.want, want)
	if !rs.active || rs.started.IsZero() {
		rs.started = time.Now()
	}
	rs.active, rs.parked = true, false
	if rs.queued || rs.setup {
		rs.again = true // setup or the pass under way looks again
		return
	}
	r.queueRepairLocked()
}

func (r *room) queueRepairLocked() {
	r.rep.queued = true
	r.bp.repairs.push(r)
}

// auditLocked runs every presence tick while the backplane is up: a room
// whose repair stopped while it was down repairs now; one with a send's
// ack, or a later message reported by another replica, still waiting for
// the live message after auditAfter repairs to fetch it.
func (r *room) auditLocked(now time.Time) {
	rs := &r.rep
	switch {
	case rs.parked:
		r.startRepairLocked(causeResync, 0)
	case rs.active:
	case len(r.sends) > 0 && now.Sub(r.sends[0].at) >= auditAfter:
		r.startRepairLocked(causeAck, r.sends[len(r.sends)-1].seq)
	case rs.hint > r.lastSeq && now.Sub(rs.hintAt) >= auditAfter:
		r.startRepairLocked(causeHint, rs.hint)
		rs.hint = 0
	}
}

// hintLocked notes that another replica has delivered the room up to seq.
func (r *room) hintLocked(seq uint64, now time.Time) {
	if seq > r.rep.hint {
		r.rep.hint, r.rep.hintAt = seq, now
	}
}

func (r *room) heldLinksLocked() []liveLink {
	links := make([]liveLink, len(r.rep.held))
	for i, h := range r.rep.held {
		links[i] = h.liveLink()
	}
	return links
}

// applyHeldLocked carries out afterRepair's steps on the held messages.
func (r *room) applyHeldLocked(steps []step) {
	for i, st := range steps {
		h := r.rep.held[i]
		switch st {
		case stepLost:
			r.lostLocked(r.lastSeq, h.seq)
			r.deliverLocked(&h.stored, h.at)
		case stepDeliver:
			r.deliverLocked(&h.stored, h.at)
		}
	}
	clear(r.rep.held[:len(steps)])
	r.rep.held = r.rep.held[len(steps):]
}

// lostLocked counts and logs messages of the room between after and next
// that this replica can no longer deliver.
func (r *room) lostLocked(after, next uint64) {
	r.bp.met.gaps.Inc()
	r.bp.log.Warn("room delivery gap: messages were gone from the stream before this replica could deliver them", "room", r.name, "after", after, "next", next)
}

// pass runs one repair pass (on a repair worker): catch up from the
// stream, then release the held live messages, or try again.
func (r *room) pass() {
	bp := r.bp
	err := r.catchUp()
	r.mu.Lock()
	defer r.mu.Unlock()
	rs := &r.rep
	if r.closed {
		rs.queued = false
		return
	}
	now := time.Now()
	switch {
	case err != nil && !bp.Up():
		rs.queued, rs.parked = false, true // the audit requeues it once the backplane is up
		return
	case err != nil:
		bp.log.Debug("room repair failed; retrying", "room", r.name, "err", err)
		r.retryLocked()
		return
	case rs.again || rs.overflow:
		// Asked again, or live messages were dropped meanwhile: read on.
		rs.again = false
		if rs.overflow {
			r.dropHeldLocked()
		}
		bp.repairs.push(r)
		return
	}
	if rs.reached.IsZero() {
		rs.reached = now
	}
	giveUp := now.Sub(rs.reached) >= lagPatience
	steps, wait := afterRepair(r.lastSeq, r.heldLinksLocked(), giveUp)
	r.applyHeldLocked(steps)
	if wait || (rs.want > r.lastSeq && !giveUp) {
		r.retryLocked()
		return
	}
	bp.met.repairDuration.Observe(now.Sub(rs.started).Seconds())
	r.dropHeldLocked()
	*rs = repairState{hint: rs.hint, hintAt: rs.hintAt}
}

// retryLocked queues the room's next pass after a backoff.
func (r *room) retryLocked() {
	rs := &r.rep
	d := backoff(rs.attempt, 2*time.Millisecond, 250*time.Millisecond)
	rs.attempt++
	r.bp.timers.Add(1)
	rs.retry = time.AfterFunc(d, func() {
		defer r.bp.timers.Done()
		r.mu.Lock()
		defer r.mu.Unlock()
		rs.retry = nil
		if !r.closed {
			r.bp.repairs.push(r)
		}
	})
}

// catchUp delivers the room's stored messages after its position, oldest
// first, to the end of what the stream's answers hold.
func (r *room) catchUp() error {
	bp := r.bp
	for {
		if !bp.Up() {
			return errUnavailable
		}
		r.mu.Lock()
		from, ep, closed := r.lastSeq+1, r.epoch, r.closed
		r.mu.Unlock()
		if closed {
			return nil
		}
		page, more, err := bp.readRoom(r.name, from)
		if err != nil {
			return err
		}
		r.mu.Lock()
		if r.closed || r.epoch != ep {
			r.mu.Unlock()
			continue // torn down, or moved: read again from the new position
		}
		now := time.Now()
		for i := range page {
			st := &page[i]
			if st.seq <= r.lastSeq {
				continue
			}
			if storedLoss(r.lastSeq, r.lastMsg, st.link) {
				r.lostLocked(r.lastSeq, st.seq)
			}
			r.deliverLocked(st, now)
			bp.met.repaired.Inc()
		}
		r.mu.Unlock()
		if !more {
			return nil
		}
	}
}

// readRoom reads up to repairBatch of the room's stored messages from seq
// from on, oldest first, with one batched Direct Get; more says the stream
// holds further ones.
func (bp *Backplane) readRoom(name string, from uint64) ([]stored, bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), bp.cfg.PublishTimeout)
	defer cancel()
	it, err := jetstreamext.GetBatch(ctx, bp.js, bp.cfg.Stream, repairBatch,
		jetstreamext.GetBatchSeq(max(from, 1)), jetstreamext.GetBatchSubject(roomPrefix+name))
	if err != nil {
		return nil, false, err
	}
	var out []stored
	pending := uint64(0)
	for m, err := range it {
		if errors.Is(err, jetstreamext.ErrNoMessages) {
			bp.answer()
			return nil, false, nil
		}
		if err != nil {
			return nil, false, err
		}
		out = append(out, decode(name, m.Sequence, m.Header, m.Data))
		pending, _ = strconv.ParseUint(m.Header.Get(hdrNumPending), 10, 64)
	}
	if len(out) == 0 {
		// The batch ends without an end-of-batch mark only when it timed out.
		return nil, false, context.DeadlineExceeded
	}
	bp.answer()
	return out, pending > 0, nil
}

// fetch reads the room's stored messages with from ≤ seq ≤ to, oldest
// first.
func (bp *Backplane) fetch(name string, from, to uint64) ([]stored, error) {
	var out []stored
	for from <= to {
		page, more, err := bp.readRoom(name, from)
		if err != nil {
			return nil, err
		}
		for _, st := range page {
			if st.seq > to {
				return out, nil
			}
			out = append(out, st)
			from = st.seq + 1
		}
		if !more {
			break
		}
	}
	return out, nil
}

// repairQueue hands rooms to the repair workers, each room once at a time
// (a room is pushed only while it is not queued, see repairState.queued).
type repairQueue struct {
	mu     sync.Mutex
	cond   *sync.Cond
	q      []*room // guarded by mu
	closed bool    // guarded by mu
}

func (q *repairQueue) init() { q.cond = sync.NewCond(&q.mu) }

func (q *repairQueue) push(r *room) {
	q.mu.Lock()
	q.q = append(q.q, r)
	q.mu.Unlock()
	q.cond.Signal()
}

// pop waits for a room; nil once closed.
func (q *repairQueue) pop() *room {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.q) == 0 && !q.closed {
		q.cond.Wait()
	}
	if q.closed {
		return nil
	}
	r := q.q[0]
	q.q[0] = nil
	q.q = q.q[1:]
	return r
}

func (q *repairQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.cond.Broadcast()
}

func (bp *Backplane) repairWorker() {
	defer bp.wg.Done()
	for r := bp.repairs.pop(); r != nil; r = bp.repairs.pop() {
		r.pass()
	}
}

// resyncAll repairs every room: after the stream was checked on a new
// connection, live messages published meanwhile never reached this
// replica.
func (bp *Backplane) resyncAll() {
	for _, r := range bp.allRooms() {
		r.requestRepair(causeResync, 0)
	}
}
