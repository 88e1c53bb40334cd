package cluster

import (
	"context"
	"errors"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/chatgate/chatgate/gateway/hub"
	"github.com/chatgate/chatgate/gateway/protocol"
)

// Message headers. Values are URL path-escaped where they carry user
// input, so no byte of a name can break a header line.
const (
	hdrFrom = "Chatgate-From" // sender's user id
	hdrName = "Chatgate-Name" // sender's display name
	hdrTS   = "Chatgate-Ts"   // accepted at, unix ms
	hdrPrev = "Chatgate-Prev" // the subject's previous message seq (see recovered)
)

// room is this replica's part of one chat room: its local members, its
// delivery consumer and its view of presence. Fields under mu are marked.
type room struct {
	// static after construction
	bp      *Backplane
	name    string
	subject string
	ready   chan struct{} // closed once setup has finished
	// setupErr is written before ready is closed and only read after.
	setupErr error

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
	// empty: the stream's first seq − 1 at setup (or where a new stream
	// starts, after a move). No earlier message of the room is above it
	// (the stream only loses its oldest messages), and any message of the
	// room at or below it may be gone.
	floor   uint64
	members []*member
	index   map[hub.Subscriber]*member
	// local counts this replica's connections per user; remote holds
	// every other replica's users; present is the union with a count of
	// the sources (this replica + each replica) listing each user.
	local   map[string]*userCount
	remote  map[string]*replicaView
	present map[string]*presentUser
	// presence coalescing, as in the in-process hub
	presence    hub.PresenceChanges
	presenceTmr *time.Timer
	// acks waits for this replica to deliver a published message before
	// the sender's ack is queued; in seq order.
	acks    []pendingAck
	pending uint64 // messages still pending on the consumer (lag)
	// yieldUntil: another replica lost publish races in this room and
	// asked the others to hold new messages until then.
	yieldUntil time.Time

	// publishing: one local publish at a time per room
	pubMu    sync.Mutex
	expect   uint64 // the subject's last seq as this replica believes; guarded by pubMu
	stale    bool   // expect must be refreshed from the stream; guarded by pubMu
	pubEpoch uint64 // the epoch expect belongs to; guarded by pubMu

	// delivery pump
	pumpMu sync.Mutex
	iter   jetstream.MessagesContext // guarded by pumpMu
	iterEp uint64                    // the epoch iter reads in; guarded by pumpMu
	cons   jetstream.Consumer        // the pump's ordered consumer; guarded by pumpMu
	stop   chan struct{}             // closed on teardown
	psub   *nats.Subscription        // presence subscription; set in setup
}

type member struct {
	sub       hub.Subscriber
	buffering bool       // joining with since: live frames wait in buf
	buf       []bufFrame // guarded by the room's mu
	// skipTo: the member already has the room's messages up to this seq
	// (it joined with a since this replica had not reached yet); guarded
	// by the room's mu.
	skipTo uint64
}

type bufFrame struct {
	f   *hub.Frame
	seq uint64 // 0 for frames that are not messages
}

type userCount struct {
	user  protocol.User
	conns int
}

type presentUser struct {
	user protocol.User
	refs int // this replica (if it has the user) + each replica listing it
}

type pendingAck struct {
	seq  uint64
	mem  *member
	ref  string
	data []byte
}

func newRoom(bp *Backplane, name string) *room {
	return &room{
		bp:      bp,
		name:    name,
		subject: roomPrefix + name,
		ready:   make(chan struct{}),
		index:   make(map[hub.Subscriber]*member),
		local:   make(map[string]*userCount),
		remote:  make(map[string]*replicaView),
		present: make(map[string]*presentUser),
		stop:    make(chan struct{}),
	}
}

