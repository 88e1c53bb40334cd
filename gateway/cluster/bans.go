package cluster

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"

	"github.com/chatgate/chatgate/gateway/broker"
	"github.com/chatgate/chatgate/gateway/protocol"
)

// Bans across the cluster. A ban is written to the key-value bucket
// <stream>_BANS (key: the room and the user, each base64url-encoded; value:
// when it ends), then applied here and asked of every other replica on
// core NATS (chatgate.api.ban), each of which applies it and answers: when
// Ban returns, every replica that answered has removed the user from the
// room and refuses their joins. Every replica also reads the whole bucket
// (batched Direct Gets: no consumer) after every (re)connect and every
// banReload, so one that missed a request (or starts later) has the ban
// from there; a lifted ban is a value too (ending at 0), never a deletion,
// so every change has a revision and a late copy of an older one is
// ignored (broker.Bans). Entries leave the bucket after broker.MaxBan plus
// a day.

// Ban implements broker.Operator.
func (bp *Backplane) Ban(ctx context.Context, name, user string, d time.Duration) *protocol.Error {
	if !protocol.ValidRoom(name) {
		return protocol.InvalidRoomError()
	}
	kv := bp.banBucket()
	if kv == nil || !bp.Up() {
		return unavailable("the chat backplane is unavailable; try again")
	}
	var until int64
	if d > 0 {
		until = time.Now().Add(min(d, broker.MaxBan)).UnixMilli()
	}
	value, _ := json.Marshal(banValue{Until: until})
	ctx, cancel := context.WithTimeout(ctx, bp.cfg.PublishTimeout)
	defer cancel()
	rev, err := kv.Put(ctx, banKey(name, user), value)
	if err != nil {
		bp.log.Warn("cannot store a ban", "err", err)
		return unavailable("the ban was not stored; try again")
	}
	bp.answer()
	bp.applyBan(banOf(name, user, until, rev))
	bp.gather(ctx, apiPrefix+"ban", apiRequest{Room: name, User: user, Until: until, Rev: rev}, func(apiReply) {})
	return nil
}

// banValue is a ban's value in the bucket.
type banValue struct {
	Until int64 `json:"until"` // unix ms; 0: lifted
}

func banOf(room, user string, until int64, rev uint64) broker.Ban {
	b := broker.Ban{Room: room, User: user, Rev: rev}
	if until > 0 {
		b.Until = time.UnixMilli(until)
	}
	return b
}

var b64 = base64.RawURLEncoding

// banKey is the bucket key of a ban: room and user may hold characters a
// key cannot.
func banKey(room, user string) string {
	return b64.EncodeToString([]byte(room)) + "." + b64.EncodeToString([]byte(user))
}

func parseBanKey(key string) (room, user string, ok bool) {
	r, u, found := strings.Cut(key, ".")
	rb, err1 := b64.DecodeString(r)
	ub, err2 := b64.DecodeString(u)
	if !found || err1 != nil || err2 != nil {
		return "", "", false
	}
	return string(rb), string(ub), true
}

// applyBan updates this replica's ban table and, when the user is now
// banned from the room, removes their connections from it.
func (bp *Backplane) applyBan(b broker.Ban) {
	if bp.bans.Apply(b, time.Now()) {
		bp.sweep(b)
	}
}

// sweep removes the banned user's local connections from the room.
func (bp *Backplane) sweep(b broker.Ban) {
	r := bp.lookup(b.Room)
	if r == nil {
		return
	}
	<-r.ready
	if r.setupErr == nil {
		r.removeUser(b.User)
	}
}

// removeUser removes every local connection of user from the room (each is
// told with left, reason banned); an emptied room is torn down.
func (r *room) removeUser(user string) {
	f := &broker.Frame{Data: protocol.Removed(r.name, protocol.LeftReasonBanned)}
	r.mu.Lock()
	var gone []*member
	for _, m := range r.members {
		if m.sub.User().ID == user {
			gone = append(gone, m)
		}
	}
	for _, m := range gone {
		r.removeLocked(m)
		m.sub.Enqueue(f)
	}
	empty := len(gone) > 0 && r.emptyLocked()
	r.mu.Unlock()
	if empty {
		r.close()
	}
}

