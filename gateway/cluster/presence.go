package cluster

import (
	"encoding/json"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/chatgate/chatgate/gateway/protocol"
)

// Presence messages between replicas (core NATS, at most once). Every
// message a replica sends carries a version that grows with each message
// it sends, so a receiver can drop one that arrives after a newer one from
// the same replica (a sync reply travels on another subject than the
// deltas). A lost message is repaired by the next snapshot.
const (
	kindJoin  = "join"  // users arrived on the sender (their first connection there)
	kindLeave = "leave" // users left the sender (their last connection there)
	kindSnap  = "snap"  // every user of the room on the sender
	kindBye   = "bye"   // the sender dropped the room (or is shutting down)
	kindNone  = "none"  // sync reply: the sender does not hold the room
	kindSync  = "sync"  // sync request: send me your users of this room
	kindHello = "hello" // census: the sender is alive
	kindYield = "yield" // the sender keeps losing publish races here: hold new messages briefly
)

// yieldWindow is how long a replica holds new messages of a room after a
// yield request: a few round trips to the NATS server.
const yieldWindow = 5 * time.Millisecond

type presenceMsg struct {
	R string          `json:"r"`           // sender replica id
	V uint64          `json:"v,omitempty"` // sender's message counter
	K string          `json:"k"`
	U []protocol.User `json:"u,omitempty"`
}

// replicaView is what a room knows of another replica's users.
type replicaView struct {
	users    map[string]protocol.User
	version  uint64
	lastSeen time.Time
}

// outbound publishes presence messages in the order they were queued,
// from its own goroutine, so rooms queue them under their lock without
// doing network I/O there and versions follow the publish order.
type outbound struct {
	mu   sync.Mutex
	ver  uint64
	q    []*nats.Msg
	wake chan struct{}
}

func (o *outbound) init() { o.wake = make(chan struct{}, 1) }

