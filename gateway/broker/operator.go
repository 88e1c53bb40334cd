package broker

import (
	"context"
	"time"

	"github.com/chatgate/chatgate/gateway/protocol"
)

// Operator is the broker's side of the server API (gateway/api): what an
// application's backend does to rooms without being a member of them. A
// broker that serves several replicas answers for all of them: whichever
// replica the API call reaches, a publish, a ban or a disconnect takes
// effect on every replica, and presence, the room list and history are the
// cluster's.
//
// The contract, beside each method's:
//
//   - A system message is sequenced, stored and delivered exactly as a
//     member's message is: every member gets it once, in the room's one
//     order, and a join with since replays it.
//   - A ban is checked under the same lock as a join's membership, so a
//     join racing a ban either is refused or is removed by it: once Ban has
//     returned, the user is in the room on no replica and no later join of
//     theirs gets in until the ban ends.
//   - Each connection removed by a ban is queued
//     protocol.Removed(room, protocol.LeftReasonBanned), and its Membership's
//     Publish fails with not_joined from then on (its Leave stays harmless).
type Operator interface {
	// PublishSystem sequences text in room as the system sender named
	// sender (protocol.SystemMessage), stores it in the room's history and
	// queues it to every member. The room need not have members: a broker
	// that must hold a room to sequence it takes a slot for it (and fails
	// with protocol.RoomLimitError when it cannot). When it returns
	// without an error the message is stored with seq Published.Seq, no
	// later message of the room comes before it, and it has been queued to
	// the room's members on this broker (Published.Recipients of them;
	// for a broker of several replicas, this replica's members), as a
	// member's Publish has queued its message to the sender: whatever this
	// broker queues them afterwards (the close of a Disconnect that
	// follows) comes after it. A sampled span in ctx marks the message's
	// frames with its trace id. An invalid name fails with
	// protocol.InvalidRoomError, a closed broker with unavailable.
	PublishSystem(ctx context.Context, room, sender, text string) (Published, *protocol.Error)

	// Presence returns who is in room now: every user with at least one
	// connection in it, sorted by id, with their connection counts.
	Presence(ctx context.Context, room string) (RoomPresence, *protocol.Error)

	// ActiveRooms lists the rooms that have at least one member, sorted by name,
	// starting after the name after ("" from the first), at most limit of
	// them; more says whether others follow.
	ActiveRooms(ctx context.Context, after string, limit int) (rooms []RoomCount, more bool, perr *protocol.Error)

	// History returns the room's held messages as members received them
	// (the encoded message envelopes), oldest first: with since, the first
	// limit after since; without, the newest limit.
	History(ctx context.Context, room string, since *uint64, limit int) (History, *protocol.Error)

	// Ban keeps user out of room for d, on every replica: the user's
	// connections in the room are removed from it (see the contract
	// above) and their joins are refused with protocol.BannedError until
	// the ban ends. A later Ban replaces an earlier one; d <= 0 lifts it.
	Ban(ctx context.Context, room, user string, d time.Duration) *protocol.Error

	// Disconnect hands target to the disconnect handler of every replica
	// (HandleDisconnects) and returns the sum of what they report: the
	// connections closed. A replica that does not answer in time is not
	// counted; the command still reaches it if it is up.
	Disconnect(ctx context.Context, target Target) (int, *protocol.Error)

	// HandleDisconnects installs this replica's disconnect handler: the
	// gateway's Server, which closes its own connections that target
	// names and says how many. It must not block.
	HandleDisconnects(h func(Target) int)
}

// Target names the connections a Disconnect closes: every connection of
// User, or the one connection Conn (of User, when both are set).
type Target struct {
	User string
	Conn string
}

// Matches reports whether a connection of user with id conn is one t
// names. A Target with neither field set names nothing.
func (t Target) Matches(user, conn string) bool {
	if t.User == "" && t.Conn == "" {
		return false
	}
	return (t.User == "" || t.User == user) && (t.Conn == "" || t.Conn == conn)
}

// RoomPresence is who is in a room.
type RoomPresence struct {
	Online      int // users
	Connections int
	Users       []PresentUser // sorted by id
}

// PresentUser is one user in a room.
type PresentUser struct {
	protocol.User
	Connections int
}

// RoomCount is one active room with its member counts.
type RoomCount struct {
	Room        string
	Online      int // users
	Connections int
}

// History is a page of a room's held messages.
type History struct {
	// Seq is the seq of the room's newest message, 0 when the broker
	// holds none.
	Seq uint64
	// Messages are the encoded message envelopes, oldest first.
	Messages [][]byte
	// Recovered, with since, says whether every message after since up to
	// the last one returned is there: no gap at the start. It follows the
	// rules of joined.recovered (docs/protocol.md).
	Recovered bool
	// Truncated says limit left out held messages: the newest ones with
	// since, the oldest without.
	Truncated bool
}
