package protocol

import (
	"bytes"
	"encoding/json"
	"math"
	"strings"
	"sync"
)

// Server → client frames. Each encoder returns one JSON object with no
// trailing newline; the writer joins several with '\n' into one text frame.

type welcomeFrame struct {
	Type     string      `json:"type"`
	Conn     string      `json:"conn"`
	User     User        `json:"user"`
	Node     string      `json:"node"`
	Limits   Limits      `json:"limits"`
	Features []string    `json:"features,omitempty"`
	Guest    *GuestGrant `json:"guest,omitempty"`
}

type joinedFrame struct {
	Type      string `json:"type"`
	Room      string `json:"room"`
	Seq       uint64 `json:"seq"`
	Online    int    `json:"online"`
	Members   []User `json:"members,omitempty"`
	Recovered *bool  `json:"recovered,omitempty"`
}

type messageFrame struct {
	Type string `json:"type"`
	Room string `json:"room"`
	Seq  uint64 `json:"seq"`
	From User   `json:"from"`
	Text string `json:"text"`
	TS   int64  `json:"ts"`
	// System marks a message the application's backend published through
	// the server API, not a member's send.
	System bool `json:"system,omitempty"`
}

type ackFrame struct {
	Type string `json:"type"`
	Ref  string `json:"ref,omitempty"`
	Room string `json:"room"`
	Seq  uint64 `json:"seq"`
}

type presenceFrame struct {
	Type   string `json:"type"`
	Room   string `json:"room"`
	Joined []User `json:"joined,omitempty"`
	Left   []User `json:"left,omitempty"`
	Online int    `json:"online"`
}

type roomFrame struct {
	Type   string `json:"type"`
	Room   string `json:"room"`
	Reason string `json:"reason,omitempty"`
}

type errorFrame struct {
	Type         string    `json:"type"`
	Code         ErrorCode `json:"code"`
	Message      string    `json:"message"`
	Ref          string    `json:"ref,omitempty"`
	RetryAfterMs int64     `json:"retry_after_ms,omitempty"`
}

// frameEncoder is a JSON encoder writing into its own buffer.
type frameEncoder struct {
	buf bytes.Buffer
	enc *json.Encoder
}

// encoders are reused: an Encoder cannot be reset to a fresh buffer.
var encoders = sync.Pool{New: func() any {
	e := new(frameEncoder)
	e.enc = json.NewEncoder(&e.buf)
	// '<', '>' and '&' stay one byte each instead of six (\u003c):
	// nothing here is embedded in HTML, and clients display text as text.
	// Control characters, U+2028 and U+2029 are still escaped, and invalid
	// UTF-8 becomes U+FFFD, as with json.Marshal.
	e.enc.SetEscapeHTML(false)
	return e
}}

// maxPooledEncoder is the largest buffer an encoder keeps when it goes back
// to the pool.
const maxPooledEncoder = 64 << 10

// mustMarshal encodes v as compact JSON without HTML escaping. Every frame
// type above is made of strings, numbers and slices of them, which
// encoding/json cannot fail on.
func mustMarshal(v any) []byte {
	e := encoders.Get().(*frameEncoder)
	e.buf.Reset()
	if err := e.enc.Encode(v); err != nil {
		panic("protocol: encoding a frame: " + err.Error())
	}
	b := e.buf.Bytes()
	out := bytes.Clone(b[:len(b)-1]) // without the Encoder's trailing newline
	if e.buf.Cap() <= maxPooledEncoder {
		encoders.Put(e)
	}
	return out
}

// Welcome is the first frame on every connection.
func Welcome(conn string, user User, node string, limits Limits) []byte {
	return WelcomeWith(conn, user, node, limits, WelcomeExtras{})
}

// WelcomeExtras are the optional parts of welcome.
type WelcomeExtras struct {
	// Features lists the optional envelope types the gateway handles
	// (FeatureTyping); omitted when none.
	Features []string
	// Guest is an anonymous user's resumable identity; nil with --auth
	// jwt or without guest credentials.
	Guest *GuestGrant
}

// GuestGrant carries a guest credential: offered back as the subprotocol
// "guest.<credential>" on a reconnect, it makes the client the same guest
// (docs/protocol.md, "Guest identity").
type GuestGrant struct {
	Credential string `json:"credential"`
}

// WelcomeWith is Welcome with its optional parts.
func WelcomeWith(conn string, user User, node string, limits Limits, x WelcomeExtras) []byte {
	return mustMarshal(welcomeFrame{Type: "welcome", Conn: conn, User: user, Node: node, Limits: limits, Features: x.Features, Guest: x.Guest})
}

