package cluster

import (
	"fmt"
	"testing"
)

func TestLiveStep(t *testing.T) {
	for _, tc := range []struct {
		name           string
		pos, seq, last uint64
		want           step
	}{
		{"next message", 100, 130, 100, stepDeliver},
		{"first message of an empty room", 100, 130, 0, stepDeliver},
		{"predecessor before the start position", 100, 130, 90, stepDeliver},
		{"duplicate", 130, 130, 100, stepDuplicate},
		{"older than the position", 130, 120, 100, stepDuplicate},
		{"a missed message before it", 100, 140, 130, stepGap},
		{"a missed message, room empty at the start", 0, 140, 130, stepGap},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := liveStep(tc.pos, tc.seq, tc.last); got != tc.want {
				t.Fatalf("liveStep(%d, %d, %d) = %v; want %v", tc.pos, tc.seq, tc.last, got, tc.want)
			}
		})
	}
}

func TestStoredLoss(t *testing.T) {
	for _, tc := range []struct {
		name         string
		pos, lastMsg uint64
		m            link
		want         bool
	}{
		{"next in the chain", 100, 100, link{seq: 130, prev: 100, hasPrev: true}, false},
		{"names a message the stream no longer holds", 100, 100, link{seq: 130, prev: 120, hasPrev: true}, true},
		{"the room's first message after the floor", 100, 100, link{seq: 130, prev: 90, hasPrev: true}, false},
		{"position is not a message of the room", 100, 0, link{seq: 130, prev: 120, hasPrev: true}, false},
		{"no Chatgate-Prev", 100, 100, link{seq: 130}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := storedLoss(tc.pos, tc.lastMsg, tc.m); got != tc.want {
				t.Fatalf("storedLoss = %v; want %v", got, tc.want)
			}
		})
	}
}

func TestReplayComplete(t *testing.T) {
	chain := func(prev uint64, seqs ...uint64) []link {
		ls := make([]link, len(seqs))
		for i, s := range seqs {
			ls[i] = link{seq: s, prev: prev, hasPrev: true}
			prev = s
		}
		return ls
	}
	start := func(ls []link) []link { ls[0].start = true; return ls }
	for _, tc := range []struct {
		name                           string
		since, joinSeq, lastMsg, floor uint64
		msgs                           []link
		want                           bool
	}{
		{"up to date", 50, 50, 50, 10, nil, true},
		{"since beyond the join position", 60, 50, 50, 10, nil, false},
		{"the missed tail", 20, 50, 50, 10, chain(20, 30, 40, 50), true},
		{"since between two messages", 25, 50, 50, 10, chain(20, 30, 40, 50), true},
		{"older messages trimmed", 5, 50, 50, 10, chain(20, 30, 40, 50), false},
		{"a hole inside", 20, 50, 50, 10, append(chain(20, 30), chain(35, 40, 50)...), false},
		{"does not reach the room's last message", 20, 50, 60, 10, chain(20, 30, 40, 50), false},
		{"a message without Chatgate-Prev", 20, 50, 50, 10, []link{{seq: 30}, {seq: 50, prev: 30, hasPrev: true}}, false},
		{"nothing stored, nothing since", 40, 50, 30, 10, nil, true},
		{"nothing stored, messages trimmed", 20, 50, 30, 10, nil, false},
		{"nothing stored, since below the floor", 5, 50, 0, 10, nil, false},
		{"since 0 on a stream numbered from 1", 0, 50, 50, 0, chain(0, 30, 40, 50), true},
		{"since 0, the chain's start held", 0, 50, 50, 10, start(chain(10, 30, 40, 50)), true},
		{"since 0, the chain's start trimmed", 0, 50, 50, 10, chain(20, 30, 40, 50), false},
		{"since 0, a start without its marker (an earlier chatgate)", 0, 50, 50, 10, chain(10, 30, 40, 50), false},
		{"since 0, the chain's start held, a hole inside", 0, 50, 50, 10, append(start(chain(10, 30)), chain(35, 40, 50)...), false},
		{"since 0, the chain's start held, the tail missing", 0, 50, 60, 10, start(chain(10, 30, 40, 50)), false},
		{"since 0, nothing stored, no message known", 0, 50, 0, 10, nil, true},
		{"since 0, nothing stored, messages known", 0, 50, 30, 10, nil, false},
		{"a start does not help a since other than 0", 5, 50, 50, 10, start(chain(10, 30, 40, 50)), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := replayComplete(tc.since, tc.joinSeq, tc.lastMsg, tc.floor, tc.msgs); got != tc.want {
				t.Fatalf("replayComplete = %v; want %v", got, tc.want)
			}
		})
	}
}

func TestAfterRepair(t *testing.T) {
	for _, tc := range []struct {
		name   string
		pos    uint64
		held   []liveLink
		giveUp bool
		steps  string
		wait   bool
	}{
		{"nothing held", 100, nil, false, "[]", false},
		{"the repair delivered what was held", 130, []liveLink{{120, 100}, {130, 120}}, false, "[duplicate duplicate]", false},
		{"held messages follow in turn", 100, []liveLink{{120, 100}, {130, 120}}, false, "[deliver deliver]", false},
		{"some delivered by the repair, the rest follow", 120, []liveLink{{120, 100}, {130, 120}, {140, 130}}, false, "[duplicate deliver deliver]", false},
		{"the answer lagged: wait", 100, []liveLink{{130, 120}, {140, 130}}, false, "[]", true},
		{"deliver up to the lag, then wait", 100, []liveLink{{110, 100}, {130, 120}}, false, "[deliver]", true},
		{"give up: the rest is delivered after a loss", 100, []liveLink{{130, 120}, {140, 130}}, true, "[lost deliver]", false},
		{"give up, a second gap", 100, []liveLink{{130, 120}, {150, 140}}, true, "[lost lost]", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			steps, wait := afterRepair(tc.pos, tc.held, tc.giveUp)
			if got := fmt.Sprint(steps); got != tc.steps || wait != tc.wait {
				t.Fatalf("afterRepair = %s, wait %v; want %s, wait %v", got, wait, tc.steps, tc.wait)
			}
		})
	}
}
