package cluster

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/chatgate/chatgate/gateway/broker"
	"github.com/chatgate/chatgate/gateway/protocol"
)

// The server API's side of the backplane (broker.Operator), for the whole
// cluster whichever replica the API call reaches:
//
//   - A system message goes through the same publisher as members' sends:
//     a JetStream publish that expects the room's last seq and names it in
//     Chatgate-Prev, so it takes its place in the room's one order, is
//     stored, and reaches every replica serving the room live (or by
//     repair), exactly like a member's message. A replica that does not
//     serve the room publishes through a standalone publisher of its own.
//   - Presence, the active rooms, disconnects and bans are asked of every
//     replica on core NATS (chatgate.api.<what>): the asking replica
//     publishes the request with a reply inbox and waits, at most
//     gatherWait, for an answer from every replica its census knows.
//   - Bans are also stored in a JetStream key-value bucket (<stream>_BANS)
//     that every replica watches, so a replica that starts, or reconnects,
//     after a ban knows it; each ban carries the bucket revision that set
//     it, so the two paths cannot undo each other.
//   - History is read from the stream with batched Direct Gets, as a
//     repair or a join's replay reads it.

const (
	apiPrefix = "chatgate.api." // requests between replicas for the server API
	// gatherWait bounds the wait for the other replicas' answers.
	gatherWait = 2 * time.Second
	// maxSystemPublishers bounds the standalone publishers kept for rooms
	// this replica does not serve.
	maxSystemPublishers = 1024
)

var _ broker.Operator = (*Backplane)(nil)

// apiRequest is one request between replicas.
type apiRequest struct {
	R     string `json:"r"` // the asking replica
	Room  string `json:"room,omitempty"`
	User  string `json:"user,omitempty"`
	Conn  string `json:"conn,omitempty"`
	Until int64  `json:"until,omitempty"` // ban: unix ms; 0 lifts
	Rev   uint64 `json:"rev,omitempty"`   // ban: the bucket revision
	After string `json:"after,omitempty"` // rooms
	Limit int    `json:"limit,omitempty"` // rooms
}

// apiReply is one replica's answer.
type apiReply struct {
	R     string          `json:"r"`
	N     int             `json:"n,omitempty"` // disconnect: connections closed
	Users []protocol.User `json:"u,omitempty"` // presence: local users
	Conns []int           `json:"c,omitempty"` // presence: their local connections
	Rooms []roomCount     `json:"rooms,omitempty"`
	More  bool            `json:"more,omitempty"`
}

type roomCount struct {
	Room   string `json:"n"`
	Online int    `json:"o"` // the room's users over every replica, as this replica sees them
	Conns  int    `json:"c"` // local connections
}

// ---- publish ----

// PublishSystem implements broker.Operator. It follows a member's Publish:
// the message is stored through the room's publisher, then, when this
// replica serves the room, PublishSystem waits until this replica has
// delivered it to the room's members (systemDelivered). The whole call is
// bounded by the send's budget (PublishTimeout). A room this replica does
// not serve has no member here to wait for.
func (bp *Backplane) PublishSystem(ctx context.Context, name, sender, text string) (broker.Published, *protocol.Error) {
	if !protocol.ValidRoom(name) {
		return broker.Published{}, protocol.InvalidRoomError()
	}
	if bp.closed.Load() {
		return broker.Published{}, shuttingDown()
	}
	ctx, cancel := context.WithTimeout(ctx, bp.cfg.PublishTimeout)
	defer cancel()
	p, r := bp.systemPublisher(name)
	seq, ep, err := p.publish(ctx, protocol.User{ID: protocol.SystemSenderID, Name: sender}, text, true)
	if err != nil {
		bp.met.publishErrors.Inc()
		bp.log.Debug("system publish failed", "err", err)
		return broker.Published{}, unavailable("the message was not stored; send it again")
	}
	if r == nil {
		if bp.epoch.Load() != ep {
			bp.met.publishErrors.Inc()
			return broker.Published{}, errLostWithStream()
		}
		return broker.Published{Seq: seq}, nil
	}
	n, perr := r.systemDelivered(ctx, seq, ep)
	if perr != nil {
		return broker.Published{}, perr
	}
	return broker.Published{Seq: seq, Recipients: n}, nil
}

// systemPublisher returns the publisher of a served room (and the room),
// or a standalone publisher for a room this replica does not serve.
func (bp *Backplane) systemPublisher(name string) (*publisher, *room) {
	if r := bp.lookup(name); r != nil {
		select {
		case <-r.ready:
			if r.setupErr == nil {
				return &r.pub, r
			}
		default: // being set up: publish standalone rather than wait
		}
	}
	bp.sysMu.Lock()
	defer bp.sysMu.Unlock()
	p := bp.sysPubs[name]
	if p == nil {
		if len(bp.sysPubs) >= maxSystemPublishers {
			for k := range bp.sysPubs { // forget one: it only caches a position
				delete(bp.sysPubs, k)
				break
			}
		}
		p = &publisher{bp: bp, name: name, subject: roomPrefix + name, stale: true}
		bp.sysPubs[name] = p
	}
	return p, nil
}

