// Package gateway is chatgate's WebSocket chat gateway: admission and origin
// checks, the per-connection reader and writer, limits, heartbeats, and the
// graceful drain. Rooms, presence and history live in gateway/hub; the wire
// format in gateway/protocol.
package gateway

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/chatgate/chatgate/gateway/auth"
	"github.com/chatgate/chatgate/gateway/broker"
	"github.com/chatgate/chatgate/gateway/observe"
	"github.com/chatgate/chatgate/gateway/protocol"
)

// Options are the parts of a Server that are not configuration.
type Options struct {
	Logger   *slog.Logger
	Observer observe.Observer
	// Broker routes room traffic; it is required. It is the caller's to
	// build and to close, after Run (or ForceClose) has returned;
	// cmd/chatgate builds the in-process hub or the cluster backplane.
	Broker broker.Broker
	// SharedBroker says the Broker serves other replicas too (the cluster
	// backplane): at the end of a drain, the memberships that linger for
	// --presence-grace are then kept until their grace ends (within the
	// shutdown timeout), so that users who reconnect to another replica
	// show no leave and join there. Otherwise nobody is left to see them
	// and they are released at once.
	SharedBroker bool
	// History is the Broker's history length (broker.Settings.History):
	// the most frames one join replays. It bounds the replayed frames a
	// connection may have waiting (--max-rooms of them per room). Zero
	// means broker.DefaultHistory.
	History int
	// Ready, if set, is part of the gateway's readiness (Readiness): while
	// it returns an error, /readyz answers 503 with the error's text as the
	// body (a cluster backplane that lost NATS: "backplane down") and
	// chatgate_ready reads 0. Liveness is not affected.
	Ready func() error
	// Web serves everything on the chat listener but /ws (the web page).
	Web http.Handler
	// Tracer provides spans (handshakes, sampled messages, evictions,
	// the drain); nil means no tracing. Propagator reads the handshake's
	// trace context; nil means otel's global propagator.
	Tracer     trace.TracerProvider
	Propagator propagation.TextMapPropagator
}

// Server is the gateway. It serves the chat listener (ServeHTTP) and the
// admin endpoints (AdminHandler), and drains on request.
type Server struct {
	// static after construction
	cfg      Config
	log      *slog.Logger
	obs      observe.Observer // drain (below), wrapping Options.Observer
	drain    *drainStats
	broker   broker.Broker
	brokerOK func() error // Options.Ready; nil means always ready
	shared   bool         // Options.SharedBroker
	origins  originChecker
	adm      *admission
	budgets  *sendBudgets
	upgrader websocket.Upgrader
	// loop is the event loop (--netpoll where supported), evUpgrader its
	// upgrader; loop is nil with goroutines per connection.
	loop       *eventLoop
	evUpgrader websocket.Upgrader
	mux        *http.ServeMux
	chat       http.Handler // mux behind chatOnly
	tracer     trace.Tracer
	tracing    bool // a tracer was given: spans are worth their options
	propagator propagation.TextMapPropagator
	auth       *auth.Authenticator // nil without --auth jwt
	stopAuth   context.CancelFunc  // ends the keys-file watcher
	authDone   chan struct{}       // closed when the watcher has returned
	guests     guestState          // guest credentials (guest.go)
	activity   *activity           // the once-a-minute activity line's counts (activity.go)
	lingering  *lingering          // memberships kept for --presence-grace (linger.go)

	queued   atomic.Int64  // bytes queued to all clients
	outboxes outboxShared  // what every connection's outbox shares
	connSeq  atomic.Uint64 // numbers connections, to spread them over the flushers
	started  atomic.Bool   // SetReady: the listeners are bound
	draining atomic.Bool

	// handlers counts the goroutines serving connections (from the
	// upgrade to the end of run), so Wait and ForceClose can wait for them.
	// A connection ("conn") is always one WebSocket; Conns counts the
	// registered ones.
	handlers sync.WaitGroup

	mu sync.Mutex
	// clients is every registered connection; closingAll is set once the
	// drain has started closing them, so late arrivals are closed at once.
	clients    map[*client]struct{}
	closingAll bool
}

// errNoBroker: Options.Broker is required.
var errNoBroker = errors.New("gateway: Options.Broker is nil; build the in-process hub or the cluster backplane and pass it")

