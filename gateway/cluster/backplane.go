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
// # Presence
//
// Each replica publishes (core NATS, chatgate.presence.<room>) its local
// users' arrivals and departures, a snapshot of its local users of every
// room it holds every PresenceSync, and a goodbye when it drops a room.
// Replicas holding the room keep the users of every other replica with the
// time they last heard from it; a replica silent for PresenceTTL has its
// users expire. A room's online set is the union over replicas, so a user
// on two replicas counts once. Changes from any replica feed the same
// coalescing as the in-process hub.
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
	if c.ReconnectWait <= 0 {
		c.ReconnectWait = time.Second
	}
	if c.SyncWait <= 0 {
		c.SyncWait = 250 * time.Millisecond
	}
}

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

	stream   atomic.Pointer[jetstream.Stream] // set once the stream is ensured
	streamOK atomic.Bool
	closed   atomic.Bool
	killed   atomic.Bool // tests: the NATS connection was dropped without goodbye

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
		nats.PingInterval(10 * time.Second),
		nats.MaxPingsOutstanding(3),
		nats.ConnectHandler(func(*nats.Conn) {
			bp.log.Info("connected to NATS")
			bp.poke()
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			bp.log.Info("reconnected to NATS", "url", nc.ConnectedUrlRedacted())
			bp.poke()
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
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
	bp.wg.Add(3)
	go bp.ensureLoop()
	go bp.out.run(bp)
	go bp.presenceLoop()
	if nc.IsConnected() {
		bp.poke()
	}
	return bp, nil
}

// ID is this replica's presence id.
func (bp *Backplane) ID() string { return bp.id }

// Up reports whether NATS is connected and the stream is in place: the
// backplane's readiness.
func (bp *Backplane) Up() bool {
	return !bp.closed.Load() && !bp.killed.Load() && bp.nc.IsConnected() && bp.streamOK.Load()
}

func (bp *Backplane) poke() {
	select {
	case bp.ensure <- struct{}{}:
	default:
	}
}

// ensureLoop creates or updates the stream after every (re)connect, retrying
// with backoff, then announces this replica and resyncs presence.
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

func (bp *Backplane) ensureStream() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	scfg := jetstream.StreamConfig{
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
	s, err := bp.js.CreateOrUpdateStream(ctx, scfg)
	if err != nil {
		// A stream that exists but cannot take this configuration (a
		// storage change, say) is still usable: use it and say so.
		existing, gerr := bp.js.Stream(ctx, bp.cfg.Stream)
		if gerr != nil {
			return err
		}
		bp.log.Error("the stream exists with a configuration that cannot be updated; using it as it is", "err", err)
		s = existing
	}
	bp.stream.Store(&s)
	bp.streamOK.Store(true)
	return nil
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
