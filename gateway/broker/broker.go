// Package broker is the contract between a connection and the rooms it is
// in: a Broker sequences each room's messages, keeps its history and its
// presence, and queues frames to Subscribers. The in-process hub
// (gateway/hub) implements it in one process; the cluster backplane
// (gateway/cluster) implements the same contract across replicas. Both are
// held to it by one conformance suite, gateway/broker/brokertest.
//
// # The contract
//
// Ordering: every member of a room is queued that room's messages in one
// order, the order of their seq values, which increase strictly (and, in
// the in-process hub, contiguously within a room's life).
//
// Join: the joined frame, then (with since) the held history after since
// as Frames marked Replay, then live messages: no gap and no duplicate at
// the seam, and recovered says whether the replay is complete (see
// docs/protocol.md, "recovered").
//
// Publish and its ack: when Publish returns without an error, the sender's
// own message and then its ack have both been queued to the sender, in that
// order. Whatever the sender's connection queues after Publish returns (a
// graceful close frame the drain asked for meanwhile, say) therefore comes
// after both: a client never sees a close without the ack of a send the
// gateway accepted. An implementation that stores the message before
// delivering it (the cluster backplane) must wait, inside Publish, until
// its own delivery has queued the message to the sender, and queue the ack
// before returning; an ack queued later, from another goroutine, would race
// the close.
//
// Subscriber.Enqueue is called with implementation locks held: it never
// blocks and never does socket I/O.
package broker

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/chatgate/chatgate/gateway/protocol"
)

// Frame is one encoded server → client envelope. A broadcast's Frame is
// shared, read-only, by every recipient's queue.
type Frame struct {
	Data []byte
	// Accepted is when the gateway accepted the chat message this frame
	// carries; zero for every other frame. Writers use it to measure
	// broadcast latency.
	Accepted time.Time
	// TraceID is the trace of a sampled message, for latency exemplars;
	// zero otherwise.
	TraceID trace.TraceID
	// Replay marks a history message replayed to one joiner (a Frame of
	// its own, never shared). The gateway chose to send the whole replay
	// at once, so a subscriber writes it at the pace its client reads and
	// does not count it as a backlog of the client's making.
	Replay bool
}

// Subscriber is a broker's view of one connection.
type Subscriber interface {
	User() protocol.User
	// Enqueue queues f for writing. It must not block and must not do
	// socket I/O: it is called with a room lock held. A subscriber that is
	// over its limits evicts itself; the broker does not care about the
	// result.
	Enqueue(f *Frame)
}

// Broker is what a connection talks to.
type Broker interface {
	// Join adds sub to room, then queues to sub the joined frame followed by
	// the history after since (when since is not nil, as Frames marked
	// Replay), with no gap or duplicate before the live messages that
	// follow. Joining a room sub is already in re-sends joined and the
	// replay. An invalid name fails with protocol.InvalidRoomError, a
	// broker that holds Settings.MaxRooms rooms and cannot free one with
	// protocol.RoomLimitError, a closed broker with code unavailable.
	Join(sub Subscriber, room string, since *uint64) (Membership, *protocol.Error)
}

// Membership is one subscriber's presence in one room.
type Membership interface {
	// Publish sequences text and queues it to every member, the sender
	// included. When it returns without an error, the sender's own message
	// and then an ack carrying ref have both been queued to the sender (see
	// the package doc). A sampled span in ctx marks the message's frames
	// with its trace id. After Leave it fails with
	// protocol.NotJoinedError.
	Publish(ctx context.Context, text, ref string) (Published, *protocol.Error)
	// Leave removes the subscriber from the room. It is idempotent.
	Leave()
	// Typist relays typing indicators (typing.go).
	Typist
}

// Published describes a sequenced message.
type Published struct {
	Seq        uint64
	Recipients int // local members it was queued to
}

// Defaults of the room settings every Broker implementation takes.
const (
	DefaultHistory            = 100
	DefaultMaxRooms           = 100000
	DefaultPresenceInterval   = 250 * time.Millisecond
	DefaultPresenceMaxMembers = 1000
)

// TimeSeqBase numbers from the clock: now's unix milliseconds × 1000. A
// room's (the hub's default Config.SeqBase) or the cluster stream's seqs
// start there, so a room or stream made again later continues above any
// seq handed out before, and a client's stale since is never mistaken for
// a position in the new one's history.
func TimeSeqBase(now time.Time) uint64 { return uint64(now.UnixMilli()) * 1000 }
