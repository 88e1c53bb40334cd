package protocol

import "encoding/json"

// Server → client frames. Each encoder returns one JSON object with no
// trailing newline; the writer joins several with '\n' into one text frame.

type welcomeFrame struct {
	Type   string `json:"type"`
	Conn   string `json:"conn"`
	User   User   `json:"user"`
	Node   string `json:"node"`
	Limits Limits `json:"limits"`
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
	Type string `json:"type"`
	Room string `json:"room"`
}

type errorFrame struct {
	Type         string    `json:"type"`
	Code         ErrorCode `json:"code"`
	Message      string    `json:"message"`
	Ref          string    `json:"ref,omitempty"`
	RetryAfterMs int64     `json:"retry_after_ms,omitempty"`
}

// mustMarshal encodes v. Every frame type above is made of strings,
// numbers and slices of them, which encoding/json cannot fail on.
func mustMarshal(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("protocol: encoding a frame: " + err.Error())
	}
	return b
}

// Welcome is the first frame on every connection.
func Welcome(conn string, user User, node string, limits Limits) []byte {
	return mustMarshal(welcomeFrame{Type: "welcome", Conn: conn, User: user, Node: node, Limits: limits})
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

// ErrorEnvelope encodes e as an error frame.
func ErrorEnvelope(e *Error) []byte {
	return mustMarshal(errorFrame{Type: "error", Code: e.Code, Message: e.Message, Ref: e.Ref, RetryAfterMs: e.RetryAfterMs})
}
