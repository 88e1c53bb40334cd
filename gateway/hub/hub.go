// Package hub is chatgate's in-process message broker (a broker.Broker): a
// sharded registry of rooms, each with its own sequence, history ring and
// presence set.
//
// Locking: a shard's mu guards only its room map (lookup, create, delete).
// A room's mu guards its members, sequence, history and presence, and is held
// while a broadcast is sequenced and handed to every member's queue, which is
// what keeps per-room order. Subscriber.Enqueue never blocks and never does
// socket I/O, so no lock here is ever held across the network.
package hub

import (
	"errors"
	"flag"
	"fmt"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chatgate/chatgate/gateway/broker"
	"github.com/chatgate/chatgate/gateway/observe"
	"github.com/chatgate/chatgate/gateway/protocol"
)

// numShards is the fixed number of registry shards.
const numShards = 64

// Config tunes a Hub. Zero values take the documented defaults. History,
// MaxRooms, PresenceInterval and PresenceMaxMembers are the
// broker.Settings every broker takes (SetRooms fills them in); RoomTTL is the
// hub's own (Settings).
type Config struct {
	History            int           // messages kept per room (default 100)
	RoomTTL            time.Duration // how long an empty room keeps its history (default 5m)
	MaxRooms           int           // rooms held at once (default 100000)
	PresenceInterval   time.Duration // presence coalescing window (default 250ms)
	PresenceMaxMembers int           // above this many users, presence is count-only (default 1000)
	Observer           observe.Observer
	// SeqBase gives a new room its starting seq (its first message gets
	// SeqBase+1). The default, unix milliseconds × 1000, makes a room that
	// is freed and created again (or a restarted gateway) continue above
	// any seq the room had before, so a client's stale since can never
	// be mistaken for a position in the new room's history.
	SeqBase func(now time.Time) uint64
}

// DefaultRoomTTL is how long an empty room keeps its history by default.
const DefaultRoomTTL = 5 * time.Minute

// Settings are the hub's own settings, beside the broker.Settings.
type Settings struct {
	RoomTTL time.Duration // --room-ttl
}

// DefaultSettings returns the defaults.
func DefaultSettings() Settings { return Settings{RoomTTL: DefaultRoomTTL} }

// RegisterFlags defines --room-ttl, using s's current value as default.
func (s *Settings) RegisterFlags(fs *flag.FlagSet) {
	fs.DurationVar(&s.RoomTTL, "room-ttl", s.RoomTTL, "how long an empty room (and its history) is kept")
}

// Validate reports an invalid setting.
func (s *Settings) Validate() error {
	if s.RoomTTL <= 0 {
		return fmt.Errorf("--room-ttl must be positive, got %v", s.RoomTTL)
	}
	return nil
}

// SetRooms fills in the room settings every broker takes.
func (c *Config) SetRooms(s broker.Settings) {
	c.History, c.MaxRooms = s.History, s.MaxRooms
	c.PresenceInterval, c.PresenceMaxMembers = s.PresenceInterval, s.PresenceMaxMembers
}

// rooms is the room settings c holds.
func (c *Config) rooms() broker.Settings {
	return broker.Settings{History: c.History, MaxRooms: c.MaxRooms, PresenceInterval: c.PresenceInterval, PresenceMaxMembers: c.PresenceMaxMembers}
}

// TimeSeqBase is the default Config.SeqBase: broker.TimeSeqBase.
func TimeSeqBase(now time.Time) uint64 { return broker.TimeSeqBase(now) }

func (c *Config) setDefaults() {
	c.SetRooms(c.rooms().OrDefaults())
	if c.RoomTTL <= 0 {
		c.RoomTTL = DefaultRoomTTL
	}
	if c.Observer == nil {
		c.Observer = observe.Nop{}
	}
	if c.SeqBase == nil {
		c.SeqBase = TimeSeqBase
	}
}

// Hub is the sharded in-process broker.
type Hub struct {
	// static after construction
	cfg  Config
	seed maphash.Seed
	obs  observe.Observer

	shards [numShards]shard
	rooms  atomic.Int64

	// timers tracks armed presence and expiry timers so Close can wait for
	// them.
	timers sync.WaitGroup
	closed atomic.Bool

	bans       broker.Bans                             // the server API's room bans
	disconnect atomic.Pointer[func(broker.Target) int] // HandleDisconnects
}

type shard struct {
	mu    sync.Mutex
	rooms map[string]*room // guarded by mu
	_     [40]byte         // keep neighbouring shard locks off one cache line
}

