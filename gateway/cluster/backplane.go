// Package cluster is chatgate's cluster backplane: a hub.Broker that lets
// several gateway replicas share rooms, history and presence through NATS
// JetStream.
//
// # Messages
//
// One stream (CHATGATE_ROOMS, subjects chatgate.room.>) holds every room's
// messages; room r is subject chatgate.room.<r>. The stream assigns the
// order: a message's protocol seq is its stream sequence, which increases
// within a room but is not contiguous (other rooms share the sequence).
// Publish is a JetStream publish that expects the subject's last sequence
// (optimistic concurrency), and records that sequence in the Chatgate-Prev
// header, so the stored messages of a room form a chain in which every
// message names its predecessor. The sender's ack is queued only after the
// PubAck (the message is stored) and after this replica has delivered the
// message to its local members, so the sender still sees its message before
// its ack. A failed publish is never acked: the sender gets unavailable.
//
// # Delivery
//
// A replica does work only for rooms it has local members in. The first
// local join of a room sets it up: it learns the subject's last sequence,
// subscribes to the room's presence subject, starts an ordered consumer
// filtered to the room's subject from just after that sequence, and asks the
// other replicas for their members. The last local leave tears it down.
// Each delivered message is encoded once and queued to every local member
// under the local room's lock, in stream order; lastSeq drops duplicates.
// No network I/O happens under a room lock.
//
// A join with since registers the joiner as a buffering member (live frames
// for it are held in order), fetches the stored messages in (since, joinSeq]
// with a separate ordered consumer outside the lock, queues joined and the
// replay, then releases the held frames: no gap and no duplicate at the
// seam. See recovered() for how the Chatgate-Prev chain decides recovered.
//
// # Faults
//
// The backplane is up (Health) while it is connected to NATS, has checked
// the stream since the last (re)connect, and JetStream has answered within
// HealthTimeout: a probe asks for the stream's state every third of it, so
// a server that stops answering (frozen, or cut off without a reset) turns
// the backplane down within HealthTimeout. Sends, joins that need NATS and
// replays are refused at once while it is down.
//
// Each check also compares the stream with the one this replica knew. A
// stream with another creation time, or whose last seq went below a seq
// this replica saw stored, lost the old one's messages (a NATS server
// restarted without its store, or with memory storage). That starts a new
// epoch: every room moves to the new stream's start, counts the messages it
// held in the lost one as a delivery gap (logged once per room), answers
// acks still waiting for delivery with unavailable, and restarts delivery.
// Rooms compare the epoch of everything they receive with their own, so
// nothing from the lost stream is delivered after the move. A stream this
// replica creates starts its sequence at the creation time in milliseconds
// x 1000 (and above every seq this replica has seen), like the in-process
// hub's rooms: a recreated stream numbers above the lost one, so members
// see seq values keep increasing and a since from the lost stream is below
// every seq of the new one (recovered: false).
//
// # Presence
//
// Each replica publishes (core NATS, chatgate.presence.<room>) its local
// users' arrivals and departures, a snapshot of its local users of every
// room it holds every PresenceSync, and a goodbye when it drops a room.
// Replicas holding the room keep the users of every other replica with the
// time they last heard from it; a replica silent for PresenceTTL has its
// users expire. While the backplane is down nobody can be heard, so
// nobody expires: the last known users are kept, and a replica still silent
// PresenceTTL after the backplane is back expires then. A room's online set
// is the union over replicas, so a user on two replicas counts once.
// Changes from any replica feed the same coalescing as the in-process hub.
package cluster

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/chatgate/chatgate/gateway/hub"
	"github.com/chatgate/chatgate/gateway/observe"
	"github.com/chatgate/chatgate/gateway/protocol"
)

