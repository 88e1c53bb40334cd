package api

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/chatgate/chatgate/gateway/protocol"
)

// The requests and answers of the API, as docs/api.md shows them. The
// server reads and writes these; Client (client.go) sends and reads them.

// PublishRequest is POST /v1/publish, and one message of a batch.
type PublishRequest struct {
	Room string `json:"room"`
	Text string `json:"text"`
	// Sender names the system sender (1-32 characters, the rules of a
	// display name); empty means DefaultSender.
	Sender string `json:"sender,omitempty"`
}

// PublishResult is a published message's room and seq.
type PublishResult struct {
	Room string `json:"room"`
	Seq  uint64 `json:"seq"`
}

// BatchRequest is POST /v1/publish/batch: 1 to MaxBatch messages.
type BatchRequest struct {
	Messages []PublishRequest `json:"messages"`
}

// BatchResult is one message's outcome in a batch: its seq, or its error.
type BatchResult struct {
	Room  string `json:"room"`
	Seq   uint64 `json:"seq,omitempty"`
	Error *Error `json:"error,omitempty"`
}

// BatchResponse answers a batch, one result per message in order.
type BatchResponse struct {
	Results []BatchResult `json:"results"`
}

// BanSpec is the optional ban of a disconnect.
type BanSpec struct {
	Room    string `json:"room"`
	Seconds int64  `json:"seconds"`
}

// DisconnectRequest is POST /v1/disconnect: every connection of User, or
// the connection Conn (of User when both are given), optionally banning
// User from a room first.
type DisconnectRequest struct {
	User string   `json:"user,omitempty"`
	Conn string   `json:"conn,omitempty"`
	Ban  *BanSpec `json:"ban,omitempty"`
}

// BanResult is a ban in force.
type BanResult struct {
	Room  string    `json:"room"`
	User  string    `json:"user"`
	Until time.Time `json:"until"`
}

// DisconnectResponse says how many connections were closed (on the
// replicas that answered in time) and the ban, if any.
type DisconnectResponse struct {
	Disconnected int        `json:"disconnected"`
	Ban          *BanResult `json:"ban,omitempty"`
}

// BanRequest is POST /v1/ban.
type BanRequest struct {
	Room    string `json:"room"`
	User    string `json:"user"`
	Seconds int64  `json:"seconds"`
}

// UnbanRequest is POST /v1/unban, and its answer.
type UnbanRequest struct {
	Room string `json:"room"`
	User string `json:"user"`
}

// RoomCount is one active room.
type RoomCount struct {
	Room        string `json:"room"`
	Online      int    `json:"online"`
	Connections int    `json:"connections"`
}

// RoomsResponse answers GET /v1/rooms; Next, when set, is the after of the
// next page.
type RoomsResponse struct {
	Rooms []RoomCount `json:"rooms"`
	Next  string      `json:"next,omitempty"`
}

// PresentUser is one user in a room.
type PresentUser struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Connections int    `json:"connections"`
}

// PresenceResponse answers GET /v1/rooms/{room}/presence.
type PresenceResponse struct {
	Room        string        `json:"room"`
	Online      int           `json:"online"`
	Connections int           `json:"connections"`
	Users       []PresentUser `json:"users"`
}

// HistoryResponse answers GET /v1/rooms/{room}/history: the message
// envelopes as members received them, oldest first.
type HistoryResponse struct {
	Room      string            `json:"room"`
	Seq       uint64            `json:"seq"`
	Recovered *bool             `json:"recovered,omitempty"`
	Truncated bool              `json:"truncated"`
	Messages  []json.RawMessage `json:"messages"`
}

// Error is an error as the API writes it: the protocol's error envelope
// without its type and ref. Status is the HTTP status it came with (not
// part of the JSON).
type Error struct {
	Code         protocol.ErrorCode `json:"code"`
	Message      string             `json:"message"`
	RetryAfterMs int64              `json:"retry_after_ms,omitempty"`
	Status       int                `json:"-"`
}

func (e *Error) Error() string {
	if e.Status != 0 {
		return http.StatusText(e.Status) + ": " + string(e.Code) + ": " + e.Message
	}
	return string(e.Code) + ": " + e.Message
}
