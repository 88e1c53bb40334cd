package api

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/chatgate/chatgate/gateway/broker"
	"github.com/chatgate/chatgate/gateway/protocol"
)

// The endpoints. Each checks its request completely before it acts, so a
// request with a mistake changes nothing.

// DefaultSender is the system sender's name when a publish gives none.
const DefaultSender = "system"

// Limits of the moderation and read endpoints.
const (
	MaxUserBytes   = 128           // a user id, as a token's sub
	MaxConnBytes   = 64            // a connection id
	MaxBanDuration = broker.MaxBan // the longest ban
	MaxListLimit   = 1000          // the most rooms or messages one read returns
	defaultLimit   = 100
)

// check validates a publish and fills in the default sender.
func (h *Handler) check(p *PublishRequest) *protocol.Error {
	if !protocol.ValidRoom(p.Room) {
		return protocol.InvalidRoomError()
	}
	switch {
	case p.Text == "":
		return &protocol.Error{Code: protocol.CodeBadRequest, Message: "text must not be empty"}
	case len(p.Text) > h.maxText:
		return &protocol.Error{Code: protocol.CodeTooLarge, Message: "text is longer than " + strconv.Itoa(h.maxText) + " bytes (--max-text-bytes)"}
	case !utf8.ValidString(p.Text):
		return &protocol.Error{Code: protocol.CodeBadRequest, Message: "text is not valid UTF-8"}
	}
	if p.Sender == "" {
		p.Sender = DefaultSender
	}
	name, ok := protocol.ValidName(p.Sender)
	if !ok {
		return &protocol.Error{Code: protocol.CodeBadRequest, Message: "sender must be 1-32 characters with no control, format or separator characters"}
	}
	p.Sender = name
	return nil
}

// send publishes one checked message.
func (h *Handler) send(ctx context.Context, p PublishRequest) (PublishResult, *protocol.Error) {
	if ctx.Err() != nil {
		return PublishResult{}, timeoutError()
	}
	pub, perr := h.op.PublishSystem(ctx, p.Room, p.Sender, p.Text)
	if perr != nil {
		return PublishResult{}, perr
	}
	h.obs.MessageAccepted()
	return PublishResult{Room: p.Room, Seq: pub.Seq}, nil
}

func (h *Handler) publish(ctx context.Context, c *call) (any, *protocol.Error) {
	var p PublishRequest
	if perr := decodeBody(c, h.cfg.MaxBodyBytes, &p); perr != nil {
		return nil, perr
	}
	if perr := h.check(&p); perr != nil {
		return nil, perr
	}
	return h.send(ctx, p)
}

// result is the first failure's code, or ok: a batch is answered 200 with
// a result per message, but a failed message still counts as an error.
func (b BatchResponse) result() string {
	for _, r := range b.Results {
		if r.Error != nil {
			return string(r.Error.Code)
		}
	}
	return "ok"
}

func (h *Handler) publishBatch(ctx context.Context, c *call) (any, *protocol.Error) {
	var b BatchRequest
	if perr := decodeBody(c, h.cfg.MaxBodyBytes, &b); perr != nil {
		return nil, perr
	}
	switch n := len(b.Messages); {
	case n == 0:
		return nil, &protocol.Error{Code: protocol.CodeBadRequest, Message: "messages must hold at least one message"}
	case n > MaxBatch:
		return nil, &protocol.Error{Code: protocol.CodeTooLarge, Message: fmt.Sprintf("messages holds %d messages; at most %d per batch", n, MaxBatch)}
	}
	for i := range b.Messages {
		if perr := h.check(&b.Messages[i]); perr != nil {
			perr.Message = fmt.Sprintf("messages[%d]: %s", i, perr.Message)
			return nil, perr
		}
	}
	// The request took one token; each further message takes one more.
	if ok, wait := h.limits.allow(c.who.name, len(b.Messages)-1); !ok {
		return nil, &protocol.Error{Code: protocol.CodeRateLimited, Message: fmt.Sprintf("a batch of %d messages is more than key %s may send now", len(b.Messages), c.who.name), RetryAfterMs: wait}
	}
	resp := BatchResponse{Results: make([]BatchResult, len(b.Messages))}
	for i, p := range b.Messages {
		r, perr := h.send(ctx, p)
		resp.Results[i] = BatchResult{Room: p.Room, Seq: r.Seq}
		if perr != nil {
			resp.Results[i].Error = newErrorObject(perr)
		}
	}
	return resp, nil
}

func checkUser(user string, required bool) *protocol.Error {
	switch {
	case user == "" && required:
		return &protocol.Error{Code: protocol.CodeBadRequest, Message: "user is required"}
	case len(user) > MaxUserBytes:
		return &protocol.Error{Code: protocol.CodeBadRequest, Message: "user is longer than " + strconv.Itoa(MaxUserBytes) + " bytes"}
	}
	return nil
}

func checkBan(room string, seconds int64) *protocol.Error {
	if !protocol.ValidRoom(room) {
		return protocol.InvalidRoomError()
	}
	if seconds < 1 || seconds > int64(MaxBanDuration/time.Second) {
		return &protocol.Error{Code: protocol.CodeBadRequest, Message: fmt.Sprintf("seconds must be from 1 to %d (a year)", int64(MaxBanDuration/time.Second))}
	}
	return nil
}