// setup learns where the room's messages stand, subscribes to its
// presence, starts the delivery consumer and gathers the other replicas'
// members. It runs before any member is added, outside every lock.
func (r *room) setup() error {
	bp := r.bp
	if !bp.Up() {
		return errUnavailable
	}
	s := bp.streamHandle()
	ep := bp.epoch.Load()
	ctx, cancel := context.WithTimeout(context.Background(), bp.cfg.PublishTimeout)
	defer cancel()
	// Stream state first, then the subject: a message stored in between
	// has a seq above the stream's last, so starting after either misses
	// nothing.
	info, err := s.Info(ctx)
	if err != nil {
		return err
	}
	start := info.State.LastSeq
	floor := uint64(0)
	if info.State.FirstSeq > 0 {
		floor = info.State.FirstSeq - 1
	}
	lastMsg := uint64(0)
	last, err := s.GetLastMsgForSubject(ctx, r.subject)
	switch {
	case err == nil:
		start, lastMsg = last.Sequence, last.Sequence
	case errors.Is(err, jetstream.ErrMsgNotFound):
	default:
		return err
	}
	if bp.epoch.Load() != ep {
		return errUnavailable // the stream changed under the setup
	}
	r.mu.Lock()
	r.epoch, r.lastSeq, r.lastMsg, r.floor = ep, start, lastMsg, floor
	r.mu.Unlock()
	if r.psub, err = bp.nc.Subscribe(presencePrefix+r.name, r.onPresence); err != nil {
		return err
	}
	cons, err := r.newConsumer(ctx, start+1)
	if err != nil {
		return err
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(256))
	if err != nil {
		r.deleteConsumer(cons)
		return err
	}
	r.pumpMu.Lock()
	r.iter, r.iterEp, r.cons = it, ep, cons
	r.pumpMu.Unlock()
	bp.wg.Add(1)
	go r.pump()
	bp.syncPresence(r)
	return nil
}

func (r *room) newConsumer(ctx context.Context, from uint64) (jetstream.Consumer, error) {
	return r.bp.js.OrderedConsumer(ctx, r.bp.cfg.Stream, jetstream.OrderedConsumerConfig{
		FilterSubjects:    []string{r.subject},
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       max(from, 1),
		InactiveThreshold: 30 * time.Second,
		// One attempt inside the library; the pump owns retries, from its
		// own cursor.
		MaxResetAttempts: 1,
	})
}

func consumerName(c jetstream.Consumer) string {
	if info := c.CachedInfo(); info != nil {
		return info.Name
	}
	return ""
}

// deleteConsumer removes a server-side consumer in the background (it
// would otherwise linger until its inactivity threshold).
func (r *room) deleteConsumer(c jetstream.Consumer) { r.bp.deleteConsumer(consumerName(c)) }

func (bp *Backplane) deleteConsumer(name string) {
	if name == "" || bp.killed.Load() || !bp.nc.IsConnected() {
		return
	}
	bp.wg.Add(1)
	go func() {
		defer bp.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = bp.js.DeleteConsumer(ctx, bp.cfg.Stream, name)
	}()
}

// pump delivers the room's messages until teardown. Whatever goes wrong
// with the consumer, it starts a new one from just after the last message
// delivered, with backoff, once the backplane is up: a consumer error never
// wedges the room. A move to a new stream (moveTo) stops the consumer, so
// the next one starts on the new stream.
func (r *room) pump() {
	bp := r.bp
	defer bp.wg.Done()
	for attempt := 0; ; {
		r.pumpMu.Lock()
		it, ep := r.iter, r.iterEp
		r.pumpMu.Unlock()
		if it != nil {
			for {
				msg, err := it.Next()
				if err != nil {
					if !r.isStopped() {
						bp.log.Debug("room consumer ended; restarting it", "err", err)
					}
					break
				}
				attempt = 0
				if !r.deliver(msg, ep) {
					break // from a stream or connection not checked: start over
				}
			}
			it.Stop()
			r.pumpMu.Lock()
			cons := r.cons
			r.iter, r.cons = nil, nil
			r.pumpMu.Unlock()
			if cons != nil {
				r.deleteConsumer(cons)
			}
		}
		if r.isStopped() {
			return
		}
		select {
		case <-r.stop:
			return
		case <-time.After(backoff(attempt, 50*time.Millisecond, 2*time.Second)):
		}
		attempt++
		if !bp.Up() {
			continue
		}
		r.mu.Lock()
		from, ep := r.lastSeq+1, r.epoch
		r.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), bp.cfg.PublishTimeout)
		cons, err := r.newConsumer(ctx, from)
		cancel()
		if err != nil {
			bp.log.Debug("cannot restart room consumer", "err", err)
			continue
		}
		it, err = cons.Messages(jetstream.PullMaxMessages(256))
		if err != nil {
			r.deleteConsumer(cons)
			continue
		}
		r.pumpMu.Lock()
		if r.isStopped() {
			r.pumpMu.Unlock()
			it.Stop()
			r.deleteConsumer(cons)
			return
		}
		r.iter, r.iterEp, r.cons = it, ep, cons
		r.pumpMu.Unlock()
	}
}