// Subjects and names. Room names are [A-Za-z0-9_.-]; a '.' only adds
// subject tokens, and exact filters still match one room.
const (
	StreamName      = "CHATGATE_ROOMS"
	roomPrefix      = "chatgate.room."
	presencePrefix  = "chatgate.presence."
	psyncPrefix     = "chatgate.psync."
	censusSubject   = "chatgate.census"
	streamSubjects  = roomPrefix + ">"
	maxPublishTries = 50 // and within PublishTimeout
	maxConsumers    = 1_000_000
)

// Config tunes a Backplane. Zero values take the documented defaults.
type Config struct {
	// URL is one NATS URL or several, comma-separated.
	URL string
	// Credentials and TLS, all read from files.
	CredsFile   string
	TLSCAFile   string
	TLSCertFile string
	TLSKeyFile  string

	// NodeID names this replica (its presence id adds a random suffix,
	// so two replicas given the same name stay apart).
	NodeID string

	History  int                           // messages kept per room (MaxMsgsPerSubject, default 100)
	MaxAge   time.Duration                 // how long the stream keeps a message (default 24h)
	Storage  jetstream.StorageType         // file (default) or memory
	Replicas int                           // stream replicas (default 1)
	Stream   string                        // stream name (default CHATGATE_ROOMS)
	Observer observe.Observer              // the gateway's observer
	Logger   *slog.Logger                  // nil discards
	Registry prometheus.Registerer         // chatgate_backplane_* go here; nil registers nowhere
	Tracer   trace.TracerProvider          // nil: no spans
	Prop     propagation.TextMapPropagator // nil: otel's global propagator

	MaxRooms           int           // local rooms at once (default 100000)
	PresenceInterval   time.Duration // presence coalescing window (default 250ms)
	PresenceMaxMembers int           // count-only above this (default 1000)
	PresenceSync       time.Duration // snapshot period (default 5s)
	PresenceTTL        time.Duration // a silent replica's users expire after this (default 15s)

	PublishTimeout time.Duration // one send's budget for the PubAck, retries included (default 3s)
	HealthTimeout  time.Duration // down when JetStream has not answered for this long (default 3s; probed every third of it)
	ReconnectWait  time.Duration // base wait between reconnect attempts (default 1s, plus jitter)
	SyncWait       time.Duration // how long a room's first join waits for the other replicas' members (default 250ms)
}

