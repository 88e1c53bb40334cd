package hub

import (
	"github.com/chatgate/chatgate/gateway/broker"
	"github.com/chatgate/chatgate/gateway/protocol"
)

// TEMPORARY re-exports of the broker contract, which moved to
// gateway/broker (issue 15). gateway/cluster and the web/e2e and bench
// tests still name these; remove this file once they import
// gateway/broker instead (the cluster follow-up of issue 15).
type (
	// Deprecated: use broker.Frame.
	Frame = broker.Frame
	// Deprecated: use broker.Subscriber.
	Subscriber = broker.Subscriber
	// Deprecated: use broker.Broker.
	Broker = broker.Broker
	// Deprecated: use broker.Membership.
	Membership = broker.Membership
	// Deprecated: use broker.Published.
	Published = broker.Published
	// Deprecated: use broker.PresenceChanges.
	PresenceChanges = broker.PresenceChanges
)

// Deprecated: use the broker.Default* constants.
const (
	DefaultMaxRooms           = broker.DefaultMaxRooms
	DefaultPresenceInterval   = broker.DefaultPresenceInterval
	DefaultPresenceMaxMembers = broker.DefaultPresenceMaxMembers
)

// SortUsers orders users by id.
//
// Deprecated: use broker.SortUsers.
func SortUsers(us []protocol.User) { broker.SortUsers(us) }
