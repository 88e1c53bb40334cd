// Package observe defines the hook points through which the gateway reports
// what it does: the metrics package implements Observer for Prometheus, and
// tests implement it to wait on events. Every label-like argument is a
// closed, typed vocabulary; nothing here carries a room, user or connection
// id.
package observe

import (
	"time"

	"go.opentelemetry.io/otel/trace"
)

// DisconnectReason says why a connection ended.
type DisconnectReason string

// Disconnect reasons.
const (
	DisconnectClientClose    DisconnectReason = "client_close"
	DisconnectReadError      DisconnectReason = "read_error"
	DisconnectPingTimeout    DisconnectReason = "ping_timeout"
	DisconnectWriteTimeout   DisconnectReason = "write_timeout"
	DisconnectWriteError     DisconnectReason = "write_error"
	DisconnectSlowConsumer   DisconnectReason = "slow_consumer"
	DisconnectOverloaded     DisconnectReason = "overloaded"
	DisconnectRateAbuse      DisconnectReason = "rate_abuse"
	DisconnectProtocolError  DisconnectReason = "protocol_error"
	DisconnectTooLarge       DisconnectReason = "too_large"
	DisconnectTooManyFrames  DisconnectReason = "too_many_frames"
	DisconnectBinaryFrame    DisconnectReason = "binary_frame"
	DisconnectInvalidUTF8    DisconnectReason = "invalid_utf8"
	DisconnectDrain          DisconnectReason = "drain"
	DisconnectShutdownForced DisconnectReason = "shutdown_forced"
	DisconnectInternal       DisconnectReason = "internal"
	DisconnectTokenExpired   DisconnectReason = "token_expired"
	// DisconnectKicked: the application's backend disconnected the
	// connection through the server API.
	DisconnectKicked DisconnectReason = "kicked"
)

// DisconnectReasons lists every DisconnectReason.
var DisconnectReasons = []DisconnectReason{
	DisconnectClientClose, DisconnectReadError, DisconnectPingTimeout, DisconnectWriteTimeout,
	DisconnectWriteError, DisconnectSlowConsumer, DisconnectOverloaded, DisconnectRateAbuse,
	DisconnectProtocolError, DisconnectTooLarge, DisconnectTooManyFrames, DisconnectBinaryFrame, DisconnectInvalidUTF8,
	DisconnectDrain, DisconnectShutdownForced, DisconnectInternal, DisconnectTokenExpired, DisconnectKicked,
}

// RejectReason says why a connection attempt was refused before upgrade.
type RejectReason string

// Reject reasons.
const (
	RejectOrigin     RejectReason = "origin"
	RejectCapacity   RejectReason = "capacity"
	RejectPerIP      RejectReason = "per_ip"
	RejectRate       RejectReason = "rate"
	RejectDraining   RejectReason = "draining"
	RejectBadRequest RejectReason = "bad_request"
	RejectAuth       RejectReason = "auth"
	RejectPerUser    RejectReason = "per_user"
	// RejectTCPPerIP: a TCP connection closed at accept because its
	// address already had --max-tcp-conns-per-ip open.
	RejectTCPPerIP RejectReason = "tcp_per_ip"
)

// RejectReasons lists every RejectReason.
var RejectReasons = []RejectReason{
	RejectOrigin, RejectCapacity, RejectPerIP, RejectRate, RejectDraining, RejectBadRequest,
	RejectAuth, RejectPerUser, RejectTCPPerIP,
}