// stopPump ends the pump's current consumer; the pump starts a new one.
func (r *room) stopPump() {
	r.pumpMu.Lock()
	if r.iter != nil {
		r.iter.Stop()
	}
	r.pumpMu.Unlock()
}

func (r *room) isStopped() bool {
	select {
	case <-r.stop:
		return true
	default:
		return false
	}
}

// stored is a message read from the stream.
type stored struct {
	seq  uint64
	prev uint64
	hasP bool // the message carries Chatgate-Prev
	data []byte
	hdr  nats.Header
}

func decode(room string, seq uint64, h nats.Header, text []byte) stored {
	id, _ := url.PathUnescape(h.Get(hdrFrom))
	name, _ := url.PathUnescape(h.Get(hdrName))
	ts, _ := strconv.ParseInt(h.Get(hdrTS), 10, 64)
	st := stored{seq: seq, hdr: h}
	if p := h.Get(hdrPrev); p != "" {
		if v, err := strconv.ParseUint(p, 10, 64); err == nil {
			st.prev, st.hasP = v, true
		}
	}
	st.data = protocol.Message(room, seq, protocol.User{ID: id, Name: name}, string(text), ts)
	return st
}

// deliver hands one live message, read by a consumer of epoch ep, to every
// local member in stream order. It reports false, delivering nothing, when
// the message may come from a stream this replica has not checked: one of
// another epoch, or one read before the stream was checked on this
// connection; the pump then starts over from the room's position.
func (r *room) deliver(msg jetstream.Msg, ep uint64) bool {
	bp := r.bp
	now := time.Now()
	if bp.checked.Load() == 0 {
		return false // disconnected since the last check (cheap: no lock)
	}
	meta, err := msg.Metadata()
	if err != nil {
		return true
	}
	st := decode(r.name, meta.Sequence.Stream, msg.Headers(), msg.Data())
	f := &hub.Frame{Data: st.data, Accepted: now}
	ctx := bp.cfg.Prop.Extract(context.Background(), headerCarrier(st.hdr))
	var span trace.Span
	if sc := trace.SpanContextFromContext(ctx); sc.IsSampled() {
		f.TraceID = sc.TraceID()
		_, span = bp.tracer.Start(ctx, "chatgate.backplane.deliver", trace.WithSpanKind(trace.SpanKindConsumer),
			trace.WithAttributes(attribute.String("messaging.system", "nats"), attribute.String("messaging.operation.type", "process")))
	}

	r.mu.Lock()
	if r.closed || ep != r.epoch || st.seq <= r.lastSeq {
		moved := !r.closed && ep != r.epoch
		r.mu.Unlock() // torn down, moved to another stream, or a duplicate
		if span != nil {
			span.End()
		}
		return !moved
	}
	if st.hasP && st.prev > r.lastMsg && r.lastMsg != 0 {
		// Messages between what we delivered and this one are gone from
		// the stream (the consumer lagged more than --history behind, or
		// they aged out): members get a gap. Count it; nothing can fill it.
		bp.met.gaps.Inc()
		bp.log.Warn("room delivery gap: messages were removed from the stream before this replica delivered them", "after", r.lastMsg, "next", st.seq)
	}
	r.lastSeq, r.lastMsg = st.seq, st.seq
	bp.sawSeq(st.seq)
	r.pending = meta.NumPending
	for _, m := range r.members {
		r.sendLocked(m, f, st.seq)
	}
	n := len(r.members)
	// Acks of this replica's sends that are now delivered here.
	i := 0
	for ; i < len(r.acks) && r.acks[i].seq <= st.seq; i++ {
		a := r.acks[i]
		if r.index[a.mem.sub] == a.mem {
			r.sendLocked(a.mem, &hub.Frame{Data: a.data}, 0)
		}
	}
	if i > 0 {
		clear(r.acks[:i])
		r.acks = r.acks[i:]
	}
	r.mu.Unlock()
	bp.obs.Fanout(n, time.Since(now))
	if span != nil {
		span.SetAttributes(attribute.Int("chatgate.recipients", n))
		span.End()
	}
	return true
}