// ---- history ----

// History implements broker.Operator: the room's stored messages, read as
// a first join of the room on this replica would read them.
func (bp *Backplane) History(ctx context.Context, name string, since *uint64, limit int) (broker.History, *protocol.Error) {
	if !protocol.ValidRoom(name) {
		return broker.History{}, protocol.InvalidRoomError()
	}
	s := bp.streamHandle()
	if s == nil || !bp.Up() {
		return broker.History{}, unavailable("cannot read the room's history now; try again")
	}
	ctx, cancel := context.WithTimeout(ctx, bp.cfg.PublishTimeout)
	defer cancel()
	var out broker.History
	// Where the room stands, as a room's setup finds it.
	lastMsg, pos, floor, err := standing(ctx, s, roomPrefix+name, 0)
	if err != nil {
		return out, unavailable("cannot read the room's history now; try again")
	}
	var streamLast uint64 // the stream's last seq, when read
	if lastMsg == 0 {
		streamLast = pos
	}
	bp.answer()
	out.Seq = lastMsg
	from := uint64(1)
	if since != nil {
		if *since > pos {
			// Beyond the room's newest message: recovered when the stream
			// has handed the position out (as a join there would be).
			if streamLast == 0 {
				info, err := s.Info(ctx)
				if err != nil {
					return out, unavailable("cannot read the room's history now; try again")
				}
				streamLast = info.State.LastSeq
			}
			out.Recovered = streamLast >= *since
			return out, nil
		}
		from = *since + 1
	}
	var msgs []stored
	if lastMsg != 0 && from <= pos {
		if msgs, err = bp.fetch(name, from, pos); err != nil {
			return out, unavailable("cannot read the room's history now; try again")
		}
	}
	if since != nil {
		links := make([]link, len(msgs))
		for i := range msgs {
			links[i] = msgs[i].link
		}
		out.Recovered = replayComplete(*since, pos, lastMsg, floor, links)
		if len(msgs) > limit {
			msgs, out.Truncated = msgs[:limit], true
		}
	} else if len(msgs) > limit {
		msgs, out.Truncated = msgs[len(msgs)-limit:], true
	}
	out.Messages = make([][]byte, len(msgs))
	for i := range msgs {
		out.Messages[i] = msgs[i].data
	}
	return out, nil
}

// ---- presence and rooms ----

// Presence implements broker.Operator: every replica's local users of the
// room, with their connections.
func (bp *Backplane) Presence(ctx context.Context, name string) (broker.RoomPresence, *protocol.Error) {
	if !protocol.ValidRoom(name) {
		return broker.RoomPresence{}, protocol.InvalidRoomError()
	}
	if !bp.Up() {
		return broker.RoomPresence{}, unavailable("the chat backplane is unavailable; try again")
	}
	users := map[string]*broker.PresentUser{}
	add := func(us []protocol.User, conns []int) {
		for i, u := range us {
			if i >= len(conns) {
				break
			}
			if pu := users[u.ID]; pu != nil {
				pu.Connections += conns[i]
			} else {
				users[u.ID] = &broker.PresentUser{User: u, Connections: conns[i]}
			}
		}
	}
	add(bp.localPresence(name))
	bp.gather(ctx, apiPrefix+"presence."+name, apiRequest{Room: name}, func(rep apiReply) { add(rep.Users, rep.Conns) })
	var p broker.RoomPresence
	for _, pu := range users {
		p.Users = append(p.Users, *pu)
		p.Connections += pu.Connections
	}
	p.Online = len(p.Users)
	slices.SortFunc(p.Users, func(a, b broker.PresentUser) int { return strings.Compare(a.ID, b.ID) })
	return p, nil
}

// localPresence lists this replica's users of the room and their
// connections.
func (bp *Backplane) localPresence(name string) ([]protocol.User, []int) {
	r := bp.lookup(name)
	if r == nil {
		return nil, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, nil
	}
	us := make([]protocol.User, 0, len(r.pres.local))
	cs := make([]int, 0, len(r.pres.local))
	for _, uc := range r.pres.local {
		us = append(us, uc.user)
		cs = append(cs, uc.conns)
	}
	return us, cs
}