// New validates cfg and builds a Server.
func New(cfg Config, opts Options) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opts.Broker == nil {
		return nil, errNoBroker
	}
	origins, err := newOriginChecker(cfg.AllowedOrigins)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:      cfg,
		log:      opts.Logger,
		obs:      opts.Observer,
		broker:   opts.Broker,
		brokerOK: opts.Ready,
		shared:   opts.SharedBroker,
		origins:  origins,
		adm:      newAdmission(&cfg),
		clients:  make(map[*client]struct{}),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	userRate, userBurst := cfg.UserSendLimits()
	s.budgets = newSendBudgets(userRate, userBurst, nil)
	if s.obs == nil {
		s.obs = observe.Nop{}
	}
	s.drain = newDrainStats(s.obs)
	s.obs = s.drain
	s.activity = newActivity(s.obs)
	s.obs = s.activity
	s.lingering = newLingering(cfg.PresenceGrace)
	s.obs.WatchReadiness(func() bool { return s.Readiness() == nil })
	tp := opts.Tracer
	if tp == nil {
		tp = noop.NewTracerProvider()
	}
	s.tracer = tp.Tracer("github.com/chatgate/chatgate/gateway")
	_, noopTracer := tp.(noop.TracerProvider)
	s.tracing = !noopTracer
	s.propagator = opts.Propagator
	if s.propagator == nil {
		s.propagator = otel.GetTextMapPropagator()
	}
	history := opts.History
	if history <= 0 {
		history = broker.DefaultHistory
	}
	s.outboxes = outboxShared{
		limits: outboxLimits{
			queueBytes: cfg.QueueBytes,
			totalBytes: cfg.TotalQueueBytes,
			// A full replay of every room a connection may be in.
			replayFrames: cfg.MaxRoomsPerConn * history,
		},
		total:   &s.queued,
		obs:     s.obs,
		retryMs: s.retryMs,
	}
	if err := s.startGuests(opts.Observer); err != nil {
		return nil, err
	}
	if op, ok := s.broker.(broker.Operator); ok {
		// The server API's disconnects, from whichever replica they were
		// asked of, close this replica's connections.
		op.HandleDisconnects(s.Disconnect)
	}
	if cfg.Auth == "jwt" {
		a, err := auth.New(cfg.AuthConfig(), s.log)
		if err != nil {
			return nil, err
		}
		s.auth = a
		ctx, cancel := context.WithCancel(context.Background())
		s.stopAuth, s.authDone = cancel, make(chan struct{})
		go func() {
			defer close(s.authDone)
			if err := a.Watch(ctx); err != nil {
				s.log.Error("cannot watch the jwt keys file; rotation needs a restart", "err", err)
			}
		}()
	}
	s.upgrader = websocket.Upgrader{
		HandshakeTimeout: cfg.ReadHeaderTimeout,
		ReadBufferSize:   1024,
		WriteBufferSize:  4096,
		WriteBufferPool:  &sync.Pool{},
		Subprotocols:     []string{protocol.Subprotocol},
		CheckOrigin:      s.origins.check,
		Error: func(w http.ResponseWriter, _ *http.Request, status int, reason error) {
			w.Header().Set("Sec-WebSocket-Version", "13") // RFC 6455 4.2.2
			http.Error(w, reason.Error(), status)
		},
	}
	if cfg.Netpoll {
		if s.loop, err = newEventLoop(&cfg); err != nil {
			s.log.Info("serving each connection with goroutines of its own", "reason", err.Error())
		} else {
			// gorilla reads whole messages from the frame gate, and
			// writes only control frames (queued): small buffers do.
			s.evUpgrader = s.upgrader
			s.evUpgrader.ReadBufferSize = 128
			s.evUpgrader.WriteBufferSize = 128
		}
	}
	s.mux = http.NewServeMux()
	s.mux.HandleFunc(WebSocketPath, s.serveWS)
	if opts.Web != nil {
		s.mux.Handle("/", opts.Web)
	}
	s.chat = chatOnly(s.mux, s.obs)
	return s, nil
}

// WebSocketPath is where the chat listener upgrades WebSockets; everything
// else on that listener is the web page.
const WebSocketPath = "/ws"

// ServeHTTP serves the chat listener: GET and HEAD without a body only.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.chat.ServeHTTP(w, r) }

// SetReady marks the server started (its listeners bound), or not. It is
// one part of Readiness.
func (s *Server) SetReady(ok bool) { s.started.Store(ok) }

// Reasons the gateway is not ready (Readiness), as /readyz shows them.
var (
	ErrStarting = errors.New("starting")
	ErrDraining = errors.New("draining")
)

// Readiness is the gateway's one readiness check: nil when it should get
// new connections, otherwise why not: ErrDraining from the first shutdown
// signal, ErrStarting until SetReady(true), or the broker's error
// (Options.Ready). /readyz answers with it and chatgate_ready reads it, so
// the two always agree.
func (s *Server) Readiness() error {
	switch {
	case s.draining.Load():
		return ErrDraining
	case !s.started.Load():
		return ErrStarting
	case s.brokerOK != nil:
		return s.brokerOK()
	}
	return nil
}

