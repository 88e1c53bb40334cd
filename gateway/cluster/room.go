package cluster

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/attribute"

	"github.com/chatgate/chatgate/gateway/broker"
	"github.com/chatgate/chatgate/gateway/protocol"
)

// room is this replica's part of one chat room: its local members, its
// delivery position and its view of presence. Publishing has its own lock
// (publisher); everything else is guarded by mu.
type room struct {
	// static after construction
	bp      *Backplane
	name    string
	subject string        // the stream subject: chatgate.room.<name>
	ready   chan struct{} // closed once setup has finished
	slot    int           // its snapshot slot (see snapSlots)
	pub     publisher
	// setupErr and the subscriptions are written before ready is closed
	// and only read after.
	setupErr error
	live     *nats.Subscription

	mu     sync.Mutex
	closed bool // torn down: a joiner must look the room up again
	// epoch is the backplane epoch (stream) the positions below belong
	// to; see Backplane.checkStream and moveTo.
	epoch uint64
	// lastSeq is the seq of the last message delivered to local members,
	// or the starting point when none has been (joined.seq).
	lastSeq uint64
	// lastMsg is the seq of the newest message of the room known here (0
	// when the room had none at setup and none was delivered since).
	lastMsg uint64
	// floor is Chatgate-Prev for a message published when the subject is
	// empty: the stream's first seq − 1 when the room was set up empty (or
	// where a new stream starts, after a move); see chain.go.
	floor   uint64
	members []*member
	index   map[broker.Subscriber]*member
	pres    presenceView
	typing  broker.TypingGate // typing.go
	// presenceTmr sends the coalesced presence changes.
	presenceTmr broker.PresenceTimer
	// sends are this replica's stored sends waiting for their delivery
	// here (Publish queues the ack after it); in seq order.
	sends []*ownSend
	rep   repairState
}

type member struct {
	sub       broker.Subscriber
	buffering bool       // joining with since: live frames wait in buf
	buf       []bufFrame // guarded by the room's mu
	// skipTo: the member already has the room's messages up to this seq
	// (it joined with a since this replica had not reached yet); guarded
	// by the room's mu.
	skipTo uint64
}

type bufFrame struct {
	f   *broker.Frame
	seq uint64 // 0 for frames that are not messages
}

func newRoom(bp *Backplane, name string) *room {
	r := &room{
		bp:      bp,
		name:    name,
		subject: roomPrefix + name,
		ready:   make(chan struct{}),
		slot:    int(fnv32(name) % snapSlots),
		index:   make(map[broker.Subscriber]*member),
		pres:    newPresenceView(),
	}
	r.pub = publisher{bp: bp, name: name, subject: r.subject, r: r}
	r.presenceTmr.Init(&r.mu, &bp.timers, bp.cfg.Rooms.PresenceInterval, func() bool { return r.closed }, r.flushPresenceLocked)
	// Live messages are held until setup knows where the room stands.
	r.rep.active, r.rep.setup = true, true
	return r
}

// setup subscribes to the room's live subject, learns where
// the room's messages stand, and gathers the other replicas' members. It
// runs before any member is added, outside every lock. Subscribing first
// makes every message stored after the position below arrive live; those
// that arrive meanwhile are held, then delivered by the position.
func (r *room) setup() error {
	bp := r.bp
	if !bp.Up() {
		return errUnavailable
	}
	s := bp.streamHandle()
	ep := bp.epoch.Load()
	var err error
	if r.live, err = bp.subscribe(r); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), bp.cfg.PublishTimeout)
	defer cancel()
	lastMsg, pos, floor, err := standing(ctx, s, r.subject, 0)
	if err != nil {
		return err
	}
	bp.answer()
	if bp.epoch.Load() != ep {
		return errUnavailable // the stream changed under the setup
	}
	r.mu.Lock()
	r.epoch, r.lastSeq, r.lastMsg, r.floor = ep, pos, lastMsg, floor
	r.rep.setup = false
	r.resumeLocked()
	r.mu.Unlock()
	bp.syncPresence(r)
	return nil
}

// sendLocked queues f to m, or holds it while m is joining with since.
func (r *room) sendLocked(m *member, f *broker.Frame, seq uint64) {
	if seq != 0 && seq <= m.skipTo {
		return // the member had it before it joined here
	}
	if m.buffering {
		m.buf = append(m.buf, bufFrame{f: f, seq: seq})
		return
	}
	m.sub.Enqueue(f)
}

// deliverLocked hands the room's next message to every local member, then
// wakes the sends of this replica it completes (their Publish queues the
// ack). at is when the message reached this replica.
func (r *room) deliverLocked(st *stored, at time.Time) {
	bp := r.bp
	start := time.Now()
	f, span := bp.frame(st, at)
	r.lastSeq, r.lastMsg = st.seq, st.seq
	bp.sawSeq(st.seq)
	for _, m := range r.members {
		r.sendLocked(m, f, st.seq)
	}
	n := len(r.members)
	r.deliveredLocked()
	bp.obs.Fanout(n, time.Since(start))
	if span != nil {
		span.SetAttributes(attribute.Int("chatgate.recipients", n))
		span.End()
	}
}