// moveTo moves the room onto a new stream (epoch ep) whose messages start
// after pos; above says no position of the old stream lies above pos. The
// messages the room held in the old stream are gone: that is one gap,
// counted and logged, and sends whose ack waited for their delivery are
// answered unavailable. Delivery restarts on the new stream. ok is false
// when the room was torn down or already moved.
func (r *room) moveTo(ep, pos uint64, above bool) (gap bool, unacked int, ok bool) {
	bp := r.bp
	r.mu.Lock()
	if r.closed || r.epoch == ep {
		r.mu.Unlock()
		return false, 0, false
	}
	onNew := above && r.lastSeq > pos // already delivering from the new stream
	gap = !onNew && (r.lastMsg > r.floor || len(r.acks) > 0)
	lastMsg := r.lastMsg
	r.epoch = ep
	if !onNew {
		r.lastSeq, r.lastMsg = pos, 0
	}
	r.floor = pos
	for _, m := range r.members {
		m.skipTo = 0 // positions of the old stream
	}
	unacked = len(r.acks)
	for _, a := range r.acks {
		if r.index[a.mem.sub] == a.mem {
			e := unavailable("the message was lost with the NATS stream before it was delivered; send it again")
			e.Ref = a.ref
			r.sendLocked(a.mem, &hub.Frame{Data: protocol.ErrorEnvelope(e)}, 0)
		}
	}
	clear(r.acks)
	r.acks = r.acks[:0]
	r.mu.Unlock()
	if gap {
		bp.met.gaps.Inc()
		bp.log.Warn(msgHistoryLost, "room", r.name, "last_delivered", lastMsg, "new_stream_after", pos, "unacked_sends", unacked)
	}
	r.stopPump()
	return gap, unacked, true
}

// sendLocked queues f to m, or holds it while m is joining with since.
func (r *room) sendLocked(m *member, f *hub.Frame, seq uint64) {
	if seq != 0 && seq <= m.skipTo {
		return // the member had it before it joined here
	}
	if m.buffering {
		m.buf = append(m.buf, bufFrame{f: f, seq: seq})
		return
	}
	m.sub.Enqueue(f)
}

