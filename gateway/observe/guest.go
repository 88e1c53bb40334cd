package observe

// GuestOutcome says what became of an anonymous connection's identity
// (docs/protocol.md, "Guest identity").
type GuestOutcome string

// Guest outcomes. Every one but GuestResumed is a new guest.
const (
	GuestNew        GuestOutcome = "new"         // no credential offered
	GuestResumed    GuestOutcome = "resumed"     // a valid credential: the same user again
	GuestExpired    GuestOutcome = "expired"     // a credential past its expiry
	GuestUnknownKey GuestOutcome = "unknown_key" // signed by a key this gateway does not hold (replicas without a shared --guest-key-file, or a key rotated out)
	GuestInvalid    GuestOutcome = "invalid"     // malformed or with a bad signature
)

// GuestOutcomes lists every GuestOutcome.
var GuestOutcomes = []GuestOutcome{GuestNew, GuestResumed, GuestExpired, GuestUnknownKey, GuestInvalid}

// GuestObserver receives what becomes of guest identities. An Observer
// that also implements it gets these events; like Observer it must be safe
// for concurrent use and must not block.
type GuestObserver interface {
	// GuestSession is called once per accepted anonymous connection while
	// the gateway issues guest credentials.
	GuestSession(GuestOutcome)
}
