package cluster

// The chain checks: pure functions of seq numbers, no NATS and no locks.
//
// Every message of a room names the room's message stored before it. A live
// message (republished by the stream) carries it in Nats-Last-Sequence,
// set by the NATS server: the last seq stored for the room's subject when
// the message was stored, 0 when the subject held none. A stored message
// (read back from the stream) carries it in Chatgate-Prev, set by the
// publisher and enforced by the stream (the publish expected exactly that
// last seq): the room's previous message, or, for a message published when
// the room held none, the stream's first seq − 1 then (the floor: no
// earlier message of the room lies above it, and any at or below it may be
// gone). Such a message starts the room's chain, and says so in
// Chatgate-Start (the stream enforced that the subject was empty). The
// stream only ever loses a room's oldest messages, so the messages it holds
// of a room are a suffix of the room's chain; a chain starts again only
// once the stream holds none of the room's messages (all aged out, or the
// stream lost), as a room of the in-process hub starts a new life.

// step is what becomes of a live message at a room's position.
type step int

const (
	// stepDeliver: the room's next message here; deliver it.
	stepDeliver step = iota
	// stepDuplicate: at or below the position, so already delivered (or
	// from before the position delivery started at); drop it.
	stepDuplicate
	// stepGap: the message names a predecessor above the position, a
	// message this replica never delivered; repair before delivering it.
	stepGap
	// stepLost: deliver the message, after a gap a repair could not fill.
	stepLost
)

func (s step) String() string {
	switch s {
	case stepDeliver:
		return "deliver"
	case stepDuplicate:
		return "duplicate"
	case stepGap:
		return "gap"
	default:
		return "lost"
	}
}

// liveStep decides a live message's fate. pos is the seq of the last
// message the room delivered here, or the position delivery started from;
// seq is the message's seq and last its Nats-Last-Sequence. A message whose
// predecessor is at or below pos follows pos directly: no message of the
// room lies between them.
func liveStep(pos, seq, last uint64) step {
	switch {
	case seq <= pos:
		return stepDuplicate
	case last <= pos:
		return stepDeliver
	default:
		return stepGap
	}
}

// link is what the chain checks need of a stored message.
type link struct {
	seq     uint64
	prev    uint64 // Chatgate-Prev
	hasPrev bool   // the message carries Chatgate-Prev (written by chatgate)
	start   bool   // Chatgate-Start: the first message of the room's chain
}

// storedLoss reports whether stored message m, read from the stream after
// position pos, shows that messages of the room between pos and m are gone
// from the stream (trimmed or aged out before this replica delivered them).
// lastMsg is the room's newest message delivered here (0 when the position
// is not a message of the room: then what came before is unknown here and
// nothing counts as lost). A message without Chatgate-Prev proves nothing.
func storedLoss(pos, lastMsg uint64, m link) bool {
	return lastMsg != 0 && m.hasPrev && m.prev > pos
}

// replayComplete reports whether msgs, the room's stored messages with
// since < seq ≤ joinSeq oldest first, are every message of the room in that
// range: the answer a join with since gives as recovered. lastMsg is the
// room's newest message known at the join (0 if none), floor the room's
// floor then. It is complete iff
//   - since ≥ joinSeq: nothing to replay (since == joinSeq) is complete;
//     since > joinSeq is not a position the stream handed out (join moves
//     joinSeq up to a since the stream has reached): false;
//   - since is 0, which asks for the room's whole life, as with the
//     in-process hub: with no message held, complete iff none is known here
//     (lastMsg 0); otherwise as below from the start of the room's chain
//     when the first replayed message starts it (its prev, the floor, is
//     then where the life began), and false when it does not (the chain's
//     start is gone);
//   - no message is held in the range: complete iff lastMsg ≤ since (else
//     they were removed) and since is not below floor (messages of the
//     room below the floor may be gone; a since from a lost stream is below
//     the new stream's floor);
//   - otherwise: the first replayed message's prev ≤ since (nothing of the
//     room lies between since and it), every next one's prev is the one
//     before (nothing missing inside), and the last is lastMsg.
//
// A message without Chatgate-Prev (not written by chatgate) makes the
// answer false, and so does, for since 0, a chain whose first message
// lacks Chatgate-Start (written by an earlier chatgate) unless the stream
// numbers from 1 (its floor is 0).
func replayComplete(since, joinSeq, lastMsg, floor uint64, msgs []link) bool {
	switch {
	case since > joinSeq:
		return false
	case since == joinSeq:
		return true
	case since == 0 && len(msgs) == 0:
		return lastMsg == 0
	case since == 0 && msgs[0].start:
		since = msgs[0].prev
	case len(msgs) == 0:
		return lastMsg <= since && floor <= since
	}
	if !msgs[0].hasPrev || msgs[0].prev > since {
		return false
	}
	for i := 1; i < len(msgs); i++ {
		if !msgs[i].hasPrev || msgs[i].prev != msgs[i-1].seq {
			return false
		}
	}
	return msgs[len(msgs)-1].seq == lastMsg
}

// liveLink is what the chain checks need of a live message.
type liveLink struct {
	seq  uint64
	last uint64 // Nats-Last-Sequence
}

// afterRepair decides, once a repair has brought the room to pos by
// reading the stream, what becomes of the live messages held meanwhile, in
// the order they arrived: steps[i] for held[i]. Duplicates are dropped and
// messages that follow the position in turn are delivered. A held message
// that still follows a gap was not in the stream's answer although the
// stream stored it before republishing it: the answer came from a server
// that had not caught up (a follower). Unless giveUp, the repair must try
// again (wait; held[len(steps):] stay held); when it gives up, that message
// is delivered after a gap nothing filled (stepLost), and so on.
func afterRepair(pos uint64, held []liveLink, giveUp bool) (steps []step, wait bool) {
	steps = make([]step, 0, len(held))
	for _, h := range held {
		st := liveStep(pos, h.seq, h.last)
		if st == stepGap {
			if !giveUp {
				return steps, true
			}
			st = stepLost
		}
		if st != stepDuplicate {
			pos = h.seq
		}
		steps = append(steps, st)
	}
	return steps, false
}
