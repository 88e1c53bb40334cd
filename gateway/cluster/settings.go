package cluster

import (
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatgate/chatgate/gateway/broker"
)

// Defaults of the backplane's own settings (Settings and Config); the room
// settings' defaults are broker's.
const (
	DefaultStreamReplicas = 1
	DefaultStreamStorage  = "file"
	DefaultStreamMaxAge   = 24 * time.Hour
	DefaultPresenceSync   = 5 * time.Second
	DefaultPresenceTTL    = 15 * time.Second
	DefaultHealthTimeout  = 3 * time.Second
	// maxStreamReplicas is the most replicas JetStream gives a stream.
	maxStreamReplicas = 5
)

// Settings are the backplane's settings an operator gives the binary: the
// NATS connection, the JetStream stream and the cross-replica presence.
// With the room settings every broker takes (broker.Settings) and this
// replica's name they make a Config (see Settings.Config).
type Settings struct {
	Backplane         string // --backplane: NATS URL(s), comma-separated; empty: the in-process hub
	NATSCredsFile     string // --nats-creds-file
	NATSTLSCAFile     string // --nats-tls-ca-file
	NATSTLSCertFile   string // --nats-tls-cert-file
	NATSTLSKeyFile    string // --nats-tls-key-file
	StreamReplicas    int    // --stream-replicas
	StreamStorage     string // --stream-storage: "file" or "memory"
	StreamMaxAge      time.Duration
	PresenceSync      time.Duration
	PresenceTTL       time.Duration
	NATSHealthTimeout time.Duration
}

// DefaultSettings returns the defaults.
func DefaultSettings() Settings {
	return Settings{
		StreamReplicas:    DefaultStreamReplicas,
		StreamStorage:     DefaultStreamStorage,
		StreamMaxAge:      DefaultStreamMaxAge,
		PresenceSync:      DefaultPresenceSync,
		PresenceTTL:       DefaultPresenceTTL,
		NATSHealthTimeout: DefaultHealthTimeout,
	}
}

// RegisterFlags defines the backplane's flags, using s's current values as
// defaults.
func (s *Settings) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&s.Backplane, "backplane", s.Backplane, "cluster mode: NATS URL(s) with JetStream, comma-separated, e.g. nats://nats-1:4222,nats://nats-2:4222; empty runs the in-process hub (one replica)")
	fs.StringVar(&s.NATSCredsFile, "nats-creds-file", s.NATSCredsFile, "file holding the NATS user credentials (JWT and seed) for --backplane")
	fs.StringVar(&s.NATSTLSCAFile, "nats-tls-ca-file", s.NATSTLSCAFile, "file of PEM CA certificates that verify the NATS servers for --backplane")
	fs.StringVar(&s.NATSTLSCertFile, "nats-tls-cert-file", s.NATSTLSCertFile, "file holding the PEM client certificate presented to NATS (needs --nats-tls-key-file)")
	fs.StringVar(&s.NATSTLSKeyFile, "nats-tls-key-file", s.NATSTLSKeyFile, "file holding the PEM private key of --nats-tls-cert-file")
	fs.IntVar(&s.StreamReplicas, "stream-replicas", s.StreamReplicas, "replicas of the JetStream stream that holds room messages (1-5; needs a NATS cluster of at least that many servers)")
	fs.StringVar(&s.StreamStorage, "stream-storage", s.StreamStorage, "storage of the JetStream stream: file or memory")
	fs.DurationVar(&s.StreamMaxAge, "stream-max-age", s.StreamMaxAge, "how long the stream keeps a message (a room keeps at most --history messages either way)")
	fs.DurationVar(&s.PresenceSync, "presence-sync", s.PresenceSync, "cluster mode: how often each replica publishes its users of every room it holds")
	fs.DurationVar(&s.PresenceTTL, "presence-ttl", s.PresenceTTL, "cluster mode: a replica not heard from for this long while the backplane is up has its users removed from presence (at least twice --presence-sync)")
	fs.DurationVar(&s.NATSHealthTimeout, "nats-health-timeout", s.NATSHealthTimeout, "cluster mode: report the backplane down (/readyz 503, chatgate_backplane_up 0) when JetStream has not answered for this long; it is asked every third of it")
}

// Validate reports every invalid setting at once, naming its flag.
func (s *Settings) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if _, ok := storageOf(s.StreamStorage); !ok {
		bad("--stream-storage must be file or memory, got %q", s.StreamStorage)
	}
	if s.StreamReplicas < 1 || s.StreamReplicas > maxStreamReplicas {
		bad("--stream-replicas must be between 1 and %d, got %d", maxStreamReplicas, s.StreamReplicas)
	}
	if s.StreamMaxAge <= 0 {
		bad("--stream-max-age must be positive, got %v", s.StreamMaxAge)
	}
	if s.PresenceSync <= 0 {
		bad("--presence-sync must be positive, got %v", s.PresenceSync)
	}
	if s.PresenceTTL < 2*s.PresenceSync {
		bad("--presence-ttl (%v) must be at least twice --presence-sync (%v), so one lost snapshot does not expire a replica's users", s.PresenceTTL, s.PresenceSync)
	}
	if s.NATSHealthTimeout <= 0 {
		bad("--nats-health-timeout must be positive, got %v", s.NATSHealthTimeout)
	}
	if s.Backplane == "" {
		if s.NATSCredsFile != "" || s.NATSTLSCAFile != "" || s.NATSTLSCertFile != "" || s.NATSTLSKeyFile != "" {
			bad("--nats-creds-file and --nats-tls-* need --backplane")
		}
	} else if (s.NATSTLSCertFile == "") != (s.NATSTLSKeyFile == "") {
		bad("--nats-tls-cert-file and --nats-tls-key-file must be given together")
	}
	return errors.Join(errs...)
}

// Config is the backplane Config these settings, the room settings and this
// replica's name make; the caller adds the observer, logger, registry and
// tracer.
func (s *Settings) Config(nodeID string, rooms broker.Settings) Config {
	storage, _ := storageOf(s.StreamStorage)
	return Config{
		URL:           s.Backplane,
		CredsFile:     s.NATSCredsFile,
		TLSCAFile:     s.NATSTLSCAFile,
		TLSCertFile:   s.NATSTLSCertFile,
		TLSKeyFile:    s.NATSTLSKeyFile,
		NodeID:        nodeID,
		Rooms:         rooms,
		MaxAge:        s.StreamMaxAge,
		Storage:       storage,
		Replicas:      s.StreamReplicas,
		PresenceSync:  s.PresenceSync,
		PresenceTTL:   s.PresenceTTL,
		HealthTimeout: s.NATSHealthTimeout,
	}
}

// storageOf maps --stream-storage to the stream's storage type.
func storageOf(name string) (jetstream.StorageType, bool) {
	switch name {
	case "file":
		return jetstream.FileStorage, true
	case "memory":
		return jetstream.MemoryStorage, true
	}
	return jetstream.FileStorage, false
}
