package hub

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/chatgate/chatgate/gateway/broker"
	"github.com/chatgate/chatgate/gateway/protocol"
)

// The server API's side of the hub (broker.Operator). In one process
// "every replica" is this hub: a publish is sequenced like a member's, a
// ban and a disconnect take effect here, and presence, rooms and history
// are read under the rooms' locks.

var _ broker.Operator = (*Hub)(nil)

// PublishSystem implements broker.Operator.
func (h *Hub) PublishSystem(ctx context.Context, name, sender, text string) (broker.Published, *protocol.Error) {
	var p broker.Published
	perr := h.inRoom(name, func(r *room) (ok bool) {
		p, ok = r.publishSystem(ctx, sender, text)
		return ok
	})
	return p, perr
}

// publishSystem sequences a system message; ok is false if the room was
// retired and the caller must look it up again.
func (r *room) publishSystem(ctx context.Context, sender, text string) (p broker.Published, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return p, false
	}
	p = r.sequenceLocked(ctx, func(seq uint64, ts int64) []byte {
		return protocol.SystemMessage(r.name, seq, sender, text, ts)
	})
	if len(r.members) == 0 {
		// A room made for this message has nobody to leave it: it keeps
		// its history for --room-ttl, like a room its last member left.
		r.armExpiryLocked()
	}
	return p, true
}

// lookup returns the room called name if the hub holds it.
func (h *Hub) lookup(name string) *room {
	s := h.shardFor(name)
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rooms[name]
}

// Presence implements broker.Operator.
func (h *Hub) Presence(_ context.Context, name string) (broker.RoomPresence, *protocol.Error) {
	if !protocol.ValidRoom(name) {
		return broker.RoomPresence{}, protocol.InvalidRoomError()
	}
	var p broker.RoomPresence
	r := h.lookup(name)
	if r == nil {
		return p, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return p, nil
	}
	p.Online, p.Connections = len(r.users), len(r.members)
	p.Users = make([]broker.PresentUser, 0, len(r.users))
	for _, uc := range r.users {
		p.Users = append(p.Users, broker.PresentUser{User: uc.user, Connections: uc.conns})
	}
	slices.SortFunc(p.Users, func(a, b broker.PresentUser) int { return strings.Compare(a.ID, b.ID) })
	return p, nil
}

// ActiveRooms implements broker.Operator. It visits every room the hub holds.
func (h *Hub) ActiveRooms(_ context.Context, after string, limit int) ([]broker.RoomCount, bool, *protocol.Error) {
	var out []broker.RoomCount
	for i := range h.shards {
		s := &h.shards[i]
		s.mu.Lock()
		for name, r := range s.rooms {
			if name <= after {
				continue
			}
			r.mu.Lock()
			if len(r.members) > 0 && !r.closed {
				out = append(out, broker.RoomCount{Room: name, Online: len(r.users), Connections: len(r.members)})
			}
			r.mu.Unlock()
		}
		s.mu.Unlock()
	}
	slices.SortFunc(out, func(a, b broker.RoomCount) int { return strings.Compare(a.Room, b.Room) })
	if limit >= 0 && len(out) > limit {
		return out[:limit], true, nil
	}
	return out, false, nil
}

// History implements broker.Operator.
func (h *Hub) History(_ context.Context, name string, since *uint64, limit int) (broker.History, *protocol.Error) {
	if !protocol.ValidRoom(name) {
		return broker.History{}, protocol.InvalidRoomError()
	}
	var out broker.History
	r := h.lookup(name)
	if r == nil {
		return out, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return out, nil
	}
	if r.hist.n > 0 {
		out.Seq = r.seq // the newest message's
	}
	if since == nil {
		out.Messages, out.Truncated = r.hist.latest(limit)
		return out, nil
	}
	msgs, complete := r.hist.after(*since, r.seq)
	out.Recovered = complete
	if len(msgs) > limit {
		msgs, out.Truncated = msgs[:limit], true
	}
	out.Messages = msgs
	return out, nil
}

// Ban implements broker.Operator.
func (h *Hub) Ban(_ context.Context, name, user string, d time.Duration) *protocol.Error {
	if !protocol.ValidRoom(name) {
		return protocol.InvalidRoomError()
	}
	if h.closed.Load() {
		return protocol.ShuttingDownError()
	}
	now := time.Now()
	var until time.Time
	if d > 0 {
		until = now.Add(min(d, broker.MaxBan))
	}
	if !h.bans.Apply(broker.Ban{Room: name, User: user, Until: until}, now) {
		return nil // lifted
	}
	// Set before the sweep: a join that takes the room's lock after it
	// sees the ban, one that took it before is swept out here.
	if r := h.lookup(name); r != nil {
		r.mu.Lock()
		r.removeUserLocked(user)
		r.mu.Unlock()
	}
	return nil
}

// removeUserLocked removes every connection of user from the room, each
// told with left (reason banned). r.mu must be held.
func (r *room) removeUserLocked(user string) {
	var gone []broker.Subscriber
	for _, s := range r.members {
		if s.User().ID == user {
			gone = append(gone, s)
		}
	}
	f := &broker.Frame{Data: protocol.Removed(r.name, protocol.LeftReasonBanned)}
	for _, s := range gone {
		r.removeLocked(s)
		s.Enqueue(f)
	}
}

// Disconnect implements broker.Operator: in one process the handler is the
// only one.
func (h *Hub) Disconnect(_ context.Context, t broker.Target) (int, *protocol.Error) {
	if f := h.disconnect.Load(); f != nil {
		return (*f)(t), nil
	}
	return 0, nil
}

// HandleDisconnects implements broker.Operator.
func (h *Hub) HandleDisconnects(f func(broker.Target) int) { h.disconnect.Store(&f) }
