package gateway

import (
	"context"
	"sync"
	"time"

	"github.com/chatgate/chatgate/gateway/broker"
	"github.com/chatgate/chatgate/gateway/protocol"
)

// The presence grace (--presence-grace). When a connection whose user can
// come back as the same user (a token, or a guest credential) ends for a
// reason after which it is expected back (the network dropped, the drain
// closed it, it fell behind), its rooms are not left at once: each
// membership is kept ("lingers") for the grace, and left when the grace
// ends or as soon as the same user joins that room again, whichever is
// first. A reconnect within the grace therefore shows no leave and join in
// presence, on this replica or, since presence is per user across
// replicas, on another. A leave request, a close frame from the client (a
// tab closed, a page reloaded or navigating away: the client says it is
// going), a close for misbehaviour and a kick by the server API (the
// backend wants the user gone) leave at once.
//
// A lingering membership's Subscriber is the ended client: its outbox is
// closed, so whatever the broker still queues to it is dropped on the spot
// and costs no queue bytes.

// leaveRooms removes the client from every room once its reader is done:
// at once, or after the presence grace (see above).
func (c *client) leaveRooms() {
	if !c.resumable() || !c.out.closeCause().lingers() {
		c.leaveAll()
		return
	}
	c.rooms.each(func(name string, m broker.Membership) { c.srv.lingering.park(c.user, name, m) })
	c.rooms = nil
}

// lingering holds the memberships kept for the grace.
type lingering struct {
	grace time.Duration // static after construction; 0: never linger

	mu sync.Mutex
	// byKey holds the lingering memberships of each user in each room,
	// oldest first; n counts them; idle is closed (and set to nil) when n
	// drops to 0, for wait; closed is set by releaseAll.
	byKey  map[lingerKey][]*parked
	n      int
	idle   chan struct{}
	closed bool
}

type lingerKey struct{ user, room string }

type parked struct {
	key   lingerKey
	name  string // the user's name when it lingered
	m     broker.Membership
	timer *time.Timer
}

func newLingering(grace time.Duration) *lingering {
	return &lingering{grace: grace, byKey: make(map[lingerKey][]*parked)}
}

// park keeps m, u's membership in room, for the grace; with no grace (or
// once released) it leaves at once.
func (l *lingering) park(u protocol.User, room string, m broker.Membership) {
	l.mu.Lock()
	if l.grace <= 0 || l.closed {
		l.mu.Unlock()
		m.Leave()
		return
	}
	p := &parked{key: lingerKey{u.ID, room}, name: u.Name, m: m}
	l.byKey[p.key] = append(l.byKey[p.key], p)
	if l.n++; l.n == 1 {
		l.idle = make(chan struct{})
	}
	p.timer = time.AfterFunc(l.grace, func() { l.expire(p) })
	l.mu.Unlock()
}

// expire leaves p when its grace is over, unless it has been claimed.
func (l *lingering) expire(p *parked) {
	l.mu.Lock()
	ok := l.removeLocked(p)
	l.mu.Unlock()
	if ok {
		p.m.Leave()
	}
}

// removeLocked takes p out of the set; false if it was no longer there.
func (l *lingering) removeLocked(p *parked) bool {
	list := l.byKey[p.key]
	for i, q := range list {
		if q != p {
			continue
		}
		if len(list) == 1 {
			delete(l.byKey, p.key)
		} else {
			l.byKey[p.key] = append(list[:i:i], list[i+1:]...)
		}
		if l.n--; l.n == 0 {
			close(l.idle)
			l.idle = nil
		}
		return true
	}
	return false
}

// claim is called when u is about to join room: a membership of u's that
// lingers there is left once the join has been made (call the returned
// func then), so u never drops out of presence. If u's name has changed
// meanwhile it is left at once, before the join, so that the room sees
// the new name.
func (l *lingering) claim(u protocol.User, room string) (afterJoin func()) {
	l.mu.Lock()
	list := l.byKey[lingerKey{u.ID, room}]
	if len(list) == 0 {
		l.mu.Unlock()
		return func() {}
	}
	p := list[0]
	l.removeLocked(p)
	l.mu.Unlock()
	p.timer.Stop()
	if p.name != u.Name {
		p.m.Leave()
		return func() {}
	}
	return p.m.Leave
}

// count is how many memberships linger now.
func (l *lingering) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n
}

// wait returns once no membership lingers any more, or ctx ends (then the
// rest are released).
func (l *lingering) wait(ctx context.Context) {
	l.mu.Lock()
	idle := l.idle
	l.mu.Unlock()
	if idle != nil {
		select {
		case <-idle:
		case <-ctx.Done():
		}
	}
	l.releaseAll()
}

// releaseAll leaves every lingering membership now; later ones leave at
// once. The Server calls it before its broker is closed.
func (l *lingering) releaseAll() {
	l.mu.Lock()
	l.closed = true
	var all []*parked
	for _, list := range l.byKey {
		all = append(all, list...)
	}
	clear(l.byKey)
	if l.n > 0 {
		l.n = 0
		close(l.idle)
		l.idle = nil
	}
	l.mu.Unlock()
	for _, p := range all {
		p.timer.Stop()
		p.m.Leave()
	}
}

// endLingering ends the presence grace at the end of a drain, before the
// broker is closed: with a shared broker, after the lingering memberships'
// grace (or at ctx's end), so users reconnecting to another replica show
// no leave and join; otherwise at once.
func (s *Server) endLingering(ctx context.Context) {
	if n := s.lingering.count(); s.shared && n > 0 {
		s.log.Info("draining: memberships linger for the presence grace", "memberships", n, "presence_grace", s.cfg.PresenceGrace.String())
		s.lingering.wait(ctx)
	}
	s.lingering.releaseAll()
}
