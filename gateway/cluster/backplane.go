package cluster

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"

	"github.com/chatgate/chatgate/gateway/broker"
	"github.com/chatgate/chatgate/gateway/observe"
	"github.com/chatgate/chatgate/gateway/protocol"
)

// Backplane is the cluster broker.Broker. It is safe for concurrent use.
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
	// checked again (the disconnect handler zeroes it, and so does
	// healthLoop when the stream is gone or lost live delivery's settings).
	// Health and onLive compare it with connGen()+1; connGen reads the NATS
	// connection's statistics, under that connection's lock (nc.Stats).
	// answered is when JetStream last answered (unix ns).
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
	disp    dispatchers // the rooms' live subscriptions' channels (stored messages and presence), and the presence worker's
	repairs repairQueue
	psync   *nats.Subscription
	censusS *nats.Subscription
	yieldS  *nats.Subscription
	syncs   syncReplies
	syncS   *nats.Subscription

	// The server API (operator.go, bans.go).
	bans        broker.Bans                             // room bans in force here
	disconnect  atomic.Pointer[func(broker.Target) int] // HandleDisconnects
	banKV       atomic.Pointer[jetstream.KeyValue]      // the bans bucket, once ensured
	lastBanLoad atomic.Int64                            // when the bucket was last read whole (unix ns)
	apiS        *nats.Subscription
	sysMu       sync.Mutex
	sysPubs     map[string]*publisher // standalone publishers of system messages; guarded by sysMu

	ensure chan struct{} // poked on (re)connect
	// life ends (stop) when Close stops the background work; quit is its
	// Done channel.
	life   context.Context
	stop   context.CancelFunc
	quit   <-chan struct{}
	wg     sync.WaitGroup // background goroutines: loops, dispatchers, repair workers
	timers sync.WaitGroup // armed presence and repair-retry timers
}

var _ broker.Broker = (*Backplane)(nil)

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

		sysPubs: make(map[string]*publisher),
	}
	bp.life, bp.stop = context.WithCancel(context.Background())
	bp.quit = bp.life.Done()
	bp.tick = min(max(cfg.PresenceTTL/20, 10*time.Millisecond), time.Second)
	bp.out.init()
	bp.disp.init(cfg.liveQueue)
	bp.repairs.init()
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
			bp.checked.Store(0) // Health and onLive see the stream unchecked until ensureStream checks it again
			if !bp.closed.Load() {
				bp.log.Warn("disconnected from NATS; reconnecting", "err", err)
			}
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) { bp.onAsyncError(sub, err) }),
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
		if bp.censusS, err = nc.Subscribe(censusSubject, bp.onCensus); err == nil {
			if bp.yieldS, err = nc.Subscribe(yieldPrefix+">", bp.onYield); err == nil {
				bp.syncs.init(nc.NewInbox())
				if bp.syncS, err = nc.Subscribe(bp.syncs.prefix+"*", bp.onSyncReply); err == nil {
					bp.apiS, err = nc.Subscribe(apiPrefix+">", bp.onAPIRequest)
				}
			}
		}
	}
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("cluster: subscribe: %w", err)
	}
	bp.wg.Add(4 + repairWorkers)
	go bp.ensureLoop()
	go bp.out.run(bp)
	go bp.presenceLoop()
	go bp.healthLoop()
	for range repairWorkers {
		go bp.repairWorker()
	}
	bp.startDispatchers()
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

var errUnavailable = errors.New("cluster: backplane unavailable")

// retryAfterMs is what every unavailable of the backplane asks a client to
// wait before trying again.
const retryAfterMs = 1000

func unavailable(msg string) *protocol.Error {
	return &protocol.Error{Code: protocol.CodeUnavailable, Message: msg, RetryAfterMs: retryAfterMs}
}

// shuttingDown is the protocol's shutting-down error, with the retry hint
// of every unavailable here: another replica can take the client.
func shuttingDown() *protocol.Error {
	e := protocol.ShuttingDownError()
	e.RetryAfterMs = retryAfterMs
	return e
}

// Join implements broker.Broker.
func (bp *Backplane) Join(sub broker.Subscriber, name string, since *uint64) (broker.Membership, *protocol.Error) {
	if !protocol.ValidRoom(name) {
		return nil, protocol.InvalidRoomError()
	}
	if perr := bp.banned(name, sub.User().ID); perr != nil {
		return nil, perr // before setting the room up for nothing
	}
	for {
		if bp.closed.Load() {
			return nil, shuttingDown()
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
		if len(bp.rooms) >= bp.cfg.Rooms.MaxRooms {
			bp.mu.Unlock()
			return nil, protocol.RoomLimitError()
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
	bp.stop()
	bp.repairs.close()
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