// Joined confirms a join. members is nil in count-only (large room) mode.
// recovered is nil when the join carried no since.
func Joined(room string, seq uint64, online int, members []User, recovered *bool) []byte {
	return mustMarshal(joinedFrame{Type: "joined", Room: room, Seq: seq, Online: online, Members: members, Recovered: recovered})
}

// Message is one chat message; ts is unix milliseconds at acceptance.
func Message(room string, seq uint64, from User, text string, ts int64) []byte {
	return mustMarshal(messageFrame{Type: "message", Room: room, Seq: seq, From: from, Text: text, TS: ts})
}

// SystemSenderID is the from.id of every system message.
const SystemSenderID = "system"

// SystemMessage is a message the application's backend published through
// the server API as the system sender named name: from is
// {"id":"system","name":name} and "system":true marks it, so a client can
// tell it from a member's message whatever the member's id. It is never
// longer than a member's message with the same text (the sender's id and
// name are shorter than the longest a member may have), so
// MaxMessageEnvelopeBytes bounds it too.
func SystemMessage(room string, seq uint64, name, text string, ts int64) []byte {
	return mustMarshal(messageFrame{Type: "message", Room: room, Seq: seq, From: User{ID: SystemSenderID, Name: name}, Text: text, TS: ts, System: true})
}

// Ack tells a sender its message was sequenced.
func Ack(ref, room string, seq uint64) []byte {
	return mustMarshal(ackFrame{Type: "ack", Ref: ref, Room: room, Seq: seq})
}

// Presence carries coalesced membership changes; joined and left are nil in
// count-only mode.
func Presence(room string, joined, left []User, online int) []byte {
	return mustMarshal(presenceFrame{Type: "presence", Room: room, Joined: joined, Left: left, Online: online})
}

// Left confirms a leave.
func Left(room string) []byte {
	return mustMarshal(roomFrame{Type: "left", Room: room})
}

// LeftReasonBanned is the reason of a left frame the gateway sends unasked
// when a moderator bans the connection's user from the room.
const LeftReasonBanned = "banned"

// Removed tells a connection it is no longer in room, unasked, and why
// (LeftReasonBanned).
func Removed(room, reason string) []byte {
	return mustMarshal(roomFrame{Type: "left", Room: room, Reason: reason})
}

// ErrorEnvelope encodes e as an error frame.
func ErrorEnvelope(e *Error) []byte {
	return mustMarshal(errorFrame{Type: "error", Code: e.Code, Message: e.Message, Ref: e.Ref, RetryAfterMs: e.RetryAfterMs})
}

// Worst-case sizes. JSON may take 6 bytes for one byte of a string (a
// control character is written \u00XX), so an envelope can be far longer
// than the text it carries. These sizes are what --max-frame-bytes and
// --queue-bytes must hold, and what history costs at worst.

// maxEscapedBytes is the most bytes JSON writes for one byte of a string.
const maxEscapedBytes = 6

// MaxSendEnvelopeBytes is the longest compact send envelope a client can
// write for a text of maxText bytes (counted after JSON unescaping, as
// max_text_bytes is): every byte of the text and of a 64-byte ref escaped
// as \u00XX, a 64-byte room name. A frame limit at least this large never
// refuses a send the text limit allows.
func MaxSendEnvelopeBytes(maxText int) int {
	return sendOverhead() + maxEscapedBytes*maxText
}

// MaxMessageEnvelopeBytes is the longest message envelope the gateway can
// encode for a text of maxText bytes: every byte of the text escaped, the
// longest user id a token may carry (128 bytes) escaped too, the longest
// display name (32 four-byte runes), a 64-byte room name and the largest
// seq and timestamp. It is what one message costs at most in a queue and
// in a room's history.
func MaxMessageEnvelopeBytes(maxText int) int {
	return messageOverhead() + maxEscapedBytes*maxText
}

// The envelopes' size without their text, at their worst.
var (
	sendOverhead = sync.OnceValue(func() int {
		return len(mustMarshal(struct {
			Type string `json:"type"`
			Room string `json:"room"`
			Text string `json:"text"`
			Ref  string `json:"ref"`
		}{TypeSend, strings.Repeat("r", 64), "", strings.Repeat("\x01", MaxRefBytes)}))
	})
	messageOverhead = sync.OnceValue(func() int {
		from := User{ID: strings.Repeat("\x01", 128), Name: strings.Repeat("\U0010FFFF", 32)}
		return len(Message(strings.Repeat("r", 64), math.MaxUint64, from, "", math.MinInt64))
	})
)