func (c *Config) setDefaults() {
	if c.History <= 0 {
		c.History = 100
	}
	if c.MaxAge <= 0 {
		c.MaxAge = 24 * time.Hour
	}
	if c.Replicas <= 0 {
		c.Replicas = 1
	}
	if c.Stream == "" {
		c.Stream = StreamName
	}
	if c.NodeID == "" {
		c.NodeID = "chatgate"
	}
	if c.Observer == nil {
		c.Observer = observe.Nop{}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Tracer == nil {
		c.Tracer = noop.NewTracerProvider()
	}
	if c.Prop == nil {
		c.Prop = otel.GetTextMapPropagator()
	}
	if c.MaxRooms <= 0 {
		c.MaxRooms = hub.DefaultMaxRooms
	}
	if c.PresenceInterval <= 0 {
		c.PresenceInterval = hub.DefaultPresenceInterval
	}
	if c.PresenceMaxMembers <= 0 {
		c.PresenceMaxMembers = hub.DefaultPresenceMaxMembers
	}
	if c.PresenceSync <= 0 {
		c.PresenceSync = 5 * time.Second
	}
	if c.PresenceTTL <= 0 {
		c.PresenceTTL = 15 * time.Second
	}
	if c.PublishTimeout <= 0 {
		c.PublishTimeout = 3 * time.Second
	}
	if c.HealthTimeout <= 0 {
		c.HealthTimeout = defaultHealthTimeout
	}
	if c.ReconnectWait <= 0 {
		c.ReconnectWait = time.Second
	}
	if c.SyncWait <= 0 {
		c.SyncWait = 250 * time.Millisecond
	}
}

// defaultHealthTimeout is Config.HealthTimeout's default: how long
// JetStream may stay silent before the backplane reports down.
const defaultHealthTimeout = 3 * time.Second

// Health errors: the reason the backplane is down, as /readyz shows it.
var (
	// ErrDown: not connected to NATS, or the stream not yet checked (or
	// made) since the last (re)connect.
	ErrDown = errors.New("backplane down")
	// ErrNotResponding: connected, but JetStream has not answered for
	// HealthTimeout (a frozen or overloaded server).
	ErrNotResponding = errors.New("backplane not responding")
)

// Log messages that tests and operators look for.
const (
	msgStreamLost  = "the NATS stream is not the one this replica knew: the messages it held are lost; rooms start over on the new stream"
	msgHistoryLost = "room history lost with the stream: members get a gap (recovered false on their next rejoin)"
)

// Validate reports invalid settings.
func (c *Config) Validate() error {
	var errs []error
	if strings.TrimSpace(c.URL) == "" {
		errs = append(errs, errors.New("cluster: no NATS URL"))
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		errs = append(errs, errors.New("cluster: a TLS client certificate needs both the cert and the key file"))
	}
	if c.PresenceTTL > 0 && c.PresenceSync > 0 && c.PresenceTTL < 2*c.PresenceSync {
		errs = append(errs, fmt.Errorf("cluster: presence TTL (%v) must be at least twice the presence sync period (%v)", c.PresenceTTL, c.PresenceSync))
	}
	if c.Replicas > 5 {
		errs = append(errs, fmt.Errorf("cluster: stream replicas must be 1 to 5, got %d", c.Replicas))
	}
	return errors.Join(errs...)
}

// Backplane is the cluster hub.Broker. It is safe for concurrent use.
type Backplane struct {
	// static after construction
	cfg    Config
	log    *slog.Logger
	obs    observe.Observer
	id     string // this replica's presence id
	nc     *nats.Conn
	js     jetstream.JetStream
	tracer trace.Tracer
	met    *metrics
	tick   time.Duration // presence expiry scan period

	stream atomic.Pointer[jetstream.Stream] // set once the stream is ensured
	closed atomic.Bool
	killed atomic.Bool // tests: the NATS connection was dropped without goodbye

	// Health (see Health). checked is 1 + the connection generation
	// (connGen) on which the stream was last checked, 0 when it must be
	// checked again (the disconnect handler zeroes it, so deliver can test
	// it without a lock); answered is when JetStream last answered (unix ns).
	checked  atomic.Uint64
	answered atomic.Int64
	// highSeq is the highest seq this replica has delivered from the
	// current stream; a stream whose last seq is below it went back.
	highSeq atomic.Uint64
	// epoch counts the streams this replica has moved to (see checkStream);
	// every room carries the epoch its positions belong to.
	epoch atomic.Uint64

	streamMu sync.Mutex
	created  time.Time // the stream's creation time as last seen; guarded by streamMu

	mu    sync.Mutex
	rooms map[string]*room // guarded by mu

	censusMu sync.Mutex
	census   map[string]time.Time // peer replica id → last heard; guarded by censusMu

	out     outbound
	psync   *nats.Subscription
	censusS *nats.Subscription

	ensure chan struct{} // poked on (re)connect
	quit   chan struct{}
	wg     sync.WaitGroup // background goroutines, pumps and teardowns
	timers sync.WaitGroup // armed presence timers
}

var _ hub.Broker = (*Backplane)(nil)

// New connects to NATS (in the background: an unreachable server is retried
// forever with backoff) and returns the backplane. The stream is created or
// updated once connected; until then joins and sends get unavailable.
func New(cfg Config) (*Backplane, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	bp := &Backplane{
		cfg:    cfg,
		log:    cfg.Logger.With("component", "backplane"),
		obs:    cfg.Observer,
		id:     cfg.NodeID + "-" + randHex(4),
		tracer: cfg.Tracer.Tracer("github.com/chatgate/chatgate/gateway/cluster"),
		rooms:  make(map[string]*room),
		census: make(map[string]time.Time),
		ensure: make(chan struct{}, 1),
		quit:   make(chan struct{}),
	}
	bp.tick = min(max(cfg.PresenceTTL/20, 10*time.Millisecond), time.Second)
	bp.out.init()
	bp.met = newMetrics(cfg.Registry, bp)

	opts := []nats.Option{
		nats.Name("chatgate " + cfg.NodeID),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(cfg.ReconnectWait),
		nats.ReconnectJitter(cfg.ReconnectWait/2+10*time.Millisecond, cfg.ReconnectWait),
		nats.RetryOnFailedConnect(true),
		// A server that stops answering drops the connection after three
		// unanswered pings (15–20 s), and the client reconnects, to another
		// server when URL lists several; readiness goes down sooner, after
		// HealthTimeout (see healthLoop).
		nats.PingInterval(5 * time.Second),
		nats.MaxPingsOutstanding(3),
		// No buffering while reconnecting: a send then fails at once
		// (unavailable) instead of waiting for its PubAck timeout.
		nats.ReconnectBufSize(-1),
		nats.ConnectHandler(func(*nats.Conn) {
			bp.log.Info("connected to NATS")
			bp.poke()
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			bp.log.Info("reconnected to NATS", "url", nc.ConnectedUrlRedacted())
			bp.poke()
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			bp.checked.Store(0) // Health sees it at once through connGen; deliver through this
			if !bp.closed.Load() {
				bp.log.Warn("disconnected from NATS; reconnecting", "err", err)
			}
		}),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			bp.log.Warn("NATS async error", "err", err)
		}),
	}
	if cfg.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(cfg.CredsFile))
	}
	if cfg.TLSCAFile != "" {
		opts = append(opts, nats.RootCAs(cfg.TLSCAFile))
	}
	if cfg.TLSCertFile != "" {
		opts = append(opts, nats.ClientCert(cfg.TLSCertFile, cfg.TLSKeyFile))
	}
	nc, err := nats.Connect(cfg.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("cluster: NATS: %w", err)
	}
	bp.nc = nc
	bp.js, err = jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("cluster: JetStream: %w", err)
	}
	// Subscriptions survive reconnects (nats.go resubscribes).
	if bp.psync, err = nc.Subscribe(psyncPrefix+">", bp.onSyncRequest); err == nil {
		bp.censusS, err = nc.Subscribe(censusSubject, bp.onCensus)
	}
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("cluster: subscribe: %w", err)
	}
	bp.wg.Add(4)
	go bp.ensureLoop()
	go bp.out.run(bp)
	go bp.presenceLoop()
	go bp.healthLoop()
	if nc.IsConnected() {
		bp.poke()
	}
	return bp, nil
}