// join adds sub and queues joined (+ the replay after since). ok is false
// when the room was torn down and the caller must look it up again.
func (r *room) join(sub hub.Subscriber, since *uint64) (hub.Membership, bool, *protocol.Error) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil, false, nil
	}
	m, already := r.index[sub]
	if !already {
		m = &member{sub: sub}
		r.addLocked(m)
	}
	joinSeq, lastMsg, floor, ep := r.lastSeq, r.lastMsg, r.floor, r.epoch
	online, members := r.viewLocked(sub.User().ID)
	if since == nil {
		sub.Enqueue(&hub.Frame{Data: protocol.Joined(r.name, joinSeq, online, members, nil)})
		r.mu.Unlock()
		return &membership{r: r, m: m}, true, nil
	}
	m.buffering = true
	r.mu.Unlock()

	var err error
	ahead := false
	if *since > joinSeq {
		// A position this replica has not delivered up to: the client comes
		// from a replica further along, or from a quiet room's joined.seq
		// there. If the stream has handed it out, the client holds every
		// message of the room up to it: join at since, replay nothing, and
		// skip the room's messages up to since that arrive here later.
		ahead, err = r.handedOut(*since)
		if ahead {
			joinSeq = *since
		}
	}
	var replay []stored
	var recovered bool
	if err == nil {
		replay, recovered, err = r.replay(*since, joinSeq, lastMsg, floor)
	}
	if err != nil {
		r.mu.Lock()
		if already {
			r.releaseLocked(m, 0)
		} else {
			r.removeLocked(m)
		}
		empty := r.emptyLocked()
		r.mu.Unlock()
		if empty {
			r.close()
		}
		r.bp.log.Debug("cannot replay room history", "err", err)
		return nil, true, unavailable("cannot read the room's history now; try again")
	}
	r.mu.Lock()
	switch {
	case r.epoch != ep:
		recovered = false // the room moved to a new stream meanwhile
	case ahead:
		m.skipTo = max(m.skipTo, *since)
	}
	r.mu.Unlock()
	// The member is still buffering, so nothing else of this room reaches
	// sub until release: joined, then the replay, then the held frames.
	sub.Enqueue(&hub.Frame{Data: protocol.Joined(r.name, joinSeq, online, members, &recovered)})
	last := *since
	for _, st := range replay {
		sub.Enqueue(&hub.Frame{Data: st.data, Replay: true})
		last = st.seq
	}
	if len(replay) > 0 {
		r.bp.obs.HistoryReplayed(len(replay))
	}
	r.mu.Lock()
	r.releaseLocked(m, max(last, joinSeq))
	r.mu.Unlock()
	return &membership{r: r, m: m}, true, nil
}

// handedOut reports whether the stream has reached seq (its last seq is at
// or above it).
func (r *room) handedOut(seq uint64) (bool, error) {
	bp := r.bp
	s := bp.streamHandle()
	if s == nil || !bp.Up() {
		return false, errUnavailable
	}
	ctx, cancel := context.WithTimeout(context.Background(), bp.cfg.PublishTimeout)
	defer cancel()
	info, err := s.Info(ctx)
	if err != nil {
		return false, err
	}
	return info.State.LastSeq >= seq, nil
}

// releaseLocked queues what m held (messages after upTo only) and makes it
// live.
func (r *room) releaseLocked(m *member, upTo uint64) {
	for _, b := range m.buf {
		if b.seq == 0 || b.seq > upTo {
			m.sub.Enqueue(b.f)
		}
	}
	m.buf, m.buffering = nil, false
}

// replay reads the room's stored messages in (since, joinSeq] and says
// whether they are every message of the room in that range.
//
// recovered rests on the Chatgate-Prev chain: every stored message names
// the seq of the room's previous message (enforced by the stream, since the
// publish expected exactly that last seq), or, for a message published
// when the room had no stored message, the stream's first seq − 1 then, a
// floor below which every earlier message of the room lies. So the replay
// is complete iff
//   - since ≥ joinSeq: nothing to replay (since == joinSeq) is complete;
//     since > joinSeq is not a position the stream handed out (join moves
//     joinSeq up to a since the stream has reached): false;
//   - no message is held in the range: complete iff the room's newest
//     message known at the join (lastMsg) is ≤ since, otherwise they were
//     removed (aged out or trimmed): false; and since is not below floor
//     (messages of the room below the floor may be gone: a since from a
//     lost stream is below the new stream's floor);
//   - otherwise: the first replayed message's prev ≤ since (nothing of the
//     room lies between since and it), every next one's prev is the one
//     before (nothing missing inside), and the last is lastMsg.
//
// since 0 thus recovers iff the replay starts at the room's very first
// message and the stream was numbered from 1 (one made by an earlier
// chatgate); a stream numbered from the clock has a floor above 0, so
// since 0 is not recovered, as with the in-process hub. A message without
// Chatgate-Prev (not written by chatgate) makes the answer false.
func (r *room) replay(since, joinSeq, lastMsg, floor uint64) ([]stored, bool, error) {
	switch {
	case since > joinSeq:
		return nil, false, nil
	case since == joinSeq:
		return nil, true, nil
	}
	msgs, err := r.fetch(since+1, joinSeq)
	if err != nil {
		return nil, false, err
	}
	if len(msgs) == 0 {
		return nil, lastMsg <= since && floor <= since, nil
	}
	ok := msgs[0].hasP && msgs[0].prev <= since
	for i := 1; ok && i < len(msgs); i++ {
		ok = msgs[i].hasP && msgs[i].prev == msgs[i-1].seq
	}
	ok = ok && msgs[len(msgs)-1].seq == lastMsg
	return msgs, ok, nil
}