func (h *Handler) disconnect(ctx context.Context, c *call) (any, *protocol.Error) {
	var d DisconnectRequest
	if perr := decodeBody(c, h.cfg.MaxBodyBytes, &d); perr != nil {
		return nil, perr
	}
	c.audit = append(c.audit, "user", d.User, "conn", d.Conn)
	if d.Ban != nil {
		c.audit = append(c.audit, "room", d.Ban.Room, "ban_seconds", d.Ban.Seconds)
	}
	if d.User == "" && d.Conn == "" {
		return nil, &protocol.Error{Code: protocol.CodeBadRequest, Message: "give user (all their connections), conn (one connection), or both"}
	}
	if perr := checkUser(d.User, false); perr != nil {
		return nil, perr
	}
	if len(d.Conn) > MaxConnBytes {
		return nil, &protocol.Error{Code: protocol.CodeBadRequest, Message: "conn is longer than " + strconv.Itoa(MaxConnBytes) + " bytes"}
	}
	var resp DisconnectResponse
	if d.Ban != nil {
		if d.User == "" {
			return nil, &protocol.Error{Code: protocol.CodeBadRequest, Message: "a ban needs user: it keeps a user, not a connection, out of the room"}
		}
		if perr := checkBan(d.Ban.Room, d.Ban.Seconds); perr != nil {
			return nil, perr
		}
		// The ban first: a kicked client that reconnects at once is
		// already refused.
		b, perr := h.doBan(ctx, d.Ban.Room, d.User, d.Ban.Seconds)
		if perr != nil {
			return nil, perr
		}
		resp.Ban = &b
	}
	n, perr := h.op.Disconnect(ctx, broker.Target{User: d.User, Conn: d.Conn})
	if perr != nil {
		return nil, perr
	}
	resp.Disconnected = n
	c.audit = append(c.audit, "disconnected", n)
	return resp, nil
}

func (h *Handler) doBan(ctx context.Context, room, user string, seconds int64) (BanResult, *protocol.Error) {
	d := time.Duration(seconds) * time.Second
	until := time.Now().Add(d).UTC().Truncate(time.Second)
	if perr := h.op.Ban(ctx, room, user, d); perr != nil {
		return BanResult{}, perr
	}
	return BanResult{Room: room, User: user, Until: until}, nil
}

func (h *Handler) ban(ctx context.Context, c *call) (any, *protocol.Error) {
	var b BanRequest
	if perr := decodeBody(c, h.cfg.MaxBodyBytes, &b); perr != nil {
		return nil, perr
	}
	c.audit = append(c.audit, "user", b.User, "room", b.Room, "ban_seconds", b.Seconds)
	if perr := checkUser(b.User, true); perr != nil {
		return nil, perr
	}
	if perr := checkBan(b.Room, b.Seconds); perr != nil {
		return nil, perr
	}
	return h.doBan(ctx, b.Room, b.User, b.Seconds)
}

func (h *Handler) unban(ctx context.Context, c *call) (any, *protocol.Error) {
	var u UnbanRequest
	if perr := decodeBody(c, h.cfg.MaxBodyBytes, &u); perr != nil {
		return nil, perr
	}
	c.audit = append(c.audit, "user", u.User, "room", u.Room)
	if perr := checkUser(u.User, true); perr != nil {
		return nil, perr
	}
	if !protocol.ValidRoom(u.Room) {
		return nil, protocol.InvalidRoomError()
	}
	if perr := h.op.Ban(ctx, u.Room, u.User, 0); perr != nil {
		return nil, perr
	}
	return u, nil
}

func (h *Handler) rooms(ctx context.Context, c *call) (any, *protocol.Error) {
	q, perr := query(c, "after", "limit")
	if perr != nil {
		return nil, perr
	}
	limit, perr := limitParam(q, defaultLimit, MaxListLimit)
	if perr != nil {
		return nil, perr
	}
	list, more, perr := h.op.ActiveRooms(ctx, q.Get("after"), limit)
	if perr != nil {
		return nil, perr
	}
	resp := RoomsResponse{Rooms: make([]RoomCount, 0, len(list))}
	for _, r := range list {
		resp.Rooms = append(resp.Rooms, RoomCount{Room: r.Room, Online: r.Online, Connections: r.Connections})
	}
	if more && len(list) > 0 {
		resp.Next = list[len(list)-1].Room
	}
	return resp, nil
}

func (h *Handler) presence(ctx context.Context, c *call) (any, *protocol.Error) {
	if _, perr := query(c); perr != nil {
		return nil, perr
	}
	p, perr := h.op.Presence(ctx, c.room)
	if perr != nil {
		return nil, perr
	}
	resp := PresenceResponse{Room: c.room, Online: p.Online, Connections: p.Connections, Users: make([]PresentUser, 0, len(p.Users))}
	for _, u := range p.Users {
		resp.Users = append(resp.Users, PresentUser{ID: u.ID, Name: u.Name, Connections: u.Connections})
	}
	return resp, nil
}

func (h *Handler) history(ctx context.Context, c *call) (any, *protocol.Error) {
	q, perr := query(c, "since", "limit")
	if perr != nil {
		return nil, perr
	}
	limit, perr := limitParam(q, defaultLimit, MaxListLimit)
	if perr != nil {
		return nil, perr
	}
	var since *uint64
	if v := q.Get("since"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return nil, &protocol.Error{Code: protocol.CodeBadRequest, Message: "since must be a non-negative integer (a seq)"}
		}
		since = &n
	}
	hist, perr := h.op.History(ctx, c.room, since, limit)
	if perr != nil {
		return nil, perr
	}
	resp := HistoryResponse{Room: c.room, Seq: hist.Seq, Truncated: hist.Truncated, Messages: make([]json.RawMessage, 0, len(hist.Messages))}
	if since != nil {
		resp.Recovered = &hist.Recovered
	}
	for _, m := range hist.Messages {
		resp.Messages = append(resp.Messages, m)
	}
	return resp, nil
}
