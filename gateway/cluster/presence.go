package cluster

import (
	"encoding/json"
	"strconv"
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
	kindYield = "yield" // on chatgate.yield.<room>: the sender keeps losing publish races there; hold new messages briefly
)

type presenceMsg struct {
	R string          `json:"r"`           // sender replica id
	V uint64          `json:"v,omitempty"` // sender's message counter
	K string          `json:"k"`
	U []protocol.User `json:"u,omitempty"`
	// S, in a snap, is the seq of the room's last message the sender has
	// delivered: a replica behind it checks the stream (see room.hintLocked).
	S uint64 `json:"s,omitempty"`
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

// push queues pm (its version set here) to subject; it never blocks.
func (o *outbound) push(subject, reply string, pm presenceMsg) {
	o.mu.Lock()
	o.ver++
	pm.V = o.ver
	data, _ := json.Marshal(pm)
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

// onPresence applies another replica's message about room r (from a
// dispatcher, see live.go).
func (r *room) onPresence(msg *nats.Msg) {
	var pm presenceMsg
	if json.Unmarshal(msg.Data, &pm) != nil || pm.R == r.bp.id || pm.R == "" {
		return
	}
	if pm.K == kindTyping {
		r.onTyping(pm) // typing.go
		return
	}
	r.mu.Lock()
	if !r.closed {
		r.applyLocked(pm, time.Now())
	}
	r.mu.Unlock()
}

// applyLocked folds one replica's message into the room's presence; a
// snapshot also tells how far that replica has delivered the room.
func (r *room) applyLocked(pm presenceMsg, now time.Time) {
	if r.pres.apply(pm, now) {
		r.armPresenceLocked()
	}
	if pm.K == kindSnap && pm.S > r.lastSeq {
		r.hintLocked(pm.S, now)
	}
}

// snapSlots spreads the periodic snapshots over the sync period: every
// PresenceSync/snapSlots, the rooms of one slot (by name) send theirs, so
// thousands of rooms do not send at the same instant.
const snapSlots = 10

// snapshotAll publishes this replica's users of every room it holds, and
// how far it has delivered each.
func (bp *Backplane) snapshotAll() { bp.snapshotSlot(-1) }

// snapshotSlot does snapshotAll for the rooms of one slot (-1: all).
func (bp *Backplane) snapshotSlot(slot int) {
	for _, r := range bp.allRooms() {
		if slot >= 0 && r.slot != slot {
			continue
		}
		r.mu.Lock()
		if !r.closed && len(r.pres.local) > 0 {
			bp.out.push(livePrefix+r.name, "", presenceMsg{R: bp.id, K: kindSnap, U: r.pres.localUsers(), S: r.lastMsg})
		}
		r.mu.Unlock()
	}
}

// presenceLoop sends each room's snapshot and the census hello every
// PresenceSync (the snapshots spread over it), and every tick expires
// silent replicas and audits every room (room.auditLocked).
// While the backplane is down (Health) nothing expires: the other
// replicas' users stay as last known, and their TTL counts from the tick
// that finds the backplane up again.
func (bp *Backplane) presenceLoop() {
	defer bp.wg.Done()
	snap := time.NewTicker(bp.cfg.PresenceSync / snapSlots)
	defer snap.Stop()
	slot := 0
	expire := time.NewTicker(bp.tick)
	defer expire.Stop()
	var upSince time.Time
	down := true
	for {
		select {
		case <-bp.quit:
			return
		case <-snap.C:
			bp.snapshotSlot(slot)
			if slot == 0 {
				bp.announce(true)
			}
			slot = (slot + 1) % snapSlots
		case now := <-expire.C:
			if !bp.Up() {
				down = true
				continue
			}
			if down {
				down, upSince = false, now
			}
			limit := bp.cfg.PresenceTTL - bp.tick // so they are gone within the TTL
			for _, r := range bp.allRooms() {
				r.mu.Lock()
				if !r.closed {
					dropped, changed := r.pres.expire(now, upSince, limit)
					for _, id := range dropped {
						bp.log.Debug("replica expired from room presence", "replica", id)
					}
					if changed {
						r.armPresenceLocked()
					}
					r.auditLocked(now)
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
	bp.out.push(censusSubject, "", presenceMsg{R: bp.id, K: kind})
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
		if !r.closed && len(r.pres.local) > 0 {
			bp.out.push(msg.Reply, "", presenceMsg{R: bp.id, K: kindSnap, U: r.pres.localUsers(), S: r.lastMsg})
			r.mu.Unlock()
			return
		}
		r.mu.Unlock()
	}
	bp.out.push(msg.Reply, "", presenceMsg{R: bp.id, K: kindNone})
}

// syncReplies routes the answers to this replica's presence sync
// requests. One subscription (<inbox>.*) takes them all, so starting to
// serve a room subscribes nothing on the NATS server but the room's live
// subject.
type syncReplies struct {
	prefix string // static after init: "<inbox>."

	mu      sync.Mutex
	next    uint64                      // guarded by mu
	waiting map[string]chan presenceMsg // reply token → its request's answers; guarded by mu
}

func (s *syncReplies) init(inbox string) {
	s.prefix = inbox + "."
	s.waiting = make(map[string]chan presenceMsg)
}

// open registers a request that waits for n answers.
func (s *syncReplies) open(n int) (string, chan presenceMsg) {
	ch := make(chan presenceMsg, n+1)
	s.mu.Lock()
	s.next++
	token := strconv.FormatUint(s.next, 36)
	s.waiting[token] = ch
	s.mu.Unlock()
	return token, ch
}

func (s *syncReplies) close(token string) {
	s.mu.Lock()
	delete(s.waiting, token)
	s.mu.Unlock()
}

// onSyncReply hands an answer to the request waiting for it.
func (bp *Backplane) onSyncReply(msg *nats.Msg) {
	var pm presenceMsg
	if json.Unmarshal(msg.Data, &pm) != nil || pm.R == bp.id {
		return
	}
	s := &bp.syncs
	s.mu.Lock()
	ch := s.waiting[strings.TrimPrefix(msg.Subject, s.prefix)]
	s.mu.Unlock()
	if ch != nil {
		select {
		case ch <- pm:
		default: // more answers than replicas known: enough already
		}
	}
}

// syncPresence asks the other replicas for their users of r and waits,
// at most SyncWait, for every replica the census knows to answer, so the
// first local joiner's member list already has them.
func (bp *Backplane) syncPresence(r *room) {
	want := bp.peers()
	if want == 0 {
		return
	}
	token, answers := bp.syncs.open(want)
	defer bp.syncs.close(token)
	data, _ := json.Marshal(presenceMsg{R: bp.id, K: kindSync})
	if err := bp.nc.PublishRequest(psyncPrefix+r.name, bp.syncs.prefix+token, data); err != nil {
		return
	}
	deadline := time.NewTimer(bp.cfg.SyncWait)
	defer deadline.Stop()
	got := make(map[string]bool, want)
	for len(got) < want {
		select {
		case pm := <-answers:
			got[pm.R] = true
			if pm.K == kindSnap {
				r.mu.Lock()
				r.applyLocked(pm, time.Now())
				r.mu.Unlock()
			}
		case <-deadline.C:
			return
		}
	}
}

// onYield applies another replica's request to hold new messages of a
// room briefly (see publisher.publish).
func (bp *Backplane) onYield(msg *nats.Msg) {
	var pm presenceMsg
	if json.Unmarshal(msg.Data, &pm) != nil || pm.R == bp.id || pm.K != kindYield {
		return
	}
	if r := bp.lookup(strings.TrimPrefix(msg.Subject, yieldPrefix)); r != nil {
		r.pub.yieldFor(yieldWindow)
	}
}
