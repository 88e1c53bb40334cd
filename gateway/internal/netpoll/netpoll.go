// Package netpoll tells a server which of its TCP connections can be read
// or written, so that an idle connection needs no goroutine blocked in
// Read. On Linux it is epoll; elsewhere New reports ErrUnsupported and the
// server keeps a goroutine per connection.
//
// A connection is registered once, edge-triggered, for both directions:
// its Handler hears each time the socket becomes readable (data, end of
// stream or an error) or writable again after a write found it full. The
// Handler runs on the poller's goroutine and must not block: it hands the
// work to another goroutine.
package netpoll

import "errors"

// Event is what became ready.
type Event uint8

const (
	// Readable: data, the peer's end of stream, or an error is waiting;
	// a read will not block.
	Readable Event = 1 << iota
	// Writable: the send buffer has room again.
	Writable
)

// Handler hears a registered connection's readiness.
type Handler interface {
	// Ready is called on the poller's goroutine; it must not block.
	Ready(Event)
}

// ErrUnsupported is returned by New where there is no poller.
var ErrUnsupported = errors.New("netpoll: not supported on this system")

// ErrClosed is returned by Add after Close.
var ErrClosed = errors.New("netpoll: poller closed")