// ID is this replica's presence id.
func (bp *Backplane) ID() string { return bp.id }

// Health reports why the backplane cannot serve (ErrDown or
// ErrNotResponding), or nil while it can: connected to NATS, the stream
// checked since the last (re)connect, and JetStream answering within
// HealthTimeout. It is the gateway's readiness condition in cluster mode.
func (bp *Backplane) Health() error {
	switch {
	case bp.closed.Load() || bp.killed.Load() || !bp.nc.IsConnected() || bp.checked.Load() != bp.connGen()+1:
		return ErrDown
	case time.Since(time.Unix(0, bp.answered.Load())) >= bp.cfg.HealthTimeout:
		return ErrNotResponding
	}
	return nil
}

// Up reports whether Health is nil.
func (bp *Backplane) Up() bool { return bp.Health() == nil }

// connGen counts the connections made to NATS: it changes with every
// reconnect, before the connection reports connected.
func (bp *Backplane) connGen() uint64 { return bp.nc.Stats().Reconnects }

// answer records that JetStream answered now.
func (bp *Backplane) answer() { bp.answered.Store(time.Now().UnixNano()) }

// sawSeq raises highSeq to seq.
func (bp *Backplane) sawSeq(seq uint64) {
	for {
		cur := bp.highSeq.Load()
		if seq <= cur || bp.highSeq.CompareAndSwap(cur, seq) {
			return
		}
	}
}