// banned is the join-time check: whether user may not join room now.
func (bp *Backplane) banned(room, user string) *protocol.Error {
	return bp.bans.Refuse(room, user, time.Now())
}

func (bp *Backplane) banBucket() jetstream.KeyValue {
	if p := bp.banKV.Load(); p != nil {
		return *p
	}
	return nil
}

// banBucketName is the bucket's name for the stream's.
func (bp *Backplane) banBucketName() string { return bp.cfg.Stream + "_BANS" }

// banReload is how often a replica reads the whole bans bucket again, to
// catch a request it missed while connected (core NATS is at most once).
const banReload = time.Minute

// ensureBans creates or updates the bucket (after the stream, on every
// (re)connect) and loads the bans in force from it.
func (bp *Backplane) ensureBans(ctx context.Context) error {
	kv, err := bp.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      bp.banBucketName(),
		Description: "chatgate room bans (server API): key room.user, value when the ban ends",
		History:     1,
		TTL:         broker.MaxBan + 24*time.Hour,
		Storage:     bp.cfg.Storage,
		Replicas:    bp.cfg.Replicas,
	})
	if err != nil {
		return err
	}
	bp.banKV.Store(&kv)
	return bp.loadBans(ctx)
}

// ensureBansNow is ensureBans with a deadline of its own.
func (bp *Backplane) ensureBansNow() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := bp.ensureBans(ctx); err != nil {
		return fmt.Errorf("the bans bucket: %w", err)
	}
	return nil
}

// refreshBans (from the health loop) makes the bucket while it is
// missing, and reads it again every banReload.
func (bp *Backplane) refreshBans() {
	var err error
	switch {
	case bp.banBucket() == nil:
		err = bp.ensureBansNow()
	case time.Since(time.Unix(0, bp.lastBanLoad.Load())) >= banReload:
		ctx, cancel := context.WithTimeout(context.Background(), bp.cfg.HealthTimeout)
		err = bp.loadBans(ctx)
		cancel()
	}
	if err != nil {
		bp.log.Debug("cannot read the bans bucket", "err", err)
	}
}

// loadBans reads every entry of the bucket and makes them the table
// (keeping what was applied since), then removes the banned users who got
// into a room meanwhile.
func (bp *Backplane) loadBans(ctx context.Context) error {
	stream, prefix := "KV_"+bp.banBucketName(), "$KV."+bp.banBucketName()+"."
	var bans []broker.Ban
	var upTo uint64
	for from := uint64(1); ; {
		it, err := jetstreamext.GetBatch(ctx, bp.js, stream, repairBatch,
			jetstreamext.GetBatchSeq(from), jetstreamext.GetBatchSubject(prefix+">"))
		if err != nil {
			return err
		}
		pending, n := uint64(0), 0
		for m, err := range it {
			if errors.Is(err, jetstreamext.ErrNoMessages) {
				break
			}
			if err != nil {
				return err
			}
			n++
			from = m.Sequence + 1
			upTo = max(upTo, m.Sequence)
			pending, _ = strconv.ParseUint(m.Header.Get(hdrNumPending), 10, 64)
			if b, ok := rawBan(strings.TrimPrefix(m.Subject, prefix), m.Header, m.Data, m.Sequence); ok {
				bans = append(bans, b)
			}
		}
		if n == 0 || pending == 0 {
			break
		}
	}
	bp.answer()
	now := time.Now()
	bp.bans.Replace(bans, upTo, now)
	for _, b := range bans {
		if b.Until.After(now) {
			bp.sweep(b)
		}
	}
	bp.lastBanLoad.Store(now.UnixNano())
	return nil
}

// rawBan reads one stored entry of the bucket.
func rawBan(key string, h nats.Header, data []byte, rev uint64) (broker.Ban, bool) {
	room, user, ok := parseBanKey(key)
	if !ok {
		return broker.Ban{}, false
	}
	var v banValue
	if h.Get("KV-Operation") == "" && json.Unmarshal(data, &v) != nil {
		return broker.Ban{}, false
	}
	return banOf(room, user, v.Until, rev), true
}