// New returns a Hub.
func New(cfg Config) *Hub {
	cfg.setDefaults()
	h := &Hub{cfg: cfg, seed: maphash.MakeSeed(), obs: cfg.Observer}
	for i := range h.shards {
		h.shards[i].rooms = make(map[string]*room)
	}
	return h
}

var _ broker.Broker = (*Hub)(nil)

// ErrClosed is reported by Join once the hub is closed.
var ErrClosed = errors.New("hub: closed")

func (h *Hub) shardFor(name string) *shard {
	return &h.shards[maphash.String(h.seed, name)%numShards]
}

// Join implements Broker.
func (h *Hub) Join(sub broker.Subscriber, name string, since *uint64) (broker.Membership, *protocol.Error) {
	var m broker.Membership
	var refused *protocol.Error
	if perr := h.inRoom(name, func(r *room) (ok bool) {
		m, refused, ok = r.join(sub, since)
		return ok
	}); perr != nil {
		return nil, perr
	}
	return m, refused
}

// inRoom runs do on the room name, created if need be, until do reports
// that the room was still open (ok; a room retired between lookup and do
// is looked up again). It refuses an invalid name and a closed hub.
func (h *Hub) inRoom(name string, do func(*room) (ok bool)) *protocol.Error {
	if !protocol.ValidRoom(name) {
		return protocol.InvalidRoomError()
	}
	for {
		if h.closed.Load() {
			return protocol.ShuttingDownError()
		}
		r, perr := h.lookupOrCreate(name)
		if perr != nil {
			return perr
		}
		if do(r) {
			return nil
		}
	}
}

func (h *Hub) lookupOrCreate(name string) (*room, *protocol.Error) {
	s := h.shardFor(name)
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.rooms[name]; ok {
		return r, nil
	}
	// Take a slot under the cap, or the slot of an empty room of this
	// shard. The count is shared by all shards, so the slot is reserved
	// atomically rather than checked and added later.
	if !h.reserveRoom() && !h.reclaimEmptyLocked(s) {
		return nil, protocol.RoomLimitError()
	}
	r := newRoom(h, name)
	s.rooms[name] = r
	h.obs.RoomOpened()
	return r, nil
}

// reserveRoom counts one more room if that stays within MaxRooms.
func (h *Hub) reserveRoom() bool {
	for {
		n := h.rooms.Load()
		if n >= int64(h.cfg.MaxRooms) {
			return false
		}
		if h.rooms.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// reclaimEmptyLocked retires the longest-empty room of s to make space for a
// new one, whose slot in the room count it takes over. s.mu must be held.
func (h *Hub) reclaimEmptyLocked(s *shard) bool {
	var victim *room
	var since time.Time
	for _, r := range s.rooms {
		r.mu.Lock()
		if len(r.members) == 0 && (victim == nil || r.emptySince.Before(since)) {
			victim, since = r, r.emptySince
		}
		r.mu.Unlock()
	}
	if victim == nil {
		return false
	}
	victim.mu.Lock()
	ok := len(victim.members) == 0
	if ok {
		h.retireLocked(s, victim)
	}
	victim.mu.Unlock()
	return ok
}

// retireLocked removes r from s. It leaves the room count alone: the caller
// releases r's slot or hands it to a new room. Both s.mu and r.mu must be
// held.
func (h *Hub) retireLocked(s *shard, r *room) {
	r.closed = true
	r.stopTimersLocked()
	delete(s.rooms, r.name)
	h.obs.RoomClosed()
}

// expire retires r if it is still empty after its TTL.
func (h *Hub) expire(r *room) {
	defer h.timers.Done()
	s := h.shardFor(r.name)
	s.mu.Lock()
	defer s.mu.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.expiryArmed = false
	if r.closed || len(r.members) > 0 || h.closed.Load() {
		return
	}
	// A join and leave that came while this timer was firing could not
	// stop it, nor re-arm it: wait out the rest of the TTL from that leave.
	if rest := h.cfg.RoomTTL - time.Since(r.emptySince); rest > 0 {
		r.expiryArmed = true
		h.timers.Add(1)
		r.expiryTmr.Reset(rest)
		return
	}
	h.retireLocked(s, r)
	h.rooms.Add(-1)
}

// Rooms returns how many rooms the hub holds.
func (h *Hub) Rooms() int { return int(h.rooms.Load()) }

// Close stops the hub's timers and waits for any that are running. Joins
// after Close fail with unavailable.
func (h *Hub) Close() {
	if h.closed.Swap(true) {
		return
	}
	for i := range h.shards {
		s := &h.shards[i]
		s.mu.Lock()
		for _, r := range s.rooms {
			r.mu.Lock()
			r.stopTimersLocked()
			r.mu.Unlock()
		}
		s.mu.Unlock()
	}
	h.timers.Wait()
}
