package cluster

import (
	"time"

	"github.com/chatgate/chatgate/gateway/broker"
	"github.com/chatgate/chatgate/gateway/protocol"
)

// presenceView is one room's presence across replicas: this replica's
// users with their connection counts, every other replica's users, and
// their union, each user with a count of the sources listing it (this
// replica and each other replica), plus the changes waiting for the next
// presence frame. It is guarded by its room's mu; it does no I/O. Methods
// that change who is present report it (changed), so the room can arm its
// presence frame.
type presenceView struct {
	local   map[string]*userCount   // user id → this replica's connections of it
	remote  map[string]*replicaView // replica id → its users
	present map[string]*presentUser // user id → the union
	changes broker.PresenceChanges
}

type userCount struct {
	user  protocol.User
	conns int
}

type presentUser struct {
	user protocol.User
	refs int // this replica (if it has the user) + each replica listing it
}

// replicaView is what a room knows of another replica's users.
type replicaView struct {
	users    map[string]protocol.User
	version  uint64
	lastSeen time.Time
}

func newPresenceView() presenceView {
	return presenceView{
		local:   make(map[string]*userCount),
		remote:  make(map[string]*replicaView),
		present: make(map[string]*presentUser),
	}
}

// addLocal counts one more local connection of u; first is true when it is
// u's first here (the other replicas must hear of it).
func (v *presenceView) addLocal(u protocol.User) (first, changed bool) {
	uc := v.local[u.ID]
	if uc == nil {
		uc = &userCount{user: u}
		v.local[u.ID] = uc
		first, changed = true, v.ref(u)
	}
	uc.conns++
	return first, changed
}

// removeLocal counts one local connection of u less; last is true when it
// was u's last here.
func (v *presenceView) removeLocal(u protocol.User) (last, changed bool) {
	uc := v.local[u.ID]
	if uc == nil {
		return false, false
	}
	if uc.conns--; uc.conns > 0 {
		return false, false
	}
	delete(v.local, u.ID)
	return true, v.unref(u.ID)
}

// localUsers lists this replica's users of the room.
func (v *presenceView) localUsers() []protocol.User {
	us := make([]protocol.User, 0, len(v.local))
	for _, uc := range v.local {
		us = append(us, uc.user)
	}
	return us
}

// ref counts one more source for u.
func (v *presenceView) ref(u protocol.User) (changed bool) {
	if p := v.present[u.ID]; p != nil {
		p.refs++
		return false
	}
	v.present[u.ID] = &presentUser{user: u, refs: 1}
	v.changes.Touch(u, false)
	return true
}

// unref counts one source less for the user id.
func (v *presenceView) unref(id string) (changed bool) {
	p := v.present[id]
	if p == nil {
		return false
	}
	if p.refs--; p.refs > 0 {
		return false
	}
	delete(v.present, id)
	v.changes.Touch(p.user, true)
	return true
}

// isPresent reports whether user id is online in the room on any replica.
func (v *presenceView) isPresent(id string) bool {
	_, ok := v.present[id]
	return ok
}

// online is how many distinct users the room has over every replica.
func (v *presenceView) online() int { return len(v.present) }

// joinerView is what a joiner of user self sees: the online count and, up
// to maxListed users, the members. A pending change the joiner thus sees
// can no longer cancel out (see the hub's room.join).
func (v *presenceView) joinerView(self string, maxListed int) (int, []protocol.User) {
	online := len(v.present)
	if online > maxListed {
		return online, nil
	}
	v.changes.MarkSeen(v.isPresent, self)
	members := make([]protocol.User, 0, online)
	for _, p := range v.present {
		members = append(members, p.user)
	}
	broker.SortUsers(members)
	return online, members
}

// frame takes the room's next presence frame, nil when nothing changed (see
// broker.PresenceChanges).
func (v *presenceView) frame(room string, maxListed int) *broker.Frame {
	return v.changes.Frame(room, v.isPresent, len(v.present), maxListed)
}

// apply folds another replica's join, leave, snap or bye into the view.
func (v *presenceView) apply(pm presenceMsg, now time.Time) (changed bool) {
	rv := v.remote[pm.R]
	if pm.K == kindBye {
		if rv != nil && pm.V > rv.version {
			changed = v.dropReplica(pm.R)
		}
		return changed
	}
	if pm.K != kindJoin && pm.K != kindLeave && pm.K != kindSnap {
		return false
	}
	if rv == nil {
		rv = &replicaView{users: make(map[string]protocol.User)}
		v.remote[pm.R] = rv
	} else if pm.V <= rv.version {
		return false // older than what we have
	}
	rv.version, rv.lastSeen = pm.V, now
	switch pm.K {
	case kindJoin:
		for _, u := range pm.U {
			if _, ok := rv.users[u.ID]; !ok {
				rv.users[u.ID] = u
				changed = v.ref(u) || changed
			}
		}
	case kindLeave:
		for _, u := range pm.U {
			if _, ok := rv.users[u.ID]; ok {
				delete(rv.users, u.ID)
				changed = v.unref(u.ID) || changed
			}
		}
	case kindSnap:
		next := make(map[string]protocol.User, len(pm.U))
		for _, u := range pm.U {
			next[u.ID] = u
		}
		for id := range rv.users {
			if _, ok := next[id]; !ok {
				delete(rv.users, id)
				changed = v.unref(id) || changed
			}
		}
		for id, u := range next {
			if _, ok := rv.users[id]; !ok {
				rv.users[id] = u
				changed = v.ref(u) || changed
			}
		}
	}
	return changed
}

// dropReplica forgets another replica's users.
func (v *presenceView) dropReplica(id string) (changed bool) {
	rv := v.remote[id]
	if rv == nil {
		return false
	}
	delete(v.remote, id)
	for uid := range rv.users {
		changed = v.unref(uid) || changed
	}
	return changed
}

// expire drops the users of replicas not heard from for limit, counting
// the silence from upSince at the earliest (the backplane was down before
// it, so nobody could be heard); it returns the replicas dropped.
func (v *presenceView) expire(now, upSince time.Time, limit time.Duration) (dropped []string, changed bool) {
	for id, rv := range v.remote {
		if now.Sub(later(rv.lastSeen, upSince)) >= limit {
			dropped = append(dropped, id)
			changed = v.dropReplica(id) || changed
		}
	}
	return dropped, changed
}

// oldest is the age of the oldest information held from another replica.
func (v *presenceView) oldest(now time.Time) time.Duration {
	var d time.Duration
	for _, rv := range v.remote {
		d = max(d, now.Sub(rv.lastSeen))
	}
	return d
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
