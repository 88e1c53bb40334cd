package gateway

import (
	"github.com/chatgate/chatgate/gateway/observe"
	"github.com/chatgate/chatgate/gateway/protocol"
)

// closeCause is the closed vocabulary of reasons the gateway ends a
// connection. Each has one row in closeCauses: the close code and reason
// word the client is sent, the disconnect reason the metrics count, and
// whether what is queued is written first. Every close goes through
// client.close(cause).
type closeCause uint8

const (
	causeNone closeCause = iota

	// Graceful: what is queued is written before the close frame.
	causeBinaryFrame   // the client sent a binary message
	causeTooLarge      // a message over --max-frame-bytes
	causeTooManyFrames // a message in more than --max-message-frames fragments
	causeInvalidUTF8   // a text message that is not UTF-8
	causeProtocolAbuse // too many protocol errors (strikes)
	causeRateAbuse     // too many rate-limited requests (strikes)
	causeInternal      // a bug while handling a request (recovered panic)
	causeDrain         // the graceful drain
	causeTokenExpired  // the connection's token expired
	causeKicked        // the application's backend disconnected it (server API)

	// Evictions: the queue is dropped, the close frame goes out at once.
	causeSlowConsumer // over --queue-bytes (or the replay frames cap)
	causeOverloaded   // over --total-queue-bytes with a backlog of its own

	// Aborts: nothing more is written; a graceful close under way stops.
	causeHeartbeat      // nothing from the client for --pong-timeout
	causeClientClose    // the client sent a close frame (the library answered it)
	causeReadError      // reading failed
	causeWriteError     // writing failed
	causeWriteTimeout   // a write missed --write-timeout
	causeShutdownForced // the drain ran out of time

	numCloseCauses
)

// closeCauses is the table: cause → what the close does.
var closeCauses = [numCloseCauses]struct {
	code   int    // close code; 0 sends no close frame
	word   string // the close reason's r
	reason observe.DisconnectReason
	flush  bool // write what is queued before the close frame
	retry  bool // the close reason carries a jittered retry_ms
	// linger: the connection keeps its rooms for --presence-grace (the
	// causes after which a client reconnects; see linger.go).
	linger bool
}{
	causeNone:           {},
	causeBinaryFrame:    {protocol.CloseUnsupportedData, "binary_frame", observe.DisconnectBinaryFrame, true, false, false},
	causeTooLarge:       {protocol.CloseMessageTooBig, "too_large", observe.DisconnectTooLarge, true, false, false},
	causeTooManyFrames:  {protocol.CloseMessageTooBig, "too_many_frames", observe.DisconnectTooManyFrames, true, false, false},
	causeInvalidUTF8:    {protocol.CloseInvalidPayload, "invalid_utf8", observe.DisconnectInvalidUTF8, true, false, false},
	causeProtocolAbuse:  {protocol.ClosePolicyViolation, "protocol_errors", observe.DisconnectProtocolError, true, false, false},
	causeRateAbuse:      {protocol.ClosePolicyViolation, "rate_abuse", observe.DisconnectRateAbuse, true, false, false},
	causeInternal:       {protocol.CloseInternalError, "internal", observe.DisconnectInternal, true, false, true},
	causeDrain:          {protocol.CloseGoingAway, "drain", observe.DisconnectDrain, true, true, true},
	causeTokenExpired:   {protocol.CloseTokenExpired, "token_expired", observe.DisconnectTokenExpired, true, false, true},
	causeKicked:         {protocol.CloseKicked, "kicked", observe.DisconnectKicked, true, false, false},
	causeSlowConsumer:   {protocol.CloseSlowConsumer, "slow_consumer", observe.DisconnectSlowConsumer, false, true, true},
	causeOverloaded:     {protocol.CloseTryAgainLater, "overloaded", observe.DisconnectOverloaded, false, true, true},
	causeHeartbeat:      {protocol.CloseHeartbeatTimeout, "heartbeat_timeout", observe.DisconnectPingTimeout, false, false, true},
	causeClientClose:    {0, "", observe.DisconnectClientClose, false, false, false},
	causeReadError:      {0, "", observe.DisconnectReadError, false, false, true},
	causeWriteError:     {0, "", observe.DisconnectWriteError, false, false, true},
	causeWriteTimeout:   {0, "", observe.DisconnectWriteTimeout, false, false, true},
	causeShutdownForced: {0, "", observe.DisconnectShutdownForced, false, false, true},
}

func (c closeCause) flushes() bool                    { return closeCauses[c].flush }
func (c closeCause) retries() bool                    { return closeCauses[c].retry }
func (c closeCause) reason() observe.DisconnectReason { return closeCauses[c].reason }
func (c closeCause) lingers() bool                    { return closeCauses[c].linger }

// frame is the close frame cause sends: its code (0: none) and reason,
// with retryMs when the cause carries one.
func (c closeCause) frame(retryMs int64) (code int, why protocol.CloseReason) {
	row := closeCauses[c]
	if row.code == 0 {
		return 0, protocol.CloseReason{}
	}
	why.R = row.word
	if row.retry {
		why.RetryMs = retryMs
	}
	return row.code, why
}
