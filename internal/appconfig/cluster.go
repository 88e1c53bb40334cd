package appconfig

import (
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatgate/chatgate/gateway/broker"
	"github.com/chatgate/chatgate/gateway/cluster"
)

// Cluster is the cluster backplane's settings: the NATS connection, the
// JetStream stream and the cross-replica presence.
//
// TEMPORARY home: these belong in gateway/cluster's own Config (with its
// defaults, flags and Validate), like the other parts; they are here only
// because issue 15's change could not edit gateway/cluster while it was
// being rewritten (issue 19). The follow-up moves them there and makes
// Config.Cluster a cluster type. Until then the defaults below repeat
// cluster.Config's zero-value defaults (24h, 1 replica, 5s, 15s, 3s).
type Cluster struct {
	Backplane         string // NATS URL(s), comma-separated; empty: the in-process hub
	NATSCredsFile     string
	NATSTLSCAFile     string
	NATSTLSCertFile   string
	NATSTLSKeyFile    string
	StreamReplicas    int
	StreamStorage     string // "file" or "memory"
	StreamMaxAge      time.Duration
	PresenceSync      time.Duration
	PresenceTTL       time.Duration
	NATSHealthTimeout time.Duration
}

// DefaultCluster returns the defaults.
func DefaultCluster() Cluster {
	return Cluster{
		StreamReplicas:    1,
		StreamStorage:     "file",
		StreamMaxAge:      24 * time.Hour,
		PresenceSync:      5 * time.Second,
		PresenceTTL:       15 * time.Second,
		NATSHealthTimeout: 3 * time.Second,
	}
}

// RegisterFlags defines the backplane's flags, using c's current values as
// defaults.
func (c *Cluster) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Backplane, "backplane", c.Backplane, "cluster mode: NATS URL(s) with JetStream, comma-separated, e.g. nats://nats-1:4222,nats://nats-2:4222; empty runs the in-process hub (one replica)")
	fs.StringVar(&c.NATSCredsFile, "nats-creds-file", c.NATSCredsFile, "file holding the NATS user credentials (JWT and seed) for --backplane")
	fs.StringVar(&c.NATSTLSCAFile, "nats-tls-ca-file", c.NATSTLSCAFile, "file of PEM CA certificates that verify the NATS servers for --backplane")
	fs.StringVar(&c.NATSTLSCertFile, "nats-tls-cert-file", c.NATSTLSCertFile, "file holding the PEM client certificate presented to NATS (needs --nats-tls-key-file)")
	fs.StringVar(&c.NATSTLSKeyFile, "nats-tls-key-file", c.NATSTLSKeyFile, "file holding the PEM private key of --nats-tls-cert-file")
	fs.IntVar(&c.StreamReplicas, "stream-replicas", c.StreamReplicas, "replicas of the JetStream stream that holds room messages (1-5; needs a NATS cluster of at least that many servers)")
	fs.StringVar(&c.StreamStorage, "stream-storage", c.StreamStorage, "storage of the JetStream stream: file or memory")
	fs.DurationVar(&c.StreamMaxAge, "stream-max-age", c.StreamMaxAge, "how long the stream keeps a message (a room keeps at most --history messages either way)")
	fs.DurationVar(&c.PresenceSync, "presence-sync", c.PresenceSync, "cluster mode: how often each replica publishes its users of every room it holds")
	fs.DurationVar(&c.PresenceTTL, "presence-ttl", c.PresenceTTL, "cluster mode: a replica not heard from for this long while the backplane is up has its users removed from presence (at least twice --presence-sync)")
	fs.DurationVar(&c.NATSHealthTimeout, "nats-health-timeout", c.NATSHealthTimeout, "cluster mode: report the backplane down (/readyz 503, chatgate_backplane_up 0) when JetStream has not answered for this long; it is asked every third of it")
}

// Validate reports every invalid setting at once.
func (c *Cluster) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	switch c.StreamStorage {
	case "file", "memory":
	default:
		bad("--stream-storage must be file or memory, got %q", c.StreamStorage)
	}
	if c.StreamReplicas < 1 || c.StreamReplicas > 5 {
		bad("--stream-replicas must be between 1 and 5, got %d", c.StreamReplicas)
	}
	if c.StreamMaxAge <= 0 {
		bad("--stream-max-age must be positive, got %v", c.StreamMaxAge)
	}
	if c.PresenceSync <= 0 {
		bad("--presence-sync must be positive, got %v", c.PresenceSync)
	}
	if c.PresenceTTL < 2*c.PresenceSync {
		bad("--presence-ttl (%v) must be at least twice --presence-sync (%v), so one lost snapshot does not expire a replica's users", c.PresenceTTL, c.PresenceSync)
	}
	if c.NATSHealthTimeout <= 0 {
		bad("--nats-health-timeout must be positive, got %v", c.NATSHealthTimeout)
	}
	if c.Backplane == "" {
		if c.NATSCredsFile != "" || c.NATSTLSCAFile != "" || c.NATSTLSCertFile != "" || c.NATSTLSKeyFile != "" {
			bad("--nats-creds-file and --nats-tls-* need --backplane")
		}
	} else if (c.NATSTLSCertFile == "") != (c.NATSTLSKeyFile == "") {
		bad("--nats-tls-cert-file and --nats-tls-key-file must be given together")
	}
	return errors.Join(errs...)
}

// BackplaneConfig is the cluster.Config these settings, the room settings
// and this replica's name make; the caller adds the observer, logger,
// registry and tracer.
func (c *Cluster) BackplaneConfig(nodeID string, rooms broker.Settings) cluster.Config {
	storage := jetstream.FileStorage
	if c.StreamStorage == "memory" {
		storage = jetstream.MemoryStorage
	}
	return cluster.Config{
		URL:                c.Backplane,
		CredsFile:          c.NATSCredsFile,
		TLSCAFile:          c.NATSTLSCAFile,
		TLSCertFile:        c.NATSTLSCertFile,
		TLSKeyFile:         c.NATSTLSKeyFile,
		NodeID:             nodeID,
		History:            rooms.History,
		MaxAge:             c.StreamMaxAge,
		Storage:            storage,
		Replicas:           c.StreamReplicas,
		MaxRooms:           rooms.MaxRooms,
		PresenceInterval:   rooms.PresenceInterval,
		PresenceMaxMembers: rooms.PresenceMaxMembers,
		PresenceSync:       c.PresenceSync,
		PresenceTTL:        c.PresenceTTL,
		HealthTimeout:      c.NATSHealthTimeout,
	}
}
