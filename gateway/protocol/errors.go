package protocol

// ErrorCode is the closed vocabulary of error envelope codes.
type ErrorCode string

// Error codes sent in error envelopes. After an error envelope the
// connection stays open.
const (
	CodeBadRequest  ErrorCode = "bad_request"
	CodeUnknownType ErrorCode = "unknown_type"
	CodeTooLarge    ErrorCode = "too_large"
	CodeRateLimited ErrorCode = "rate_limited"
	CodeNotJoined   ErrorCode = "not_joined"
	CodeInvalidRoom ErrorCode = "invalid_room"
	CodeRoomLimit   ErrorCode = "room_limit"
	CodeUnavailable ErrorCode = "unavailable"
	CodeInternal    ErrorCode = "internal"
	CodeForbidden   ErrorCode = "forbidden"
)

// ErrorCodes lists every ErrorCode, for pre-initialising metric labels.
var ErrorCodes = []ErrorCode{
	CodeBadRequest, CodeUnknownType, CodeTooLarge, CodeRateLimited, CodeNotJoined,
	CodeInvalidRoom, CodeRoomLimit, CodeUnavailable, CodeInternal, CodeForbidden,
}

// Error is an error envelope: it is both a Go error and a wire frame.
type Error struct {
	Code         ErrorCode
	Message      string
	Ref          string
	RetryAfterMs int64
}

func (e *Error) Error() string { return string(e.Code) + ": " + e.Message }

// The errors more than one package answers with, written once.
const (
	invalidRoomMessage  = "room must match [A-Za-z0-9_.-]{1,64}"
	roomLimitMessage    = "the gateway holds as many rooms as it may; try again later"
	shuttingDownMessage = "gateway is shutting down"
)

// InvalidRoomError answers a room name that breaks the room name rule.
func InvalidRoomError() *Error {
	return &Error{Code: CodeInvalidRoom, Message: invalidRoomMessage}
}

// NotJoinedError answers a send or leave for a room the connection is not
// in; ref is the request's.
func NotJoinedError(room, ref string) *Error {
	return &Error{Code: CodeNotJoined, Message: "not joined to room " + room, Ref: ref}
}

// RoomLimitError answers a join that would take the broker past the rooms
// it may hold at once (--max-rooms-total). (A connection's own room cap,
// --max-rooms, has an error of its own.)
func RoomLimitError() *Error {
	return &Error{Code: CodeRoomLimit, Message: roomLimitMessage, RetryAfterMs: 1000}
}

// BannedError answers a join of a user a moderator banned from room; the
// ban ends in retryAfterMs milliseconds.
func BannedError(room string, retryAfterMs int64) *Error {
	return &Error{Code: CodeForbidden, Message: "banned from room " + room, RetryAfterMs: max(retryAfterMs, 1)}
}

// ShuttingDownError answers a join to a broker that has been closed.
func ShuttingDownError() *Error {
	return &Error{Code: CodeUnavailable, Message: shuttingDownMessage}
}
