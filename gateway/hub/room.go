package hub

import (
	"context"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/chatgate/chatgate/gateway/broker"
	"github.com/chatgate/chatgate/gateway/protocol"
)

// room is one chat room. Every field but the static ones is guarded by mu.
type room struct {
	// static after construction
	name string
	hub  *Hub

	mu sync.Mutex
	// closed is set once the room is removed from its shard; a joiner that
	// finds it set looks the room up again.
	closed bool
	seq    uint64
	hist   history
	// members is the fan-out list; index maps each member to its slot so a
	// leave is O(1) (swap with the last).
	members []broker.Subscriber
	index   map[broker.Subscriber]int
	// users counts each user's connections in the room: presence is per
	// user, so a user with several tabs is online once.
	users map[string]*userCount
	// presence holds the presence changes since the last presence frame,
	// which presenceTmr sends.
	presence    broker.PresenceChanges
	typing      broker.TypingGate // typing.go
	presenceTmr broker.PresenceTimer
	expiryTmr   *time.Timer
	expiryArmed bool
	emptySince  time.Time
}

type userCount struct {
	user  protocol.User
	conns int
}

func newRoom(h *Hub, name string) *room {
	base := h.cfg.SeqBase(time.Now())
	r := &room{
		name:       name,
		hub:        h,
		hist:       newHistory(h.cfg.History, base),
		index:      make(map[broker.Subscriber]int),
		users:      make(map[string]*userCount),
		emptySince: time.Now(),
		seq:        base,
	}
	r.presenceTmr.Init(&r.mu, &h.timers, h.cfg.PresenceInterval, func() bool { return r.closed }, r.flushPresenceLocked)
	return r
}

// join adds sub and queues joined + replay. ok is false if the room was
// retired and the caller must look it up again. A user the room is banned
// for is refused here, under the room's lock, so a join racing a ban is
// either refused or removed by it.
func (r *room) join(sub broker.Subscriber, since *uint64) (m broker.Membership, perr *protocol.Error, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, nil, false
	}
	if perr := r.hub.bans.Refuse(r.name, sub.User().ID, time.Now()); perr != nil {
		return nil, perr, true
	}
	if _, already := r.index[sub]; !already {
		r.addLocked(sub)
	}
	cfg := &r.hub.cfg

	// The joiner sees the membership as it is now. A pending change it
	// has thus seen can no longer cancel out: the next presence frame
	// must list that user by its state then, or this joiner would keep a
	// stale entry.
	online := len(r.users)
	var members []protocol.User
	if online <= cfg.PresenceMaxMembers {
		r.presence.MarkSeen(r.isPresent, sub.User().ID)
		members = make([]protocol.User, 0, online)
		for _, uc := range r.users {
			members = append(members, uc.user)
		}
		broker.SortUsers(members)
	}
	var recovered *bool
	var replay [][]byte
	if since != nil {
		var all bool
		replay, all = r.hist.after(*since, r.seq)
		recovered = &all
	}
	sub.Enqueue(&broker.Frame{Data: protocol.Joined(r.name, r.seq, online, members, recovered)})
	for _, data := range replay {
		sub.Enqueue(&broker.Frame{Data: data, Replay: true})
	}
	if len(replay) > 0 {
		r.hub.obs.HistoryReplayed(len(replay))
	}
	return &membership{r: r, sub: sub}, nil, true
}

func (r *room) addLocked(sub broker.Subscriber) {
	r.index[sub] = len(r.members)
	r.members = append(r.members, sub)
	if r.expiryArmed && r.expiryTmr.Stop() {
		r.expiryArmed = false
		r.hub.timers.Done()
	}
	u := sub.User()
	uc := r.users[u.ID]
	if uc == nil {
		uc = &userCount{user: u}
		r.users[u.ID] = uc
		r.touchLocked(u, false)
	}
	uc.conns++
	r.hub.obs.RoomSize(len(r.members))
}

func (r *room) removeLocked(sub broker.Subscriber) bool {
	i, ok := r.index[sub]
	if !ok {
		return false
	}
	last := len(r.members) - 1
	moved := r.members[last]
	r.members[i] = moved
	r.index[moved] = i
	r.members[last] = nil
	r.members = r.members[:last]
	delete(r.index, sub)

	u := sub.User()
	if uc := r.users[u.ID]; uc != nil {
		uc.conns--
		if uc.conns == 0 {
			delete(r.users, u.ID)
			r.touchLocked(u, true)
		}
	}
	if len(r.members) == 0 {
		r.emptySince = time.Now()
		r.armExpiryLocked()
	}
	return true
}

