package protocol

import (
	"encoding/binary"
	"encoding/json"
	"unicode/utf8"
)

// Close codes the gateway sends. See docs/protocol.md.
const (
	CloseNormal           = 1000
	CloseGoingAway        = 1001 // drain; reason carries retry_ms
	CloseUnsupportedData  = 1003 // binary frame
	CloseInvalidPayload   = 1007 // text frame that is not UTF-8
	ClosePolicyViolation  = 1008 // sustained rate-limit abuse or protocol errors
	CloseMessageTooBig    = 1009 // frame over the size limit
	CloseInternalError    = 1011
	CloseTryAgainLater    = 1013 // overloaded; reason carries retry_ms
	CloseHeartbeatTimeout = 4001
	CloseSlowConsumer     = 4008 // reason carries retry_ms
	CloseTokenExpired     = 4401 // the token expired; reconnect with a fresh one
	CloseKicked           = 4403 // the application's backend disconnected it (server API)
)

// MaxCloseReasonBytes is the most a close frame's reason may hold (RFC 6455:
// 125 bytes of payload minus the 2-byte code).
const MaxCloseReasonBytes = 123

// CloseReason is the compact JSON object carried in a close frame's reason.
type CloseReason struct {
	R       string `json:"r"`
	RetryMs int64  `json:"retry_ms,omitempty"`
}

// ClosePayload builds a close frame payload: the code followed by the JSON
// reason, cut to fit the 123-byte limit (the reason words are short, so this
// never triggers in practice). Cutting shortens R on a rune boundary until
// the encoded object fits, escapes included, and keeps retry_ms.
func ClosePayload(code int, reason CloseReason) []byte {
	text, _ := json.Marshal(reason)
	if len(text) > MaxCloseReasonBytes {
		cut := reason
		cut.R = cut.R[:min(len(cut.R), MaxCloseReasonBytes)]
		for {
			text, _ = json.Marshal(cut)
			if len(text) <= MaxCloseReasonBytes || cut.R == "" {
				break
			}
			_, size := utf8.DecodeLastRuneInString(cut.R)
			cut.R = cut.R[:len(cut.R)-size]
		}
	}
	buf := make([]byte, 2, 2+len(text))
	binary.BigEndian.PutUint16(buf, uint16(code))
	return append(buf, text...)
}

// ParseCloseReason decodes a close reason; ok is false if it is not ours.
func ParseCloseReason(text string) (CloseReason, bool) {
	var r CloseReason
	if err := json.Unmarshal([]byte(text), &r); err != nil || r.R == "" {
		return CloseReason{}, false
	}
	return r, true
}