// moveTo moves the room onto a new stream (epoch ep) whose messages start
// after pos; above says no position of the old stream lies above pos. The
// messages the room held in the old stream are gone: that is one gap,
// counted and logged, and sends waiting for their delivery are answered
// unavailable. The room then repairs from the new stream. ok is
// false when the room was torn down or already moved.
func (r *room) moveTo(ep, pos uint64, above bool) (gap bool, unacked int, ok bool) {
	bp := r.bp
	r.mu.Lock()
	if r.closed || r.epoch == ep {
		r.mu.Unlock()
		return false, 0, false
	}
	onNew := above && r.lastSeq > pos // already delivering from the new stream
	gap = !onNew && (r.lastMsg > r.floor || len(r.sends) > 0)
	lastMsg := r.lastMsg
	r.epoch = ep
	if !onNew {
		r.lastSeq, r.lastMsg = pos, 0
	}
	r.floor = pos
	for _, m := range r.members {
		m.skipTo = 0 // positions of the old stream
	}
	unacked = r.releaseSendsLocked() // their Publish answers unavailable
	r.dropHeldLocked()
	r.startRepairLocked(causeResync, 0)
	r.mu.Unlock()
	if gap {
		bp.met.gaps.Inc()
		bp.log.Warn(msgHistoryLost, "room", r.name, "last_delivered", lastMsg, "new_stream_after", pos, "unacked_sends", unacked)
	}
	return gap, unacked, true
}

func (r *room) addLocked(m *member) {
	r.index[m.sub] = m
	r.members = append(r.members, m)
	u := m.sub.User()
	first, changed := r.pres.addLocal(u)
	if first {
		r.bp.out.push(livePrefix+r.name, "", presenceMsg{R: r.bp.id, K: kindJoin, U: []protocol.User{u}})
	}
	if changed {
		r.armPresenceLocked()
	}
	r.bp.obs.RoomSize(len(r.members))
}

func (r *room) removeLocked(m *member) bool {
	if r.index[m.sub] != m {
		return false
	}
	delete(r.index, m.sub)
	i := slices.Index(r.members, m)
	last := len(r.members) - 1
	r.members[i] = r.members[last]
	r.members[last] = nil
	r.members = r.members[:last]
	m.buf, m.buffering = nil, false
	u := m.sub.User()
	gone, changed := r.pres.removeLocal(u)
	if gone {
		r.bp.out.push(livePrefix+r.name, "", presenceMsg{R: r.bp.id, K: kindLeave, U: []protocol.User{u}})
	}
	if changed {
		r.armPresenceLocked()
	}
	return true
}

func (r *room) emptyLocked() bool { return len(r.members) == 0 && !r.closed }

// armPresenceLocked schedules the next presence frame, at most one per
// PresenceInterval.
func (r *room) armPresenceLocked() {
	if !r.closed {
		r.presenceTmr.ArmLocked()
	}
}

// flushPresenceLocked sends the coalesced presence changes as one frame
// to every member (presenceTmr runs it at most once per PresenceInterval).
func (r *room) flushPresenceLocked() {
	f := r.pres.frame(r.name, r.bp.cfg.Rooms.PresenceMaxMembers)
	if f == nil {
		return
	}
	for _, m := range r.members {
		r.sendLocked(m, f, 0)
	}
	r.bp.obs.PresenceSent(len(r.members))
}

// close tears the room down if it is still open: it leaves the registry at
// once and its network work finishes in the background.
func (r *room) close() {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.closed = true
	r.stopTimersLocked()
	r.bp.out.push(livePrefix+r.name, "", presenceMsg{R: r.bp.id, K: kindBye})
	r.mu.Unlock()
	r.bp.dropRoom(r)
	r.bp.obs.RoomClosed()
	r.teardown()
}

func (r *room) stopTimersLocked() {
	r.presenceTmr.StopLocked()
	if r.rep.retry != nil && r.rep.retry.Stop() {
		r.rep.retry = nil
		r.bp.timers.Done()
	}
}

// teardown ends the room's subscriptions; a repair in progress stops at
// its next step.
func (r *room) teardown() {
	r.mu.Lock()
	r.closed = true
	r.stopTimersLocked()
	r.dropHeldLocked()
	r.releaseSendsLocked()
	r.mu.Unlock()
	if r.live != nil {
		_ = r.live.Unsubscribe()
	}
}

// membership implements broker.Membership.
type membership struct {
	r *room
	m *member
}

func (ms *membership) Leave() {
	r := ms.r
	r.mu.Lock()
	removed := r.removeLocked(ms.m)
	empty := removed && r.emptyLocked()
	r.mu.Unlock()
	if empty {
		r.close()
	}
}
