package gateway

import (
	"golang.org/x/time/rate"

	"github.com/chatgate/chatgate/gateway/protocol"
)

// Typing indicators: a connection says {"type":"typing","room":r} while
// its user composes a message in r, and the broker relays it to the room's
// other users (broker.Typist: coalesced per user, not stored, not
// sequenced). Typing has a rate limit of its own per connection, apart
// from the send budgets, so that typing never costs a message: as many
// per second as the connection may send messages (at least one), with a
// burst of typingBurstExtra more than its send burst. A client typing a
// message after each one it sends (as the web page does when someone
// chats fast) stays within it.
const typingBurstExtra = 5

// typingLimits are the rate and burst of a connection's typing limit.
func (c *client) typingLimits() (rate.Limit, int) {
	return max(c.sendLim.Limit(), 1), c.sendLim.Burst() + typingBurstExtra
}

// typingLimiter is a connection's typing limit; nil until its first
// typing request (most connections never type). Owned by the request
// handler.
type typingLimiter struct{ lim *rate.Limiter }

// typing handles a typing request for room.
func (c *client) typing(room, ref string) {
	if !c.srv.cfg.Typing {
		c.reject(&protocol.Error{Code: protocol.CodeUnknownType, Message: `unknown type "typing"`, Ref: ref})
		return
	}
	m, ok := c.rooms[room]
	if !ok {
		c.reject(protocol.NotJoinedError(room, ref))
		return
	}
	if c.typingLim.lim == nil {
		c.typingLim.lim = rate.NewLimiter(c.typingLimits())
	}
	if !c.typingLim.lim.Allow() {
		c.reject(&protocol.Error{Code: protocol.CodeRateLimited, Message: "typing too often; dropped", Ref: ref, RetryAfterMs: retryAfterMs(c.typingLim.lim)})
		return
	}
	m.Typing()
}
