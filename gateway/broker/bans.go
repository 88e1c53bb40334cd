package broker

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/chatgate/chatgate/gateway/protocol"
)

// MaxBan is the longest ban a broker keeps (Operator.Ban).
const MaxBan = 365 * 24 * time.Hour

// Bans is a table of room bans (Operator.Ban) that joins read on every
// join without a lock: bans are rare and joins frequent, so the table is
// copied on write. Both brokers keep one; the cluster's is fed from every
// replica (each entry with the revision that set it, so an older update
// arriving late by another path cannot undo a newer one).
type Bans struct {
	mu    sync.Mutex                          // serialises writers
	table atomic.Pointer[map[banKey]banEntry] // replaced whole
}

type banKey struct{ room, user string }

type banEntry struct {
	until time.Time // zero: lifted (kept as a tombstone for its revision)
	rev   uint64
}

// Ban is one entry of the table.
type Ban struct {
	Room, User string
	Until      time.Time // zero or past: not banned
	Rev        uint64    // the revision that set it; 0: unordered
}

// Apply sets (or, with a zero or past until, lifts) the ban of user from
// room, unless the table holds a newer revision of it (rev 0 always
// applies). It reports whether the user is now banned because of this
// call, which is when the user's connections in the room must be removed.
func (b *Bans) Apply(ban Ban, now time.Time) (banned bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	k := banKey{ban.Room, ban.User}
	old := b.load()
	if e, ok := old[k]; ok && ban.Rev != 0 && e.rev >= ban.Rev {
		return false
	}
	next := make(map[banKey]banEntry, len(old)+1)
	for key, e := range old {
		// Ended bans without a revision to guard are dropped on the way.
		if e.rev != 0 || e.until.After(now) {
			next[key] = e
		}
	}
	e := banEntry{rev: ban.Rev}
	if ban.Until.After(now) {
		e.until = ban.Until
	}
	if e.until.IsZero() && e.rev == 0 {
		delete(next, k)
	} else {
		next[k] = e
	}
	b.table.Store(&next)
	return !e.until.IsZero()
}

// Replace loads a snapshot of the table (the bans in force as of revision
// upTo), keeping what was applied after it (a higher revision).
func (b *Bans) Replace(bans []Ban, upTo uint64, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	next := make(map[banKey]banEntry, len(bans))
	for _, ban := range bans {
		if ban.Until.After(now) {
			next[banKey{ban.Room, ban.User}] = banEntry{until: ban.Until, rev: ban.Rev}
		}
	}
	for k, e := range b.load() {
		if e.rev > upTo {
			next[k] = e
		}
	}
	b.table.Store(&next)
}

// Remaining reports whether user is banned from room at now, and for how
// much longer.
func (b *Bans) Remaining(room, user string, now time.Time) (time.Duration, bool) {
	t := b.table.Load()
	if t == nil || len(*t) == 0 {
		return 0, false
	}
	e, ok := (*t)[banKey{room, user}]
	if !ok || !e.until.After(now) {
		return 0, false
	}
	return e.until.Sub(now), true
}

// Refuse is the join-time check: the error that refuses user a join to
// room at now (retry_after_ms rounded up, so a retry finds the ban over),
// or nil if user is not banned from it.
func (b *Bans) Refuse(room, user string, now time.Time) *protocol.Error {
	if left, banned := b.Remaining(room, user, now); banned {
		return protocol.BannedError(room, left.Milliseconds()+1)
	}
	return nil
}

// Len is how many entries the table holds (bans and tombstones).
func (b *Bans) Len() int {
	if t := b.table.Load(); t != nil {
		return len(*t)
	}
	return 0
}

func (b *Bans) load() map[banKey]banEntry {
	if t := b.table.Load(); t != nil {
		return *t
	}
	return nil
}