func (r *room) armExpiryLocked() {
	if r.expiryArmed || r.hub.closed.Load() {
		return
	}
	r.expiryArmed = true
	r.hub.timers.Add(1)
	if r.expiryTmr == nil {
		r.expiryTmr = time.AfterFunc(r.hub.cfg.RoomTTL, func() { r.hub.expire(r) })
	} else {
		r.expiryTmr.Reset(r.hub.cfg.RoomTTL)
	}
}

func (r *room) armPresenceLocked() {
	if !r.hub.closed.Load() {
		r.presenceTmr.ArmLocked()
	}
}

// stopTimersLocked cancels armed timers; a timer already firing finishes on
// its own and sees closed.
func (r *room) stopTimersLocked() {
	r.presenceTmr.StopLocked()
	if r.expiryArmed && r.expiryTmr.Stop() {
		r.expiryArmed = false
		r.hub.timers.Done()
	}
}

// flushPresenceLocked sends the coalesced presence changes as one frame
// to every member (presenceTmr runs it at most once per PresenceInterval).
func (r *room) flushPresenceLocked() {
	f := r.presence.Frame(r.name, r.isPresent, len(r.users), r.hub.cfg.PresenceMaxMembers)
	if f == nil {
		return
	}
	for _, s := range r.members {
		s.Enqueue(f)
	}
	r.hub.obs.PresenceSent(len(r.members))
}

// isPresent reports whether user id is in the room. r.mu must be held.
func (r *room) isPresent(id string) bool {
	_, ok := r.users[id]
	return ok
}

// touchLocked records that u's presence changed; wasPresent is its state
// before this change, kept from the first change in the interval.
func (r *room) touchLocked(u protocol.User, wasPresent bool) {
	r.presence.Touch(u, wasPresent)
	r.armPresenceLocked()
}

// membership implements broker.Membership for the in-process hub.
type membership struct {
	r   *room
	sub broker.Subscriber
}

func (m *membership) Publish(ctx context.Context, text, ref string) (broker.Published, *protocol.Error) {
	p, perr := m.sequence(ctx, text, ref)
	if perr != nil {
		return broker.Published{}, perr
	}
	m.sub.Enqueue(&broker.Frame{Data: protocol.Ack(ref, m.r.name, p.Seq)})
	return p, nil
}

// sequence numbers the message, records it and hands it to every member.
func (m *membership) sequence(ctx context.Context, text, ref string) (broker.Published, *protocol.Error) {
	r := m.r
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.index[m.sub]; !ok || r.closed {
		return broker.Published{}, protocol.NotJoinedError(r.name, ref)
	}
	from := m.sub.User()
	return r.sequenceLocked(ctx, func(seq uint64, ts int64) []byte {
		return protocol.Message(r.name, seq, from, text, ts)
	}), nil
}

// sequenceLocked takes the next seq, encodes the message with encode,
// records it in the history and hands it to every member. r.mu must be
// held.
func (r *room) sequenceLocked(ctx context.Context, encode func(seq uint64, ts int64) []byte) broker.Published {
	now := time.Now()
	r.seq++
	f := &broker.Frame{Data: encode(r.seq, now.UnixMilli()), Accepted: now}
	if sc := trace.SpanContextFromContext(ctx); sc.IsSampled() {
		f.TraceID = sc.TraceID()
	}
	r.hist.push(r.seq, f.Data)
	r.fanoutLocked(f, now)
	return broker.Published{Seq: r.seq, Recipients: len(r.members)}
}

// fanoutLocked hands f to every member. It allocates nothing per recipient.
func (r *room) fanoutLocked(f *broker.Frame, start time.Time) {
	for _, s := range r.members {
		s.Enqueue(f)
	}
	r.hub.obs.Fanout(len(r.members), time.Since(start))
}

func (m *membership) Leave() {
	m.r.mu.Lock()
	defer m.r.mu.Unlock()
	m.r.removeLocked(m.sub)
}
