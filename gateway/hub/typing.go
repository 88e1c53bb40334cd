package hub

import (
	"time"

	"github.com/chatgate/chatgate/gateway/broker"
	"github.com/chatgate/chatgate/gateway/protocol"
)

// Typing implements broker.Typist: the frame goes to every member of
// another user, under the room's lock, like a message but without a seq.
func (m *membership) Typing() {
	r := m.r
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.index[m.sub]; !ok || r.closed || len(r.users) > r.hub.cfg.PresenceMaxMembers {
		return
	}
	u := m.sub.User()
	if !r.typing.Allow(u.ID, now) {
		return
	}
	f := &broker.Frame{Data: protocol.Typing(r.name, u)}
	for _, s := range r.members {
		if s.User().ID != u.ID {
			s.Enqueue(f)
		}
	}
}