func (bp *Backplane) poke() {
	select {
	case bp.ensure <- struct{}{}:
	default:
	}
}

// ensureLoop checks, creates or updates the stream after every (re)connect
// (and when the probe finds it gone), retrying with backoff, then announces
// this replica and resyncs presence.
func (bp *Backplane) ensureLoop() {
	defer bp.wg.Done()
	for {
		select {
		case <-bp.quit:
			return
		case <-bp.ensure:
		}
		for attempt := 0; ; attempt++ {
			if bp.closed.Load() {
				return
			}
			if bp.nc.IsConnected() {
				err := bp.ensureStream()
				if err == nil {
					break
				}
				bp.log.Warn("cannot create or update the stream; retrying", "err", err, "stream", bp.cfg.Stream)
			}
			if !bp.sleep(backoff(attempt, 100*time.Millisecond, 5*time.Second)) {
				return
			}
		}
		bp.announce(true)
		bp.snapshotAll()
	}
}

// ensureStream makes sure the stream exists with this replica's settings
// and checks it against the one this replica knew (checkStream); on
// success the backplane is up on the current connection.
func (bp *Backplane) ensureStream() error {
	gen := bp.connGen()
	high := bp.highSeq.Load() // before any request: see checkStream
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	scfg := bp.streamConfig()
	var s jetstream.Stream
	for s == nil {
		existing, err := bp.js.Stream(ctx, bp.cfg.Stream)
		switch {
		case err == nil:
			// The first seq is the stream's for life: an update must not
			// move it (nats-server would purge below it on its next start).
			scfg.FirstSeq = existing.CachedInfo().Config.FirstSeq
			if s, err = bp.js.UpdateStream(ctx, scfg); err != nil {
				var apiErr *jetstream.APIError
				if !errors.As(err, &apiErr) {
					return err
				}
				// A stream that cannot take this configuration (a storage
				// change, say) is still usable: use it and say so.
				bp.log.Error("the stream exists with a configuration that cannot be updated; using it as it is", "err", err)
				s = existing
			}
		case errors.Is(err, jetstream.ErrStreamNotFound):
			// Numbered from the clock, above every seq this replica saw:
			// a stream made again after a loss numbers above the lost one.
			scfg.FirstSeq = max(uint64(time.Now().UnixMilli())*1000, high+1)
			s, err = bp.js.CreateStream(ctx, scfg)
			if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
				s, err = nil, nil // another replica made it first: look again
			} else if err != nil {
				return err
			} else {
				bp.log.Info("created the stream", "stream", bp.cfg.Stream, "first_seq", scfg.FirstSeq)
			}
		default:
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	bp.answer()
	bp.checkStream(s.CachedInfo(), high)
	bp.stream.Store(&s)
	if bp.nc.IsConnected() && bp.connGen() == gen {
		bp.checked.Store(gen + 1)
	}
	return nil
}

func (bp *Backplane) streamConfig() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:              bp.cfg.Stream,
		Description:       "chatgate room messages, one subject per room",
		Subjects:          []string{streamSubjects},
		Retention:         jetstream.LimitsPolicy,
		MaxMsgsPerSubject: int64(bp.cfg.History),
		MaxAge:            bp.cfg.MaxAge,
		Storage:           bp.cfg.Storage,
		Replicas:          bp.cfg.Replicas,
		Discard:           jetstream.DiscardOld,
		// Each replica holds one consumer per room it serves, plus a
		// short-lived one per join with since. nats-server applies a
		// default of 1,000 consumers per stream unless the stream sets a
		// limit, so set a generous one (an account limit still applies).
		MaxConsumers: maxConsumers,
	}
}

