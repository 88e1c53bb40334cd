// Package cluster is chatgate's cluster backplane: a broker.Broker that lets
// several gateway replicas share rooms, history and presence through NATS.
// JetStream stores and orders the messages; core NATS carries them live.
//
// # Messages
//
// One stream (CHATGATE_ROOMS, subjects chatgate.room.>) holds every room's
// messages; room r is subject chatgate.room.<r>. The stream assigns the
// order: a message's protocol seq is its stream sequence, which increases
// within a room but is not contiguous (other rooms share the sequence).
// Publish is a JetStream publish that expects the subject's last sequence
// (optimistic concurrency), and records that sequence in the Chatgate-Prev
// header, so the stored messages of a room form a chain in which every
// message names its predecessor. After the PubAck (the message is stored)
// Publish waits until this replica has delivered the message to its local
// members, the sender included, then queues the sender's ack and returns:
// the sender sees its message, then its ack, and nothing its connection
// queues after Publish returns (a drain's close frame) comes before them.
// A failed publish is never acked: the sender gets unavailable, and so does
// a send stored but not delivered here within PublishTimeout (the reply
// lost, in effect). publisher.go holds the publishing side.
//
// # Live delivery
//
// The stream republishes every message it stores, in stream order, on core
// NATS to chatgate.live.<r> (its RePublish setting), with the headers
// Nats-Sequence (the message's seq) and Nats-Last-Sequence (the seq of the
// room's message stored before it, 0 when none was). A replica does work
// only for rooms it has local members in: the first local join subscribes
// to the room's live subject (subject interest: one subscription, no
// consumer or other state on the NATS server), learns where the room
// stands, and asks the other replicas for their members. The last local
// leave unsubscribes. Every subscription feeds one of a few shared
// channels, chosen by the room's name, each drained by one goroutine
// (live.go), so a room's messages are handled in the order NATS delivered
// them and a replica has a handful of goroutines, not a few per room.
//
// Republishing is at most once: a message can miss a replica (its client
// dropped it as a slow consumer, a reconnect, a NATS route or leader
// change). Each room keeps the seq of the last message it delivered, and
// chain.go decides, as a pure function, what to do with the next: deliver
// it (its Nats-Last-Sequence is at or below that position), drop it (a
// duplicate), or, when it names a message this replica never delivered,
// hold it and repair the room from the stream (repair.go): read the room's
// stored messages after its position with batched Direct Gets, deliver
// them, then the held messages, with no loss, duplicate or reordering. The
// same repair runs when the NATS client reports dropped messages on the
// room's subscription, after every (re)connect, when a send of this
// replica has not come back live in time, and when another replica's
// presence snapshot shows a later message than this replica delivered. A
// message the stream no longer holds when it is repaired (trimmed or aged
// out) is a delivery gap: counted and logged. Each delivered message is
// encoded once and queued to every local member under the room's lock, in
// stream order; no network I/O happens under a room lock.
//
// A join with since registers the joiner as a buffering member (live frames
// for it are held in order), reads the stored messages in (since, joinSeq]
// the same way outside the lock, queues joined and the replay, then
// releases the held frames: no gap and no duplicate at the seam.
// replayComplete (chain.go) decides recovered from the Chatgate-Prev chain.
//
// # Faults
//
// The backplane is up (Health) while it is connected to NATS, has checked
// the stream since the last (re)connect, and JetStream has answered within
// HealthTimeout: a probe asks for the stream's state every third of it, so
// a server that stops answering (frozen, or cut off without a reset) turns
// the backplane down within HealthTimeout. Sends, joins that need NATS and
// replays are refused at once while it is down. Live messages that arrive
// before the stream is checked are dropped; once it is, every room repairs
// from its position.
//
// Each check also compares the stream with the one this replica knew. A
// stream with another creation time, or whose last seq went below a seq
// this replica saw stored, lost the old one's messages (a NATS server
// restarted without its store, or with memory storage). That starts a new
// epoch: every room moves to the new stream's start, counts the messages it
// held in the lost one as a delivery gap (logged once per room), answers
// sends still waiting for delivery with unavailable, and repairs from the
// new stream. A stream this replica creates starts its sequence at the
// creation time in milliseconds x 1000 (and above every seq this replica
// has seen), like the in-process hub's rooms: a recreated stream numbers
// above the lost one, so members see seq values keep increasing and a
// since from the lost stream is below every seq of the new one
// (recovered: false).
//
// # Presence
//
// Each replica publishes (core NATS, on the room's live subject, without the
// stream's headers, so replicas serving the room hear it on the same
// subscription; a goroutine of its own applies it) its local users'
// arrivals and departures, a snapshot of its local users of every room it
// holds every PresenceSync (spread over the period, with the seq of the
// room's last message it delivered), and a goodbye when it drops a room. Replicas holding the
// room keep the users of every other replica with the time they last heard
// from it (presenceview.go); a replica silent for PresenceTTL has its users
// expire. While the backplane is down nobody can be heard, so nobody
// expires: the last known users are kept, and a replica still silent
// PresenceTTL after the backplane is back expires then. A room's online set
// is the union over replicas, so a user on two replicas counts once.
// Changes from any replica feed the same coalescing as the in-process hub.
// A replica that keeps losing publish races in a room asks the others to
// hold new messages briefly on chatgate.yield.<room>.
package cluster