// ActiveRooms implements broker.Operator. Each replica answers with its
// first limit rooms after after, which holds every room of the cluster's
// first limit (and all of that room's replicas), so the merge is exact:
// connections are summed, the online count is the largest any replica
// sees (each serving replica sees the room's users over every replica).
func (bp *Backplane) ActiveRooms(ctx context.Context, after string, limit int) ([]broker.RoomCount, bool, *protocol.Error) {
	if !bp.Up() {
		return nil, false, unavailable("the chat backplane is unavailable; try again")
	}
	merged := map[string]*broker.RoomCount{}
	more := false
	add := func(rooms []roomCount, m bool) {
		more = more || m
		for _, rc := range rooms {
			if c := merged[rc.Room]; c != nil {
				c.Online = max(c.Online, rc.Online)
				c.Connections += rc.Conns
			} else {
				merged[rc.Room] = &broker.RoomCount{Room: rc.Room, Online: rc.Online, Connections: rc.Conns}
			}
		}
	}
	add(bp.localRooms(after, limit))
	bp.gather(ctx, apiPrefix+"rooms", apiRequest{After: after, Limit: limit}, func(rep apiReply) { add(rep.Rooms, rep.More) })
	out := make([]broker.RoomCount, 0, len(merged))
	for _, c := range merged {
		out = append(out, *c)
	}
	slices.SortFunc(out, func(a, b broker.RoomCount) int { return strings.Compare(a.Room, b.Room) })
	if len(out) > limit {
		return out[:limit], true, nil
	}
	return out, more, nil
}

// localRooms is this replica's first limit rooms with members after after.
func (bp *Backplane) localRooms(after string, limit int) ([]roomCount, bool) {
	var out []roomCount
	for _, r := range bp.allRooms() {
		if r.name <= after {
			continue
		}
		r.mu.Lock()
		if !r.closed && len(r.members) > 0 {
			out = append(out, roomCount{Room: r.name, Online: r.pres.online(), Conns: len(r.members)})
		}
		r.mu.Unlock()
	}
	slices.SortFunc(out, func(a, b roomCount) int { return strings.Compare(a.Room, b.Room) })
	if len(out) > limit {
		return out[:limit], true
	}
	return out, false
}

// ---- disconnect ----

// Disconnect implements broker.Operator: this replica's handler, then
// every other replica's.
func (bp *Backplane) Disconnect(ctx context.Context, t broker.Target) (int, *protocol.Error) {
	if !bp.nc.IsConnected() {
		return 0, unavailable("the chat backplane is unavailable; try again")
	}
	n := bp.disconnectLocal(t)
	bp.gather(ctx, apiPrefix+"disconnect", apiRequest{User: t.User, Conn: t.Conn}, func(rep apiReply) { n += rep.N })
	return n, nil
}

// HandleDisconnects implements broker.Operator.
func (bp *Backplane) HandleDisconnects(f func(broker.Target) int) { bp.disconnect.Store(&f) }

func (bp *Backplane) disconnectLocal(t broker.Target) int {
	if f := bp.disconnect.Load(); f != nil {
		return (*f)(t)
	}
	return 0
}

// ---- requests between replicas ----

// gather asks every other replica (those the census knows) and hands each
// answer to each, until all have answered, gatherWait has passed or ctx
// ends. A replica that does not answer is left out.
func (bp *Backplane) gather(ctx context.Context, subject string, req apiRequest, each func(apiReply)) {
	want := bp.peers()
	if want == 0 {
		return
	}
	inbox := bp.nc.NewInbox()
	ch := make(chan *nats.Msg, want+1)
	sub, err := bp.nc.ChanSubscribe(inbox, ch)
	if err != nil {
		return
	}
	defer func() { _ = sub.Unsubscribe() }()
	req.R = bp.id
	data, _ := json.Marshal(req)
	if err := bp.nc.PublishRequest(subject, inbox, data); err != nil {
		return
	}
	wait := time.NewTimer(gatherWait)
	defer wait.Stop()
	got := make(map[string]bool, want)
	for len(got) < want {
		select {
		case msg := <-ch:
			var rep apiReply
			if json.Unmarshal(msg.Data, &rep) != nil || rep.R == "" || got[rep.R] {
				continue
			}
			got[rep.R] = true
			each(rep)
		case <-wait.C:
			bp.log.Debug("replicas did not answer in time", "subject", subject, "answered", len(got), "known", want)
			return
		case <-ctx.Done():
			return
		case <-bp.quit:
			return
		}
	}
}

// onAPIRequest answers another replica's request (on the NATS client's
// goroutine for the subscription: no lock is held across the reply).
func (bp *Backplane) onAPIRequest(msg *nats.Msg) {
	var req apiRequest
	if msg.Reply == "" || json.Unmarshal(msg.Data, &req) != nil || req.R == bp.id || req.R == "" {
		return
	}
	rep := apiReply{R: bp.id}
	switch what := strings.TrimPrefix(msg.Subject, apiPrefix); {
	case strings.HasPrefix(what, "presence."):
		rep.Users, rep.Conns = bp.localPresence(strings.TrimPrefix(what, "presence."))
	case what == "rooms":
		if req.Limit <= 0 {
			return
		}
		rep.Rooms, rep.More = bp.localRooms(req.After, req.Limit)
	case what == "disconnect":
		rep.N = bp.disconnectLocal(broker.Target{User: req.User, Conn: req.Conn})
	case what == "ban":
		bp.applyBan(banOf(req.Room, req.User, req.Until, req.Rev))
	default:
		return
	}
	data, _ := json.Marshal(rep)
	_ = msg.Respond(data)
}
