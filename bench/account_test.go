package bench

import (
	"testing"
)

func TestSeqSet(t *testing.T) {
	var s seqSet
	base := uint64(1764100000123000) // time-based seqs: huge, sparse
	for _, v := range []uint64{base + 1, base + 2, base + 5000, base + 1, 7} {
		s.Add(v)
	}
	if s.Len() != 4 || !s.Has(base+5000) || s.Has(base+3) || s.Max() != base+5000 {
		t.Fatalf("len %d max %d", s.Len(), s.Max())
	}
	if got := s.CountAbove(base + 1); got != 2 {
		t.Fatalf("CountAbove = %d, want 2", got)
	}
	if got := s.CountAbove(0); got != 4 {
		t.Fatalf("CountAbove(0) = %d", got)
	}
	var o seqSet
	o.Add(base + 2)
	o.Add(base + 3)
	s.Union(&o)
	if s.Len() != 5 || !s.Has(base+3) {
		t.Fatalf("after union len %d", s.Len())
	}
}

// TestTrackerAccounting feeds arrival orders to one member's tracker and
// checks lost, duplicated and out-of-order counts against a ledger of ten
// messages (positions base+1..base+10).
func TestTrackerAccounting(t *testing.T) {
	const base = 1000
	cases := []struct {
		name                  string
		arrivals              []uint64 // offsets from base
		wantLost, wantDup     int64
		wantOOO, wantReceived int64
	}{
		{"clean", []uint64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 0, 0, 0, 10},
		{"drop two", []uint64{1, 2, 4, 5, 6, 7, 9, 10}, 2, 0, 0, 8},
		{"duplicate", []uint64{1, 2, 3, 3, 4, 5, 6, 7, 8, 9, 10, 10}, 0, 2, 0, 10},
		{"swap", []uint64{1, 3, 2, 4, 5, 6, 7, 8, 9, 10}, 0, 0, 1, 10},
		{"late arrival heals a gap", []uint64{1, 2, 4, 5, 6, 7, 8, 9, 10, 3}, 0, 0, 1, 10},
		{"everything", []uint64{2, 1, 1, 4, 6, 5, 7, 8, 9}, 2, 1, 2, 8}, // lost 3 and 10
		{"nothing", nil, 10, 0, 0, 0},
		{"before the join is not expected", []uint64{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 0, 0, 0, 10},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := newLedger()
			k := streamKey{0, -1}
			for i := uint64(1); i <= 10; i++ {
				l.add(k, base+i)
			}
			l.add(k, base) // a message from before the join
			tr := &tracker{base: base}
			tr.highest.Store(base)
			for _, a := range tc.arrivals {
				tr.observe(base + a)
			}
			l.union(k, &tr.seen)
			got := tallyMember(l, map[streamKey]*tracker{k: tr})
			if wantTail := int64(10) - int64(maxOffset(tc.arrivals)); got.tail != wantTail {
				t.Fatalf("tail %d, want %d", got.tail, wantTail)
			}
			if lost := got.expected - got.received; lost != tc.wantLost || got.dup != tc.wantDup || got.ooo != tc.wantOOO || got.received != tc.wantReceived || got.expected != 10 {
				t.Fatalf("expected %d received %d lost %d dup %d ooo %d; want 10 %d %d %d %d",
					got.expected, got.received, lost, got.dup, got.ooo, tc.wantReceived, tc.wantLost, tc.wantDup, tc.wantOOO)
			}
		})
	}
}

func TestTrackerReplay(t *testing.T) {
	tr := &tracker{base: 10}
	tr.highest.Store(10)
	for _, s := range []uint64{11, 12, 13} {
		tr.observe(s)
	}
	// Disconnected; meanwhile 14..16 were sequenced. The rejoin with
	// since=13 answers joined{seq:16} and replays 14..16, then live 17.
	tr.rejoined(16)
	for _, s := range []uint64{14, 15, 16} {
		if fresh, replayed := tr.observe(s); !fresh || !replayed {
			t.Fatalf("seq %d: fresh %v replayed %v", s, fresh, replayed)
		}
	}
	if fresh, replayed := tr.observe(17); !fresh || replayed {
		t.Fatalf("live 17: fresh %v replayed %v", fresh, replayed)
	}
	if tr.healed != 3 || tr.dup != 0 || tr.outOfOrder != 0 || tr.seen.Len() != 7 {
		t.Fatalf("healed %d dup %d ooo %d len %d", tr.healed, tr.dup, tr.outOfOrder, tr.seen.Len())
	}
}

// A member that never saw anything of a raw sender's stream still owes it.
func TestTallyMissingStream(t *testing.T) {
	l := newLedger()
	for i := uint64(1); i <= 5; i++ {
		l.add(streamKey{0, 1}, i)
		l.add(streamKey{0, 2}, i)
	}
	tr := &tracker{}
	for i := uint64(1); i <= 5; i++ {
		tr.observe(i)
	}
	got := tallyMember(l, map[streamKey]*tracker{{0, 1}: tr, {0, 2}: nil})
	if got.expected != 10 || got.received != 5 {
		t.Fatalf("%+v", got)
	}
}

func maxOffset(a []uint64) uint64 {
	var m uint64
	for _, v := range a {
		m = max(m, v)
	}
	return m
}
