// Package protocol defines chatgate's wire protocol v1: the JSON envelopes a
// client sends and receives over the WebSocket, their validation, and the
// close codes the gateway uses. See docs/protocol.md for the contract.
package protocol

import (
	"bytes"
	"encoding/json"
	"regexp"
	"strconv"
	"strings"
)

// Subprotocol is the WebSocket subprotocol the gateway offers.
const Subprotocol = "chatgate.v1"

// MaxRefBytes is the longest client-chosen ref the gateway echoes back.
const MaxRefBytes = 64

// DefaultMaxTextBytes is the longest message text, in bytes, unless the
// gateway is configured otherwise (--max-text-bytes).
const DefaultMaxTextBytes = 4096

// Client → server envelope types.
const (
	TypeJoin  = "join"
	TypeLeave = "leave"
	TypeSend  = "send"
)

// User identifies a chat participant.
type User struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// Limits are announced to every client in its welcome frame.
type Limits struct {
	SendPerSec   float64 `json:"send_per_sec"`
	SendBurst    int     `json:"send_burst"`
	MaxTextBytes int     `json:"max_text_bytes"`
	MaxRooms     int     `json:"max_rooms"`
	// QueueBytes is how much the gateway queues for a client that reads
	// too slowly before closing it with 4008; WriteTimeoutMs how long one
	// write to it may block before the socket is dropped.
	QueueBytes     int   `json:"queue_bytes"`
	WriteTimeoutMs int64 `json:"write_timeout_ms"`
	// SharedSendPerSec and SharedSendBurst are the send budget this
	// connection shares with every other connection of its user (with
	// --auth jwt) or of its address (anonymous), on top of its own.
	SharedSendPerSec float64 `json:"shared_send_per_sec"`
	SharedSendBurst  int     `json:"shared_send_burst"`
}

// Inbound is one decoded client → server envelope.
type Inbound struct {
	Type  string  `json:"type"`
	Room  string  `json:"room"`
	Text  string  `json:"text"`
	Ref   string  `json:"ref"`
	Since *uint64 `json:"since"`
}

var roomPattern = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

// ValidRoom reports whether name is an acceptable room name.
func ValidRoom(name string) bool {
	if len(name) == 0 || len(name) > 64 {
		return false
	}
	return roomPattern.MatchString(name)
}

// Decode parses and validates one client frame. maxText is the largest
// accepted text in bytes. On failure it returns an *Error ready to be sent
// back; Ref is filled in whenever the frame carried a usable one.
func Decode(data []byte, maxText int) (Inbound, *Error) {
	var in Inbound
	if err := json.Unmarshal(data, &in); err != nil {
		// Salvage the ref, if any, so the client can match the error.
		e := &Error{Code: CodeBadRequest, Message: "frame is not a valid JSON envelope"}
		if ref := salvageRef(data); len(ref) <= MaxRefBytes {
			e.Ref = ref
		}
		return Inbound{}, e
	}
	if len(in.Ref) > MaxRefBytes {
		return Inbound{}, &Error{Code: CodeBadRequest, Message: "ref is longer than " + strconv.Itoa(MaxRefBytes) + " bytes"}
	}
	fail := func(code ErrorCode, msg string) (Inbound, *Error) {
		return Inbound{}, &Error{Code: code, Message: msg, Ref: in.Ref}
	}
	switch in.Type {
	case TypeJoin, TypeLeave, TypeSend, TypeTyping:
	case "":
		return fail(CodeBadRequest, "missing type")
	default:
		return fail(CodeUnknownType, "unknown type "+strconv.Quote(truncate(in.Type, 32)))
	}
	if !ValidRoom(in.Room) {
		return fail(CodeInvalidRoom, invalidRoomMessage)
	}
	if in.Type != TypeJoin && in.Since != nil {
		return fail(CodeBadRequest, "since is only valid on join")
	}
	if in.Type == TypeSend {
		if in.Text == "" {
			return fail(CodeBadRequest, "text must not be empty")
		}
		if len(in.Text) > maxText {
			return fail(CodeTooLarge, "text is longer than "+strconv.Itoa(maxText)+" bytes")
		}
	} else if in.Text != "" {
		return fail(CodeBadRequest, "text is only valid on send")
	}
	return in, nil
}

// salvageRef returns the string ref of a frame that failed to decode, read
// token by token so that a ref before a syntax error (a truncated frame,
// trailing garbage) or beside a mistyped field is still found. Like
// encoding/json it matches the key case-insensitively and keeps the last.
func salvageRef(data []byte) string {
	dec := json.NewDecoder(bytes.NewReader(data))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return ""
	}
	var ref string
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			break
		}
		key, _ := t.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			break
		}
		var s string
		if strings.EqualFold(key, "ref") && json.Unmarshal(raw, &s) == nil {
			ref = s
		}
	}
	return ref
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