// checkStream compares the stream's state (read after high was taken) with
// the stream this replica knew. Another creation time means the stream was
// made again; a last seq below high (a seq this replica delivered from it)
// means it went back, as a stream restored from an older backup would. In
// both cases the messages of the old stream are lost: a new epoch starts
// and every room moves to the new stream.
func (bp *Backplane) checkStream(info *jetstream.StreamInfo, high uint64) {
	bp.streamMu.Lock()
	defer bp.streamMu.Unlock()
	prev := bp.created
	bp.created = info.Created
	var why string
	switch {
	case prev.IsZero():
		return // the first stream this replica sees
	case !info.Created.Equal(prev):
		why = "created again"
	case info.State.LastSeq < high:
		why = "its sequence went back"
	default:
		return
	}
	// The new stream's messages start after pos.
	pos := info.State.LastSeq
	if info.State.FirstSeq > 0 {
		pos = info.State.FirstSeq - 1
	}
	// A stream numbered above everything this replica saw (one that chatgate
	// made again) cannot have delivered positions of the old stream above
	// pos: rooms already past pos are on the new stream, and stay.
	above := pos >= high
	ep := bp.epoch.Add(1)
	bp.highSeq.Store(info.State.LastSeq)
	rooms, gaps, unacked := 0, 0, 0
	for _, r := range bp.allRooms() {
		if gap, n, ok := r.moveTo(ep, pos, above); ok {
			rooms++
			unacked += n
			if gap {
				gaps++
			}
		}
	}
	bp.log.Error(msgStreamLost, "stream", bp.cfg.Stream, "why", why, "created", info.Created, "first_seq", info.State.FirstSeq,
		"last_seq", info.State.LastSeq, "highest_seq_seen", high, "rooms", rooms, "rooms_with_gap", gaps, "unacked_sends", unacked)
}

// healthLoop asks JetStream for the stream's state every third of
// HealthTimeout. Each answer keeps the backplane up (Health) and is checked
// against the stream this replica knows (checkStream); a stream gone
// missing is made again. It logs every change of Health.
func (bp *Backplane) healthLoop() {
	defer bp.wg.Done()
	tick := time.NewTicker(bp.cfg.HealthTimeout / 3)
	defer tick.Stop()
	var last error = ErrDown
	for {
		select {
		case <-bp.quit:
			return
		case <-tick.C:
		}
		if h := bp.Health(); h != last {
			if h == nil {
				bp.log.Info("backplane up")
			} else {
				bp.log.Warn(h.Error()+"; sends and new rooms get unavailable until it is back", "health_timeout", bp.cfg.HealthTimeout.String())
			}
			last = h
		}
		gen := bp.connGen()
		if !bp.nc.IsConnected() || bp.checked.Load() != gen+1 {
			continue // ensureLoop's turn
		}
		high := bp.highSeq.Load()
		ctx, cancel := context.WithTimeout(context.Background(), bp.cfg.HealthTimeout)
		s, err := bp.js.Stream(ctx, bp.cfg.Stream)
		cancel()
		switch {
		case err == nil:
			bp.answer()
			bp.checkStream(s.CachedInfo(), high)
		case errors.Is(err, jetstream.ErrStreamNotFound):
			bp.answer()
			bp.log.Error("the stream is gone; making it again", "stream", bp.cfg.Stream)
			bp.checked.Store(0)
			bp.poke()
		default:
			// No answer in time: Health reports not responding once the
			// last answer is HealthTimeout old.
			bp.log.Debug("stream probe failed", "err", err)
		}
	}
}

// sleep waits d or until Close; it reports false on Close.
func (bp *Backplane) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-bp.quit:
		return false
	}
}

// backoff is an exponential delay with full jitter between base and max.
func backoff(attempt int, base, maxD time.Duration) time.Duration {
	d := base << min(attempt, 16)
	if d > maxD || d <= 0 {
		d = maxD
	}
	return d/2 + rand.N(d/2+1)
}

func (bp *Backplane) streamHandle() jetstream.Stream {
	if p := bp.stream.Load(); p != nil {
		return *p
	}
	return nil
}

