package cluster

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/chatgate/chatgate/gateway/broker"
	"github.com/chatgate/chatgate/gateway/observe"
)

// Subjects and names. Room names are [A-Za-z0-9_.-]; a '.' only adds
// subject tokens, and exact subjects still match one room.
const (
	StreamName = "CHATGATE_ROOMS"
	roomPrefix = "chatgate.room." // stored messages (the stream's subjects)
	// livePrefix: what a replica serving the room hears live, on one
	// subscription: the stream republishes stored messages here (with the
	// Nats-Stream header), and replicas publish their users of the room
	// here (presence, without it).
	livePrefix      = "chatgate.live."
	psyncPrefix     = "chatgate.psync." // a replica starting to serve a room asks for users
	yieldPrefix     = "chatgate.yield." // a replica losing publish races asks the others to pause
	censusSubject   = "chatgate.census"
	streamSubjects  = roomPrefix + ">"
	maxPublishTries = 50 // and within PublishTimeout
	// maxConsumers is the stream's consumer limit. chatgate itself creates
	// none; it is kept for streams made by earlier versions, which did.
	maxConsumers = 1_000_000
)

// Config tunes a Backplane. Zero values take the documented defaults: the
// room settings' from broker, the others' from this package's Default*
// (Settings makes a Config from the binary's flags).
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

	// Rooms are the room settings every broker takes: History is the
	// stream's MaxMsgsPerSubject, MaxRooms the rooms this replica serves at
	// once. Zero values take broker's defaults.
	Rooms broker.Settings

	MaxAge   time.Duration                 // how long the stream keeps a message (default DefaultStreamMaxAge)
	Storage  jetstream.StorageType         // file (default) or memory
	Replicas int                           // stream replicas (default DefaultStreamReplicas)
	Stream   string                        // stream name (default CHATGATE_ROOMS)
	Observer observe.Observer              // the gateway's observer
	Logger   *slog.Logger                  // nil discards
	Registry prometheus.Registerer         // chatgate_backplane_* go here; nil registers nowhere
	Tracer   trace.TracerProvider          // nil: no spans
	Prop     propagation.TextMapPropagator // nil: otel's global propagator

	PresenceSync time.Duration // snapshot period (default DefaultPresenceSync)
	PresenceTTL  time.Duration // a silent replica's users expire after this (default DefaultPresenceTTL)

	PublishTimeout time.Duration // one send's budget: its PubAck, retries included, then its delivery on this replica (default 3s)
	HealthTimeout  time.Duration // down when JetStream has not answered for this long (default DefaultHealthTimeout; probed every third of it)
	ReconnectWait  time.Duration // base wait between reconnect attempts (default 1s, plus jitter)
	SyncWait       time.Duration // how long a room's first join waits for the other replicas' members (default 250ms)

	// liveQueue is how many messages each dispatcher channel buffers
	// (default liveQueue); tests make it small to provoke drops.
	liveQueue int
}

func (c *Config) setDefaults() {
	c.Rooms = c.Rooms.OrDefaults()
	if c.MaxAge <= 0 {
		c.MaxAge = DefaultStreamMaxAge
	}
	if c.Replicas <= 0 {
		c.Replicas = DefaultStreamReplicas
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
	if c.PresenceSync <= 0 {
		c.PresenceSync = DefaultPresenceSync
	}
	if c.PresenceTTL <= 0 {
		c.PresenceTTL = DefaultPresenceTTL
	}
	if c.PublishTimeout <= 0 {
		c.PublishTimeout = 3 * time.Second
	}
	if c.HealthTimeout <= 0 {
		c.HealthTimeout = DefaultHealthTimeout
	}
	if c.ReconnectWait <= 0 {
		c.ReconnectWait = time.Second
	}
	if c.SyncWait <= 0 {
		c.SyncWait = 250 * time.Millisecond
	}
	if c.liveQueue <= 0 {
		c.liveQueue = liveQueue
	}
}

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
	if c.Replicas > maxStreamReplicas {
		errs = append(errs, fmt.Errorf("cluster: stream replicas must be 1 to %d, got %d", maxStreamReplicas, c.Replicas))
	}
	return errors.Join(errs...)
}