// push queues a message; it never blocks.
func (o *outbound) push(subject, reply, kind, id string, users []protocol.User) {
	o.mu.Lock()
	o.ver++
	data, _ := json.Marshal(presenceMsg{R: id, V: o.ver, K: kind, U: users})
	o.q = append(o.q, &nats.Msg{Subject: subject, Reply: reply, Data: data})
	o.mu.Unlock()
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

func (o *outbound) run(bp *Backplane) {
	defer bp.wg.Done()
	for {
		var quit bool
		select {
		case <-o.wake:
		case <-bp.quit:
			quit = true
		}
		o.mu.Lock()
		q := o.q
		o.q = nil
		o.mu.Unlock()
		for _, m := range q {
			if bp.killed.Load() {
				break
			}
			if err := bp.nc.PublishMsg(m); err != nil {
				bp.log.Debug("cannot publish presence", "err", err)
			}
		}
		if quit {
			return
		}
	}
}

// onPresence applies another replica's message about this room.
func (r *room) onPresence(msg *nats.Msg) {
	var pm presenceMsg
	if json.Unmarshal(msg.Data, &pm) != nil || pm.R == r.bp.id || pm.R == "" {
		return
	}
	r.mu.Lock()
	if !r.closed {
		r.applyLocked(pm, time.Now())
	}
	r.mu.Unlock()
}

// applyLocked folds one replica's message into the room's presence.
func (r *room) applyLocked(pm presenceMsg, now time.Time) {
	if pm.K == kindYield {
		r.yieldUntil = now.Add(yieldWindow)
		return
	}
	rv := r.remote[pm.R]
	if pm.K == kindBye {
		if rv != nil && pm.V > rv.version {
			r.dropReplicaLocked(pm.R)
		}
		return
	}
	if pm.K != kindJoin && pm.K != kindLeave && pm.K != kindSnap {
		return
	}
	if rv == nil {
		rv = &replicaView{users: make(map[string]protocol.User)}
		r.remote[pm.R] = rv
	} else if pm.V <= rv.version {
		return // older than what we have
	}
	rv.version, rv.lastSeen = pm.V, now
	switch pm.K {
	case kindJoin:
		for _, u := range pm.U {
			if _, ok := rv.users[u.ID]; !ok {
				rv.users[u.ID] = u
				r.refLocked(u)
			}
		}
	case kindLeave:
		for _, u := range pm.U {
			if _, ok := rv.users[u.ID]; ok {
				delete(rv.users, u.ID)
				r.unrefLocked(u.ID)
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
				r.unrefLocked(id)
			}
		}
		for id, u := range next {
			if _, ok := rv.users[id]; !ok {
				rv.users[id] = u
				r.refLocked(u)
			}
		}
	}
}

func (r *room) dropReplicaLocked(id string) {
	rv := r.remote[id]
	if rv == nil {
		return
	}
	delete(r.remote, id)
	for uid := range rv.users {
		r.unrefLocked(uid)
	}
}

// expireLocked drops the users of replicas not heard from for the TTL
// (less one scan period, so they are gone within the TTL), counting the
// silence from upSince at the earliest: the backplane was down before it,
// so nobody could be heard.
func (r *room) expireLocked(now, upSince time.Time) {
	limit := r.bp.cfg.PresenceTTL - r.bp.tick
	for id, rv := range r.remote {
		if now.Sub(later(rv.lastSeen, upSince)) >= limit {
			r.bp.log.Debug("replica expired from room presence", "replica", id)
			r.dropReplicaLocked(id)
		}
	}
}

func (r *room) localUsersLocked() []protocol.User {
	us := make([]protocol.User, 0, len(r.local))
	for _, uc := range r.local {
		us = append(us, uc.user)
	}
	return us
}

// snapshotAll publishes this replica's users of every room it holds.
func (bp *Backplane) snapshotAll() {
	for _, r := range bp.allRooms() {
		r.mu.Lock()
		if !r.closed && len(r.local) > 0 {
			bp.out.push(presencePrefix+r.name, "", kindSnap, bp.id, r.localUsersLocked())
		}
		r.mu.Unlock()
	}
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// presenceLoop sends snapshots and census hellos every PresenceSync and
// expires silent replicas every tick. While the backplane is down (Health)
// nothing expires: the other replicas' users stay as last known, and their
// TTL counts from the tick that finds the backplane up again.
func (bp *Backplane) presenceLoop() {
	defer bp.wg.Done()
	snap := time.NewTicker(bp.cfg.PresenceSync)
	defer snap.Stop()
	expire := time.NewTicker(bp.tick)
	defer expire.Stop()
	var upSince time.Time
	down := true
	for {
		select {
		case <-bp.quit:
			return
		case <-snap.C:
			bp.snapshotAll()
			bp.announce(true)
		case now := <-expire.C:
			if !bp.Up() {
				down = true
				continue
			}
			if down {
				down, upSince = false, now
			}
			for _, r := range bp.allRooms() {
				r.mu.Lock()
				if !r.closed {
					r.expireLocked(now, upSince)
				}
				r.mu.Unlock()
			}
			bp.censusMu.Lock()
			for id, seen := range bp.census {
				if now.Sub(later(seen, upSince)) >= bp.cfg.PresenceTTL {
					delete(bp.census, id)
				}
			}
			bp.censusMu.Unlock()
		}
	}
}

// announce says hello (alive) or bye (leaving) to the other replicas.
func (bp *Backplane) announce(alive bool) {
	kind := kindBye
	if alive {
		kind = kindHello
	}
	bp.out.push(censusSubject, "", kind, bp.id, nil)
}

func (bp *Backplane) onCensus(msg *nats.Msg) {
	var pm presenceMsg
	if json.Unmarshal(msg.Data, &pm) != nil || pm.R == bp.id || pm.R == "" {
		return
	}
	bp.censusMu.Lock()
	_, known := bp.census[pm.R]
	if pm.K == kindBye {
		delete(bp.census, pm.R)
	} else {
		bp.census[pm.R] = time.Now()
	}
	bp.censusMu.Unlock()
	if !known && pm.K == kindHello {
		// A newcomer: make sure it knows us without waiting a period.
		bp.announce(true)
	}
}

func (bp *Backplane) peers() int {
	bp.censusMu.Lock()
	defer bp.censusMu.Unlock()
	return len(bp.census)
}

// onSyncRequest answers another replica that is setting up a room with
// this replica's users of it (or none).
func (bp *Backplane) onSyncRequest(msg *nats.Msg) {
	var pm presenceMsg
	if msg.Reply == "" || json.Unmarshal(msg.Data, &pm) != nil || pm.R == bp.id {
		return
	}
	name := strings.TrimPrefix(msg.Subject, psyncPrefix)
	if r := bp.lookup(name); r != nil {
		r.mu.Lock()
		if !r.closed && len(r.local) > 0 {
			bp.out.push(msg.Reply, "", kindSnap, bp.id, r.localUsersLocked())
			r.mu.Unlock()
			return
		}
		r.mu.Unlock()
	}
	bp.out.push(msg.Reply, "", kindNone, bp.id, nil)
}

// syncPresence asks the other replicas for their users of r and waits,
// at most SyncWait, for every replica the census knows to answer, so the
// first local joiner's member list already has them.
func (bp *Backplane) syncPresence(r *room) {
	want := bp.peers()
	if want == 0 {
		return
	}
	inbox := bp.nc.NewInbox()
	sub, err := bp.nc.SubscribeSync(inbox)
	if err != nil {
		return
	}
	defer func() { _ = sub.Unsubscribe() }()
	data, _ := json.Marshal(presenceMsg{R: bp.id, K: kindSync})
	if err := bp.nc.PublishRequest(psyncPrefix+r.name, inbox, data); err != nil {
		return
	}
	deadline := time.Now().Add(bp.cfg.SyncWait)
	got := make(map[string]bool, want)
	for len(got) < want {
		left := time.Until(deadline)
		if left <= 0 {
			return
		}
		msg, err := sub.NextMsg(left)
		if err != nil {
			return
		}
		var pm presenceMsg
		if json.Unmarshal(msg.Data, &pm) != nil || pm.R == bp.id {
			continue
		}
		got[pm.R] = true
		if pm.K == kindSnap {
			r.mu.Lock()
			r.applyLocked(pm, time.Now())
			r.mu.Unlock()
		}
	}
}
