package cluster

import (
	"context"

	"github.com/chatgate/chatgate/gateway/broker"
	"github.com/chatgate/chatgate/gateway/protocol"
)

// join adds sub and queues joined (+ the replay after since). ok is false
// when the room was torn down and the caller must look it up again.
func (r *room) join(sub broker.Subscriber, since *uint64) (broker.Membership, bool, *protocol.Error) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil, false, nil
	}
	// Checked under the room's lock, as a ban's removal runs under it: a
	// join racing a ban is refused here or removed by it.
	if perr := r.bp.banned(r.name, sub.User().ID); perr != nil {
		empty := r.emptyLocked()
		r.mu.Unlock()
		if empty {
			r.close() // set up for this joiner alone
		}
		return nil, true, perr
	}
	m, already := r.index[sub]
	if !already {
		m = &member{sub: sub}
		r.addLocked(m)
	}
	joinSeq, lastMsg, floor, ep := r.lastSeq, r.lastMsg, r.floor, r.epoch
	online, members := r.pres.joinerView(sub.User().ID, r.bp.cfg.Rooms.PresenceMaxMembers)
	if since == nil {
		sub.Enqueue(&broker.Frame{Data: protocol.Joined(r.name, joinSeq, online, members, nil)})
		r.mu.Unlock()
		return &membership{r: r, m: m}, true, nil
	}
	m.buffering = true
	r.mu.Unlock()

	var err error
	ahead := false
	if *since > joinSeq {
		// A position this replica has not delivered up to: the client comes
		// from a replica further along, or from a quiet room's joined.seq
		// there. If the stream has handed it out, the client holds every
		// message of the room up to it: join at since, replay nothing, and
		// skip the room's messages up to since that arrive here later.
		ahead, err = r.handedOut(*since)
		if ahead {
			joinSeq = *since
		}
	}
	var replay []stored
	var recovered bool
	if err == nil {
		replay, recovered, err = r.replay(*since, joinSeq, lastMsg, floor)
	}
	if err != nil {
		r.mu.Lock()
		if already {
			r.releaseLocked(m, 0)
		} else {
			r.removeLocked(m)
		}
		empty := r.emptyLocked()
		r.mu.Unlock()
		if empty {
			r.close()
		}
		r.bp.log.Debug("cannot replay room history", "err", err)
		return nil, true, unavailable("cannot read the room's history now; try again")
	}
	r.mu.Lock()
	switch {
	case r.epoch != ep:
		recovered = false // the room moved to a new stream meanwhile
	case ahead:
		m.skipTo = max(m.skipTo, *since)
	}
	r.mu.Unlock()
	// The member is still buffering, so nothing else of this room reaches
	// sub until release: joined, then the replay, then the held frames.
	sub.Enqueue(&broker.Frame{Data: protocol.Joined(r.name, joinSeq, online, members, &recovered)})
	last := *since
	for _, st := range replay {
		sub.Enqueue(&broker.Frame{Data: st.data, Replay: true})
		last = st.seq
	}
	if len(replay) > 0 {
		r.bp.obs.HistoryReplayed(len(replay))
	}
	r.mu.Lock()
	r.releaseLocked(m, max(last, joinSeq))
	r.mu.Unlock()
	return &membership{r: r, m: m}, true, nil
}

// handedOut reports whether the stream has reached seq (its last seq is at
// or above it).
func (r *room) handedOut(seq uint64) (bool, error) {
	bp := r.bp
	s := bp.streamHandle()
	if s == nil || !bp.Up() {
		return false, errUnavailable
	}
	ctx, cancel := context.WithTimeout(context.Background(), bp.cfg.PublishTimeout)
	defer cancel()
	info, err := s.Info(ctx)
	if err != nil {
		return false, err
	}
	return info.State.LastSeq >= seq, nil
}

// releaseLocked queues what m held (messages after upTo only) and makes it
// live.
func (r *room) releaseLocked(m *member, upTo uint64) {
	for _, b := range m.buf {
		if b.seq == 0 || b.seq > upTo {
			m.sub.Enqueue(b.f)
		}
	}
	m.buf, m.buffering = nil, false
}

// replay reads the room's stored messages in (since, joinSeq] and says
// whether they are every message of the room in that range (see
// replayComplete).
func (r *room) replay(since, joinSeq, lastMsg, floor uint64) ([]stored, bool, error) {
	if since >= joinSeq {
		return nil, replayComplete(since, joinSeq, lastMsg, floor, nil), nil
	}
	if !r.bp.Up() {
		return nil, false, errUnavailable
	}
	msgs, err := r.bp.fetch(r.name, since+1, joinSeq)
	if err != nil {
		return nil, false, err
	}
	links := make([]link, len(msgs))
	for i := range msgs {
		links[i] = msgs[i].link
	}
	return msgs, replayComplete(since, joinSeq, lastMsg, floor, links), nil
}