// Observer receives the gateway's events. Implementations must be safe for
// concurrent use and must not block; calls sit on hot paths.
type Observer interface {
	// Connections.
	ConnAccepted()
	ConnRejected(RejectReason)
	// Disconnecting is called once per connection, when the gateway decides
	// (or learns) that it ends, with the first reason; ConnClosed follows
	// once its socket is closed and its goroutines are done.
	Disconnecting(DisconnectReason)
	ConnClosed()

	// Inbound traffic: every data frame read, then the verdict on each
	// client request (ok, or the error code sent back).
	FrameReceived(bytes int)
	MessageAccepted()
	RequestRejected(code string)

	// Outbound traffic. Fanout is called once per broadcast with the time
	// it took to enqueue to all local members. FrameWritten is called once
	// per write to a client's socket that completed WebSocket data
	// messages: their payload bytes, how many, and how long the write
	// took (a message may carry several envelopes). Delivered
	// is called once per chat message written to a recipient with the time
	// since the gateway accepted it, and the message's trace id when it was
	// traced (zero otherwise).
	Fanout(recipients int, d time.Duration)
	FrameWritten(bytes, messages int, d time.Duration)
	Delivered(latency time.Duration, trace trace.TraceID)
	QueueSampled(bytes int)

	// Rooms and presence.
	RoomOpened()
	RoomClosed()
	RoomSize(members int)
	PresenceSent(frames int)
	HistoryReplayed(messages int)

	// Lifecycle. WatchReadiness hands over the gateway's readiness check
	// once, at construction: the observer calls it whenever it reports
	// readiness (chatgate_ready, at each scrape), so what it reports is
	// what /readyz answers at that moment, whatever the cause.
	WatchReadiness(ready func() bool)
	SetDraining(bool)
	SetDrainRemaining(n int)
}

// Nop is an Observer that does nothing.
type Nop struct{}

func (Nop) ConnAccepted()                          {}
func (Nop) ConnRejected(RejectReason)              {}
func (Nop) Disconnecting(DisconnectReason)         {}
func (Nop) ConnClosed()                            {}
func (Nop) FrameReceived(int)                      {}
func (Nop) MessageAccepted()                       {}
func (Nop) RequestRejected(string)                 {}
func (Nop) Fanout(int, time.Duration)              {}
func (Nop) FrameWritten(int, int, time.Duration)   {}
func (Nop) Delivered(time.Duration, trace.TraceID) {}
func (Nop) QueueSampled(int)                       {}
func (Nop) RoomOpened()                            {}
func (Nop) RoomClosed()                            {}
func (Nop) RoomSize(int)                           {}
func (Nop) PresenceSent(int)                       {}
func (Nop) HistoryReplayed(int)                    {}
func (Nop) WatchReadiness(func() bool)             {}
func (Nop) SetDraining(bool)                       {}
func (Nop) SetDrainRemaining(int)                  {}

var _ Observer = Nop{}

// APIEndpoint names a server API endpoint, for metrics and spans.
type APIEndpoint string

// Server API endpoints; APIOther is every path that is none of them.
const (
	APIPublish      APIEndpoint = "publish"
	APIPublishBatch APIEndpoint = "publish_batch"
	APIDisconnect   APIEndpoint = "disconnect"
	APIBan          APIEndpoint = "ban"
	APIUnban        APIEndpoint = "unban"
	APIRooms        APIEndpoint = "rooms"
	APIPresence     APIEndpoint = "presence"
	APIHistory      APIEndpoint = "history"
	APIOther        APIEndpoint = "other"
)

// APIEndpoints lists every APIEndpoint.
var APIEndpoints = []APIEndpoint{
	APIPublish, APIPublishBatch, APIDisconnect, APIBan, APIUnban, APIRooms, APIPresence, APIHistory, APIOther,
}

// APIResults lists what a server API request can end with: "ok", or the
// code of the error it was answered with (the protocol's codes the API
// uses, and its own: unauthorized, not_found, method_not_allowed).
var APIResults = []string{
	"ok", "bad_request", "too_large", "rate_limited", "invalid_room", "room_limit",
	"unavailable", "internal", "unauthorized", "forbidden", "not_found", "method_not_allowed",
}

// APIObserver receives the server API's events. Like Observer it must be
// safe for concurrent use and must not block.
type APIObserver interface {
	// APIRequest is called once per request with its endpoint, its result
	// (one of APIResults) and how long it took.
	APIRequest(endpoint APIEndpoint, result string, d time.Duration)
}