var errUnavailable = errors.New("cluster: backplane unavailable")

func unavailable(msg string) *protocol.Error {
	return &protocol.Error{Code: protocol.CodeUnavailable, Message: msg, RetryAfterMs: 1000}
}

// Join implements hub.Broker.
func (bp *Backplane) Join(sub hub.Subscriber, name string, since *uint64) (hub.Membership, *protocol.Error) {
	if !protocol.ValidRoom(name) {
		return nil, &protocol.Error{Code: protocol.CodeInvalidRoom, Message: "room must match [A-Za-z0-9_.-]{1,64}"}
	}
	for {
		if bp.closed.Load() {
			return nil, unavailable("gateway is shutting down")
		}
		r, perr := bp.room(name)
		if perr != nil {
			return nil, perr
		}
		m, ok, perr := r.join(sub, since)
		if perr != nil {
			return nil, perr
		}
		if ok {
			return m, nil
		}
		// The room was torn down between lookup and join; look again.
	}
}

// room returns the local room, setting it up on first use. Setup does
// network I/O and runs outside every lock; concurrent joiners wait for it.
func (bp *Backplane) room(name string) (*room, *protocol.Error) {
	bp.mu.Lock()
	r, ok := bp.rooms[name]
	if !ok {
		if len(bp.rooms) >= bp.cfg.MaxRooms {
			bp.mu.Unlock()
			return nil, &protocol.Error{Code: protocol.CodeRoomLimit, Message: "the gateway holds as many rooms as it may; try again later", RetryAfterMs: 1000}
		}
		r = newRoom(bp, name)
		bp.rooms[name] = r
	}
	bp.mu.Unlock()
	if !ok {
		err := r.setup()
		if err != nil {
			bp.log.Warn("cannot set up room", "err", err)
			bp.dropRoom(r)
			r.teardown()
		} else {
			bp.obs.RoomOpened()
		}
		r.setupErr = err
		close(r.ready)
	}
	<-r.ready
	if r.setupErr != nil {
		return nil, unavailable("the chat backplane is unavailable; try again")
	}
	return r, nil
}

// dropRoom removes r from the registry if it is still there.
func (bp *Backplane) dropRoom(r *room) {
	bp.mu.Lock()
	if bp.rooms[r.name] == r {
		delete(bp.rooms, r.name)
	}
	bp.mu.Unlock()
}

func (bp *Backplane) lookup(name string) *room {
	bp.mu.Lock()
	defer bp.mu.Unlock()
	return bp.rooms[name]
}

func (bp *Backplane) allRooms() []*room {
	bp.mu.Lock()
	defer bp.mu.Unlock()
	rs := make([]*room, 0, len(bp.rooms))
	for _, r := range bp.rooms {
		rs = append(rs, r)
	}
	return rs
}

// Rooms returns how many rooms this replica holds (rooms with local members).
func (bp *Backplane) Rooms() int {
	bp.mu.Lock()
	defer bp.mu.Unlock()
	return len(bp.rooms)
}

// Close tears every room down (saying goodbye to the other replicas), stops
// the background work and closes the NATS connection. Call it after every
// connection is gone; joins after Close get unavailable. It is idempotent.
func (bp *Backplane) Close() error {
	if bp.closed.Swap(true) {
		return nil
	}
	for _, r := range bp.allRooms() {
		<-r.ready
		if r.setupErr == nil {
			r.close()
		}
	}
	bp.announce(false)
	close(bp.quit)
	bp.wg.Wait()
	bp.timers.Wait()
	if !bp.killed.Load() {
		_ = bp.nc.FlushTimeout(2 * time.Second)
	}
	bp.nc.Close()
	return nil
}

// kill drops the NATS connection at once without any goodbye, as a crash
// would. Tests use it; Close must still be called.
func (bp *Backplane) kill() {
	bp.killed.Store(true)
	bp.nc.Close()
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = crand.Read(b)
	return hex.EncodeToString(b)
}
