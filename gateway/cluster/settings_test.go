package cluster

import (
	"flag"
	"io"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatgate/chatgate/gateway/broker"
)

// The flags' defaults are the zero Config's: a binary run without cluster
// flags and a Config built in code get the same backplane.
func TestSettingsDefaultsAreConfigDefaults(t *testing.T) {
	s := DefaultSettings()
	if err := s.Validate(); err != nil {
		t.Fatalf("the defaults do not validate: %v", err)
	}
	got := s.Config("n", broker.DefaultSettings())
	var want Config
	want.setDefaults()
	checks := []struct {
		name      string
		got, want any
	}{
		{"Rooms", got.Rooms, want.Rooms},
		{"MaxAge", got.MaxAge, want.MaxAge},
		{"Storage", got.Storage, want.Storage},
		{"Replicas", got.Replicas, want.Replicas},
		{"PresenceSync", got.PresenceSync, want.PresenceSync},
		{"PresenceTTL", got.PresenceTTL, want.PresenceTTL},
		{"HealthTimeout", got.HealthTimeout, want.HealthTimeout},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: the flags' default makes %v; a zero Config takes %v", c.name, c.got, c.want)
		}
	}
}

// Every flag reaches its Config field.
func TestSettingsConfig(t *testing.T) {
	s := DefaultSettings()
	fs := flag.NewFlagSet("chatgate", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	s.RegisterFlags(fs)
	err := fs.Parse([]string{
		"--backplane=nats://n1:4222,nats://n2:4222", "--nats-creds-file=/c", "--nats-tls-ca-file=/ca",
		"--nats-tls-cert-file=/cert", "--nats-tls-key-file=/key", "--stream-replicas=3", "--stream-storage=memory",
		"--stream-max-age=2h", "--presence-sync=2s", "--presence-ttl=7s", "--nats-health-timeout=4s",
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	rooms := broker.Settings{History: 7, MaxRooms: 8, PresenceInterval: time.Second, PresenceMaxMembers: 9}
	c := s.Config("edge-1", rooms)
	want := Config{
		URL: "nats://n1:4222,nats://n2:4222", CredsFile: "/c", TLSCAFile: "/ca", TLSCertFile: "/cert", TLSKeyFile: "/key",
		NodeID: "edge-1", Rooms: rooms, MaxAge: 2 * time.Hour, Storage: jetstream.MemoryStorage, Replicas: 3,
		PresenceSync: 2 * time.Second, PresenceTTL: 7 * time.Second, HealthTimeout: 4 * time.Second,
	}
	if c != want {
		t.Fatalf("Config\n got %+v\nwant %+v", c, want)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("the Config of valid settings does not validate: %v", err)
	}
}
