package broker

import (
	"sync"
	"time"

	"github.com/chatgate/chatgate/gateway/protocol"
)

// PresenceTimer times one room's presence frames, at most one per
// interval: a change arms it, and when it fires it runs the room's flush
// under the room's lock. The in-process hub and the cluster backplane
// share it. Its state is guarded by the room's lock; the broker's
// WaitGroup counts an armed timer until its flush has run or StopLocked
// cancelled it, so the broker's Close can wait for every flush.
type PresenceTimer struct {
	// static after Init
	mu       sync.Locker     // the room's lock
	wg       *sync.WaitGroup // the broker's armed timers
	interval time.Duration
	closed   func() bool // under mu: the room is gone, flush nothing
	flush    func()      // under mu: take the changes and queue the frame

	t *time.Timer // armed and not yet fired; guarded by mu
}

// Init sets the timer up for a room whose lock is mu. closed and flush are
// called with mu held.
func (p *PresenceTimer) Init(mu sync.Locker, wg *sync.WaitGroup, interval time.Duration, closed func() bool, flush func()) {
	p.mu, p.wg, p.interval, p.closed, p.flush = mu, wg, interval, closed, flush
}

// ArmLocked arms the timer unless it is armed.
func (p *PresenceTimer) ArmLocked() {
	if p.t != nil {
		return
	}
	p.wg.Add(1)
	p.t = time.AfterFunc(p.interval, p.fire)
}

// StopLocked cancels an armed timer that has not fired. One that has fired
// finishes on its own: its flush waits for the lock, then finds the room
// closed.
func (p *PresenceTimer) StopLocked() {
	if p.t != nil && p.t.Stop() {
		p.t = nil
		p.wg.Done()
	}
}

func (p *PresenceTimer) fire() {
	defer p.wg.Done()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.t = nil
	if !p.closed() {
		p.flush()
	}
}

// Frame takes the room's next presence frame (see Take): nil when nothing
// needs one. online is how many users the room has; above maxListed the
// frame carries only that count.
func (p *PresenceChanges) Frame(room string, isPresent func(id string) bool, online, maxListed int) *Frame {
	joined, left, changed := p.Take(isPresent, online <= maxListed)
	if !changed {
		return nil
	}
	return &Frame{Data: protocol.Presence(room, joined, left, online)}
}
