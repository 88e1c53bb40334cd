package cluster

import (
	"time"

	"github.com/chatgate/chatgate/gateway/broker"
	"github.com/chatgate/chatgate/gateway/protocol"
)

// Typing indicators (broker.Typist) cross replicas like presence: an
// ephemeral core NATS message (kindTyping, with the typing user) on the
// room's live subject, published by the outbound queue in order with the
// replica's presence messages, never stored in the stream. Each replica
// relays it to its local members of other users, through the room's
// TypingGate: the sender's replica before publishing, so a coalesced
// signal costs no NATS message, and each receiver again, so a user typing
// on two replicas still reaches a member at most once per interval.

// kindTyping: the user in U is typing in the room (see above).
const kindTyping = "typing"

// Typing implements broker.Typist.
func (ms *membership) Typing() {
	r := ms.r
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed || r.index[ms.m.sub] != ms.m {
		return
	}
	u := ms.m.sub.User()
	if r.relayTypingLocked(u, time.Now()) {
		r.bp.out.push(livePrefix+r.name, "", presenceMsg{R: r.bp.id, K: kindTyping, U: []protocol.User{u}})
	}
}

// onTyping relays another replica's typing signal to the local members.
func (r *room) onTyping(pm presenceMsg) {
	if len(pm.U) != 1 || pm.U[0].ID == "" {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.closed {
		r.relayTypingLocked(pm.U[0], time.Now())
	}
}

// relayTypingLocked queues u's typing frame to every local member of
// another user, unless the room is count-only or the gate coalesces it;
// it reports whether it did. r.mu must be held.
func (r *room) relayTypingLocked(u protocol.User, now time.Time) bool {
	if r.pres.online() > r.bp.cfg.Rooms.PresenceMaxMembers || !r.typing.Allow(u.ID, now) {
		return false
	}
	f := &broker.Frame{Data: protocol.Typing(r.name, u)}
	for _, m := range r.members {
		if m.sub.User().ID != u.ID {
			r.sendLocked(m, f, 0)
		}
	}
	return true
}
