package broker

import "time"

// Typing indicators (issue 17): the one ephemeral signal of the contract.
//
// Typing relays "this member's user is typing" to the room's other users,
// on every replica that serves the room: a protocol.Typing frame from the
// member's user, queued to every member whose user is another. It is not
// sequenced, not stored and not replayed; it is at most once (a replica
// may miss one) and it costs nothing to a member that leaves. A room
// relays at most one per user per TypingInterval (the others are
// dropped: coalesced), and none while it has more than
// Settings.PresenceMaxMembers users (count-only rooms, where the member
// list is not shown either). After Leave it does nothing.
//
// Membership embeds Typist, so every Broker implements it; brokertest
// checks it.
type Typist interface {
	Typing()
}

// TypingInterval is the least time between two typing signals of one user
// that a room relays. Clients send one every few seconds while typing and
// show it for a few more (docs/protocol.md, "Typing").
const TypingInterval = 2 * time.Second

// TypingGate decides which typing signals a room relays: at most one per
// user per TypingInterval. It is guarded by its room's lock.
type TypingGate struct {
	last  map[string]time.Time // user id → when the last relayed signal was
	swept time.Time            // when last was last cleared of old entries
}

// Allow reports whether a signal from user at now is relayed, and if so
// records it.
func (g *TypingGate) Allow(user string, now time.Time) bool {
	if g.last == nil {
		g.last = make(map[string]time.Time)
	}
	if at, ok := g.last[user]; ok && now.Sub(at) < TypingInterval {
		return false
	}
	// Entries older than the interval decide nothing: drop them now and
	// then, so the map holds only users typing lately.
	if now.Sub(g.swept) >= TypingInterval {
		for id, at := range g.last {
			if now.Sub(at) >= TypingInterval {
				delete(g.last, id)
			}
		}
		g.swept = now
	}
	g.last[user] = now
	return true
}