// AdminHandler serves /livez and /readyz; extra routes (metrics) can be
// added to the returned mux.
func (s *Server) AdminHandler() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := s.Readiness(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	return mux
}

// register adds c to the client set. It reports false if the drain is
// already closing clients, in which case c must be closed at once.
func (s *Server) register(c *client) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clients[c] = struct{}{}
	return !s.closingAll
}

func (s *Server) unregister(c *client) {
	s.mu.Lock()
	delete(s.clients, c)
	n := len(s.clients)
	s.mu.Unlock()
	if s.draining.Load() {
		s.obs.SetDrainRemaining(n)
	}
}

// Disconnect closes every registered connection target names with 4403
// kicked (what is queued is written first) and returns how many. It is the
// broker's disconnect handler (broker.Operator.HandleDisconnects): it never
// blocks. O(connections); disconnects are rare.
func (s *Server) Disconnect(target broker.Target) int {
	s.mu.Lock()
	var hit []*client
	for c := range s.clients {
		if target.Matches(c.user.ID, c.id) {
			hit = append(hit, c)
		}
	}
	s.mu.Unlock()
	for _, c := range hit {
		c.close(causeKicked)
	}
	return len(hit)
}

// Conns returns the number of registered connections.
func (s *Server) Conns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.clients)
}

// MaxQueueBytes reports the largest outbound queue of any client now, for
// the worst-queue gauge. It is O(connections); call it at scrape time only.
func (s *Server) MaxQueueBytes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	worst := 0
	for c := range s.clients {
		worst = max(worst, c.out.liveBytes())
	}
	return worst
}

// QueuedBytes reports the bytes queued to all clients together now, the
// total --total-queue-bytes caps, for its gauge.
func (s *Server) QueuedBytes() int64 { return s.queued.Load() }

// retryMs picks a jittered reconnect delay between a tenth of
// --drain-retry-max and all of it, so reconnects do not arrive as a herd.
func (s *Server) retryMs() int64 {
	hi := s.cfg.DrainRetryMax.Milliseconds()
	lo := hi / 10
	return lo + rand.Int64N(hi-lo+1)
}

// BeginDrain fails readiness and refuses new connections with 503.
func (s *Server) BeginDrain() {
	s.drain.counting.Store(true)
	s.draining.Store(true)
	s.obs.SetDraining(true)
	s.obs.SetDrainRemaining(s.Conns())
}

// CloseClients closes every connection with 1001 and a jittered retry_ms,
// spread evenly over window; each client's queue is written out before its
// close frame. It returns when all close requests are made or ctx ends.
func (s *Server) CloseClients(ctx context.Context, window time.Duration) {
	all := s.closeAll()
	rand.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })

	start := time.Now()
	var step time.Duration
	if len(all) > 1 {
		step = window / time.Duration(len(all)-1)
	}
	t := time.NewTimer(0)
	defer t.Stop()
	<-t.C
	for i, c := range all {
		if wait := time.Until(start.Add(time.Duration(i) * step)); wait > 0 {
			t.Reset(wait)
			select {
			case <-t.C:
			case <-ctx.Done():
				return
			}
		}
		c.close(causeDrain)
	}
}

// closeAll marks the client set closing (clients registered later are
// closed at once) and returns the clients in it now.
func (s *Server) closeAll() []*client {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closingAll = true
	all := make([]*client, 0, len(s.clients))
	for c := range s.clients {
		all = append(all, c)
	}
	return all
}

// Wait blocks until every connection handler has returned or ctx ends.
func (s *Server) Wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		s.handlers.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ForceClose drops every remaining connection without waiting, then waits
// for their handlers.
func (s *Server) ForceClose() {
	all := s.closeAll()
	for _, c := range all {
		c.close(causeShutdownForced)
		_ = c.conn.NetConn().Close()
	}
	s.handlers.Wait()
}

// Close releases what the Server owns (the token keys' watcher). Call it
// after every connection is gone.
func (s *Server) Close() {
	s.lingering.releaseAll()
	if s.loop != nil {
		s.loop.close()
	}
	if s.stopAuth != nil {
		s.stopAuth()
		<-s.authDone
	}
	s.stopGuests()
}

// ErrDrainTimeout is returned when connections outlived the shutdown
// timeout and had to be force-closed.
var ErrDrainTimeout = errors.New("gateway: drain did not finish before the shutdown timeout")

// newID returns 16 random hex characters.
func newID() string {
	var b [8]byte
	_, _ = crand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// displayName trims name and returns it if protocol.ValidName accepts it,
// else a generated guest-XXXX name.
func displayName(name, id string) string {
	if n, ok := protocol.ValidName(name); ok {
		return n
	}
	return "guest-" + id[:4]
}
