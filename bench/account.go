package bench

import (
	"sync"
	"sync/atomic"
)

// Correctness accounting.
//
// Every message position is counted per stream: for chatgate a stream is a
// room and a position is the room's seq; with --proto raw (no seqs) a stream
// is one sender and a position is that sender's counter + 1. The bench owns
// its rooms (their names carry the bench id), so every position that exists
// in a stream is one of its own messages, and the set of positions that
// exist (the ledger) is known: a sender adds a position when the gateway
// acks it (chatgate) or when the write succeeded (raw), and at the end every
// position any member saw is added too (a message sequenced but whose ack
// was lost still exists).
//
// A member expects every position of its stream(s) above its base (the
// room's seq when it joined; 0 for raw). Its loss is the expected positions
// it never received; a duplicate is a position received again; out of order
// is a new position below the highest already received. Loss is only
// counted for members that stayed for the whole window (or, where the
// scenario reconnects, that resumed with since every time).

// streamKey names a stream: a room for chatgate (sender -1), one sender in a
// room for raw.
type streamKey struct {
	room   int
	sender int
}

// tracker follows one stream at one member. It is owned by the member's
// reader goroutine, except highest, which the settle wait polls.
type tracker struct {
	seen    seqSet
	base    uint64 // positions ≤ base are not expected of this member
	highest atomic.Uint64
	// replayTo is the room seq of the latest joined-with-since: positions
	// up to it that arrive after that joined are replayed history.
	replayTo   uint64
	replaying  bool
	dup        int64
	outOfOrder int64
	healed     int64 // positions first received through a replay
	stale      int64 // positions at or below base (never expected)
}

// observe records position pos and reports whether it was new.
func (t *tracker) observe(pos uint64) (fresh, replayed bool) {
	if t.replaying && pos <= t.replayTo {
		replayed = true
	} else {
		t.replaying = false
	}
	if pos <= t.base {
		t.stale++
		return false, replayed
	}
	if !t.seen.Add(pos) {
		t.dup++
		return false, replayed
	}
	if h := t.highest.Load(); pos < h {
		t.outOfOrder++
	} else {
		t.highest.Store(pos)
	}
	if replayed {
		t.healed++
	}
	return true, replayed
}

// rejoined marks the start of a replay up to room seq s.
func (t *tracker) rejoined(s uint64) {
	t.replayTo, t.replaying = s, true
}

// ledger is the set of positions that exist, per stream.
type ledger struct {
	mu      sync.Mutex
	streams map[streamKey]*seqSet
}

func newLedger() *ledger { return &ledger{streams: make(map[streamKey]*seqSet)} }

func (l *ledger) add(k streamKey, pos uint64) {
	l.mu.Lock()
	s := l.streams[k]
	if s == nil {
		s = new(seqSet)
		l.streams[k] = s
	}
	s.Add(pos)
	l.mu.Unlock()
}

func (l *ledger) union(k streamKey, o *seqSet) {
	l.mu.Lock()
	s := l.streams[k]
	if s == nil {
		s = new(seqSet)
		l.streams[k] = s
	}
	s.Union(o)
	l.mu.Unlock()
}

// count is the number of positions of k above floor.
func (l *ledger) count(k streamKey, floor uint64) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.streams[k]
	if s == nil {
		return 0
	}
	if floor == 0 {
		return s.Len()
	}
	return s.CountAbove(floor)
}

// max is the highest known position of k.
func (l *ledger) max(k streamKey) uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if s := l.streams[k]; s != nil {
		return s.Max()
	}
	return 0
}

// Correctness is the JSON form of the accounting.
type Correctness struct {
	// MembersChecked is the number of members loss was counted for: every
	// healthy member connected for the whole window.
	MembersChecked int `json:"members_checked"`
	// MembersExcluded were not: slow listeners, members that disconnected
	// (or, when reconnecting, failed to resume) and failed connections.
	MembersExcluded int `json:"members_excluded"`
	// ExcludedBy counts the excluded members by why: slow (a slow
	// listener, by design), not_connected, not_joined (the join was
	// refused or timed out), disconnected (closed and not reconnecting),
	// resume_failed (could not reconnect, or was still reconnecting at the
	// end), no_replica (a drain closed it and --url named no other
	// gateway to go to).
	ExcludedBy map[string]int64 `json:"excluded_by"`
	// Expected deliveries to the checked members, and how many arrived.
	Expected int64 `json:"expected"`
	Received int64 `json:"received"`
	Lost     int64 `json:"lost"`
	// MissingAtEnd is the part of Lost newer than the last message the
	// member did receive: still in flight when the bench stopped waiting
	// (a server or client that fell behind), or dropped at the very end.
	// The rest of Lost are gaps: messages skipped while later ones came.
	MissingAtEnd int64 `json:"missing_at_end"`
	// LossRatio is Lost / Expected (0 when nothing was expected).
	LossRatio  float64 `json:"loss_ratio"`
	Duplicated int64   `json:"duplicated"`
	OutOfOrder int64   `json:"out_of_order"`
	// Rejoins after a reconnect, how many the gateway reported as fully
	// recovered (joined.recovered true) or not, and the messages that
	// reached a member only through replay: gaps healed by replay.
	Rejoins          int64 `json:"rejoins"`
	RecoveredJoins   int64 `json:"recovered_joins"`
	UnrecoveredJoins int64 `json:"unrecovered_joins"`
	HealedByReplay   int64 `json:"healed_by_replay"`
	// Unconfirmed sends got neither an ack nor an error (chatgate only).
	Unconfirmed int64 `json:"unconfirmed"`
	// Foreign messages were not from this bench run (someone else in the
	// room, or with raw, another client of the server).
	Foreign int64 `json:"foreign"`
}

// memberTally is what one member contributes.
type memberTally struct {
	expected, received, tail, dup, ooo, healed int64
}

// tallyMember counts one member's streams against the ledger. streams maps
// each stream the member belongs to, to its tracker (nil if it never
// received anything of that stream).
func tallyMember(l *ledger, streams map[streamKey]*tracker) memberTally {
	var t memberTally
	for k, tr := range streams {
		var base uint64
		if tr != nil {
			base = tr.base
		}
		exp := int64(l.count(k, base))
		t.expected += exp
		if tr == nil {
			t.tail += exp
			continue
		}
		if h := tr.highest.Load(); h > base {
			t.tail += int64(l.count(k, h))
		} else {
			t.tail += exp
		}
		got := int64(tr.seen.Len())
		t.received += min(got, exp)
		t.dup += tr.dup
		t.ooo += tr.outOfOrder
		t.healed += tr.healed
	}
	return t
}