// fetch reads the room's stored messages with from ≤ seq ≤ to, oldest
// first, through a short-lived consumer of its own (one pull request
// returns a contiguous run, so it needs no ordering resets), deleted after.
func (r *room) fetch(from, to uint64) ([]stored, error) {
	bp := r.bp
	if !bp.Up() {
		return nil, errUnavailable
	}
	ctx, cancel := context.WithTimeout(context.Background(), bp.cfg.PublishTimeout)
	defer cancel()
	cons, err := r.bp.js.CreateConsumer(ctx, bp.cfg.Stream, jetstream.ConsumerConfig{
		FilterSubject:     r.subject,
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       from,
		AckPolicy:         jetstream.AckNonePolicy,
		InactiveThreshold: 10 * time.Second,
		MemoryStorage:     true,
		Replicas:          1,
	})
	if err != nil {
		return nil, err
	}
	defer r.deleteConsumer(cons)
	var out []stored
	batch := min(bp.cfg.History+1, 1024)
	for {
		b, err := cons.FetchNoWait(batch)
		if err != nil {
			return nil, err
		}
		n := 0
		done := false
		for msg := range b.Messages() {
			n++
			meta, err := msg.Metadata()
			if err != nil {
				continue
			}
			if meta.Sequence.Stream > to {
				done = true
				continue
			}
			out = append(out, decode(r.name, meta.Sequence.Stream, msg.Headers(), msg.Data()))
			if meta.Sequence.Stream == to {
				done = true
			}
		}
		if err := b.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return nil, err
		}
		if done || n < batch {
			return out, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
}

// viewLocked is what a joiner sees: the online count and, in list mode,
// the members. A pending change the joiner thus sees can no longer cancel
// out (see the hub's room.join).
func (r *room) viewLocked(self string) (int, []protocol.User) {
	online := len(r.present)
	if online > r.bp.cfg.PresenceMaxMembers {
		return online, nil
	}
	r.presence.MarkSeen(r.isPresent, self)
	members := make([]protocol.User, 0, online)
	for _, p := range r.present {
		members = append(members, p.user)
	}
	hub.SortUsers(members)
	return online, members
}

func (r *room) addLocked(m *member) {
	r.index[m.sub] = m
	r.members = append(r.members, m)
	u := m.sub.User()
	uc := r.local[u.ID]
	if uc == nil {
		uc = &userCount{user: u}
		r.local[u.ID] = uc
		r.refLocked(u)
		r.bp.out.push(presencePrefix+r.name, "", kindJoin, r.bp.id, []protocol.User{u})
	}
	uc.conns++
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
	if uc := r.local[u.ID]; uc != nil {
		uc.conns--
		if uc.conns == 0 {
			delete(r.local, u.ID)
			r.unrefLocked(u.ID)
			r.bp.out.push(presencePrefix+r.name, "", kindLeave, r.bp.id, []protocol.User{u})
		}
	}
	return true
}

func (r *room) emptyLocked() bool { return len(r.members) == 0 && !r.closed }

// refLocked counts one more source for u.
func (r *room) refLocked(u protocol.User) {
	if p := r.present[u.ID]; p != nil {
		p.refs++
		return
	}
	r.present[u.ID] = &presentUser{user: u, refs: 1}
	r.touchLocked(u, false)
}

// unrefLocked counts one source less for the user id.
func (r *room) unrefLocked(id string) {
	p := r.present[id]
	if p == nil {
		return
	}
	if p.refs--; p.refs == 0 {
		delete(r.present, id)
		r.touchLocked(p.user, true)
	}
}

// touchLocked records that u's presence changed; wasPresent is its state
// before this change, kept from the first change in the interval.
func (r *room) touchLocked(u protocol.User, wasPresent bool) {
	r.presence.Touch(u, wasPresent)
	if r.presenceTmr == nil && !r.closed {
		r.bp.timers.Add(1)
		r.presenceTmr = time.AfterFunc(r.bp.cfg.PresenceInterval, r.flushPresence)
	}
}

// flushPresence sends the coalesced presence changes as one frame to every
// member; at most once per PresenceInterval.
func (r *room) flushPresence() {
	defer r.bp.timers.Done()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.presenceTmr = nil
	if r.closed {
		return
	}
	joined, left, changed := r.presence.Take(r.isPresent, len(r.present) <= r.bp.cfg.PresenceMaxMembers)
	if !changed {
		return
	}
	f := &hub.Frame{Data: protocol.Presence(r.name, joined, left, len(r.present))}
	for _, m := range r.members {
		r.sendLocked(m, f, 0)
	}
	r.bp.obs.PresenceSent(len(r.members))
}

// isPresent reports whether user id is online in the room on any replica.
// r.mu must be held.
func (r *room) isPresent(id string) bool {
	_, ok := r.present[id]
	return ok
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
	if r.presenceTmr != nil && r.presenceTmr.Stop() {
		r.presenceTmr = nil
		r.bp.timers.Done()
	}
	r.bp.out.push(presencePrefix+r.name, "", kindBye, r.bp.id, nil)
	r.mu.Unlock()
	r.bp.dropRoom(r)
	r.bp.obs.RoomClosed()
	r.teardown()
}

// teardown stops the pump and the presence subscription.
func (r *room) teardown() {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	r.pumpMu.Lock()
	select {
	case <-r.stop:
	default:
		close(r.stop)
	}
	if r.iter != nil {
		r.iter.Stop()
	}
	r.pumpMu.Unlock()
	if r.psub != nil {
		_ = r.psub.Unsubscribe()
	}
}

// membership implements hub.Membership.
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

// Publish stores the message in the stream, then queues the ack once this
// replica has delivered it. Nothing is acked unless stored.
func (ms *membership) Publish(ctx context.Context, text, ref string) (hub.Published, *protocol.Error) {
	r, bp := ms.r, ms.r.bp
	r.mu.Lock()
	joined := r.index[ms.m.sub] == ms.m && !r.closed
	n := len(r.members)
	r.mu.Unlock()
	if !joined {
		return hub.Published{}, &protocol.Error{Code: protocol.CodeNotJoined, Message: "not joined to room " + r.name, Ref: ref}
	}
	seq, ep, err := r.publish(ctx, ms.m.sub.User(), text)
	if err != nil {
		bp.met.publishErrors.Inc()
		bp.log.Debug("publish failed", "err", err)
		e := unavailable("the message was not stored; send it again")
		e.Ref = ref
		return hub.Published{}, e
	}
	ack := protocol.Ack(ref, r.name, seq)
	r.mu.Lock()
	moved := r.epoch != ep
	switch {
	case moved || r.index[ms.m.sub] != ms.m:
	case r.lastSeq >= seq:
		r.sendLocked(ms.m, &hub.Frame{Data: ack}, 0)
	default:
		r.acks = append(r.acks, pendingAck{seq: seq, mem: ms.m, ref: ref, data: ack})
		slices.SortStableFunc(r.acks, func(a, b pendingAck) int { return cmpU64(a.seq, b.seq) })
	}
	r.mu.Unlock()
	if moved {
		// Stored in a stream the room has left (lost, or replaced while
		// the PubAck was on its way): it may never be delivered.
		bp.met.publishErrors.Inc()
		e := unavailable("the stream changed while the message was stored; send it again")
		e.Ref = ref
		return hub.Published{}, e
	}
	return hub.Published{Seq: seq, Recipients: n}, nil
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// publish stores one message and returns its stream seq and the room's
// epoch it was published in. It expects the subject's last seq to be what
// this replica believes; when another replica got there first, it
// refreshes that from the stream and tries again, a few times.
func (r *room) publish(ctx context.Context, from protocol.User, text string) (uint64, uint64, error) {
	bp := r.bp
	if !bp.Up() {
		return 0, 0, errUnavailable
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, bp.cfg.PublishTimeout)
	defer cancel()
	ctx, span := bp.tracer.Start(ctx, "chatgate.backplane.publish", trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(attribute.String("messaging.system", "nats"), attribute.String("messaging.operation.type", "send")))
	defer span.End()

	r.pubMu.Lock()
	defer r.pubMu.Unlock()
	// Fairness: a replica with a queue of local sends would win every race
	// (its next publish leaves as soon as its PubAck arrives, before a
	// competing replica can retry) and could starve the others. A replica
	// that keeps losing asks the others to yield (see below); honour such
	// a request before a new message (not before a retry).
	r.mu.Lock()
	known, floor, yield, ep := r.lastMsg, r.floor, time.Until(r.yieldUntil), r.epoch
	r.mu.Unlock()
	if yield > 0 {
		sleepCtx(ctx, yield)
	}
	if ep != r.pubEpoch {
		// A new stream: what we believed of the old one is void.
		r.pubEpoch, r.expect, r.stale = ep, 0, true
	}
	if known > r.expect {
		r.expect, r.stale = known, false
	}
	ts := strconv.FormatInt(start.UnixMilli(), 10)
	var err error
	for try := 0; try < maxPublishTries; try++ {
		if r.stale {
			if r.expect, floor, err = r.lastOfSubject(ctx, floor); err != nil {
				break
			}
			r.stale = false
		}
		msg := nats.NewMsg(r.subject)
		msg.Header.Set(hdrFrom, url.PathEscape(from.ID))
		msg.Header.Set(hdrName, url.PathEscape(from.Name))
		msg.Header.Set(hdrTS, ts)
		prev := r.expect
		if prev == 0 {
			prev = floor
		}
		msg.Header.Set(hdrPrev, strconv.FormatUint(prev, 10))
		bp.cfg.Prop.Inject(ctx, headerCarrier(msg.Header))
		msg.Data = []byte(text)
		var ack *jetstream.PubAck
		ack, err = bp.js.PublishMsg(ctx, msg, jetstream.WithExpectLastSequencePerSubject(r.expect), jetstream.WithRetryAttempts(0))
		if err == nil {
			r.expect = ack.Sequence
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
			r.expect = last
		} else {
			r.stale = true
		}
		span.AddEvent("wrong last sequence")
		bp.met.conflicts.Inc()
		if try%4 == 1 {
			bp.out.push(presencePrefix+r.name, "", kindYield, bp.id, nil)
		}
		if try >= 4 && !sleepCtx(ctx, backoff(try-4, 50*time.Microsecond, time.Millisecond)) {
			break
		}
	}
	r.stale = true
	span.SetStatus(codes.Error, err.Error())
	return 0, 0, err
}

// lastOfSubject reads the subject's last seq from the stream (0 when it
// holds none, with a fresh floor).
func (r *room) lastOfSubject(ctx context.Context, floor uint64) (uint64, uint64, error) {
	s := r.bp.streamHandle()
	if s == nil {
		return 0, floor, errUnavailable
	}
	last, err := s.GetLastMsgForSubject(ctx, r.subject)
	if err == nil {
		return last.Sequence, floor, nil
	}
	if !errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, floor, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, floor, err
	}
	if info.State.FirstSeq > 0 {
		floor = info.State.FirstSeq - 1
	}
	return 0, floor, nil
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

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// headerCarrier carries W3C trace context in NATS headers, keys as given.
type headerCarrier nats.Header

func (c headerCarrier) Get(key string) string { return nats.Header(c).Get(key) }
func (c headerCarrier) Set(key, value string) { nats.Header(c).Set(key, value) }
func (c headerCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}
