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
