package broker

import (
	"slices"
	"strings"

	"github.com/chatgate/chatgate/gateway/protocol"
)

// PresenceChanges coalesces one room's presence changes between presence
// frames; both the in-process hub and the cluster backplane use it. It is
// guarded by its room's lock.
//
// The rules: a joiner sees the membership as it is now, so a pending change
// it has seen can no longer cancel out; the next frame lists every other
// changed user by its state then (present → joined, absent → left), which
// agrees with old members' and joiners' views alike; a change nobody saw
// that returned to its previous state is dropped, unless the user came back
// under another name (a guest who renamed): that one is listed as joined,
// with the new name. Applied as idempotent set operations, the frames bring
// every member to the true membership.
type PresenceChanges struct {
	touched map[string]touch
}

type touch struct {
	user       protocol.User // as of the latest change
	was        protocol.User // as of the first change since the last frame
	wasPresent bool          // at the last presence frame
	seen       bool          // a joiner's member list showed the changed state
}

// Touch records that u's presence changed; wasPresent is its state before
// this change, kept from the first change since the last frame.
func (p *PresenceChanges) Touch(u protocol.User, wasPresent bool) {
	if p.touched == nil {
		p.touched = make(map[string]touch)
	}
	if t, ok := p.touched[u.ID]; ok {
		t.user = u
		p.touched[u.ID] = t
		return
	}
	p.touched[u.ID] = touch{user: u, was: u, wasPresent: wasPresent}
}

// MarkSeen is called when a subscriber of user self joins and is shown the
// current members: every pending change of another user is now seen.
func (p *PresenceChanges) MarkSeen(isPresent func(id string) bool, self string) {
	for id, t := range p.touched {
		if isPresent(id) != t.wasPresent && id != self && !t.seen {
			t.seen = true
			p.touched[id] = t
		}
	}
}

// Take returns the users for the next presence frame, sorted by id, and
// resets. changed is false when nothing needs a frame; joined and left are
// nil when listed is false (count-only rooms) even if changed is true.
func (p *PresenceChanges) Take(isPresent func(id string) bool, listed bool) (joined, left []protocol.User, changed bool) {
	for id, t := range p.touched {
		present := isPresent(id)
		if present == t.wasPresent && !t.seen && (!present || t.user.Name == t.was.Name) {
			continue // came and went (or went and came back as it was) unseen
		}
		changed = true
		if !listed {
			continue
		}
		if present {
			joined = append(joined, t.user)
		} else {
			left = append(left, t.user)
		}
	}
	clear(p.touched)
	SortUsers(joined)
	SortUsers(left)
	return joined, left, changed
}

// SortUsers orders users by id, the order of every member list.
func SortUsers(us []protocol.User) {
	slices.SortFunc(us, func(a, b protocol.User) int { return strings.Compare(a.ID, b.ID) })
}
