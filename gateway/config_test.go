package gateway

// Configuration: validation names the offending flag, every flag has a
// CHATGATE_* fallback, and the command line beats the environment.

import (
	"flag"
	"io"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/chatgate/chatgate/gateway/protocol"
)

func TestConfigDefaultsValid(t *testing.T) {
	for name, cfg := range map[string]Config{"DefaultConfig": DefaultConfig(), "testConfig": testConfig()} {
		if err := cfg.Validate(); err != nil {
			t.Errorf("%s does not validate: %v", name, err)
		}
	}
}

func TestConfigValidateRejects(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(*Config)
		flag   string // the error must name it
	}{
		{"empty addr", func(c *Config) { c.Addr = "" }, "--addr"},
		{"empty node id", func(c *Config) { c.NodeID = "" }, "--node-id"},
		{"long node id", func(c *Config) { c.NodeID = strings.Repeat("n", 65) }, "--node-id"},
		{"node id with newline", func(c *Config) { c.NodeID = "node\n1" }, "--node-id"},
		{"bad origin", func(c *Config) { c.AllowedOrigins = []string{"chat.example.com"} }, "--allowed-origins"},
		{"bad origin wildcard", func(c *Config) { c.AllowedOrigins = []string{"https://a.*.com"} }, "--allowed-origins"},
		{"max conns 0", func(c *Config) { c.MaxConns = 0 }, "--max-conns"},
		{"max conns per ip -1", func(c *Config) { c.MaxConnsPerIP = -1 }, "--max-conns-per-ip"},
		{"handshake rate 0", func(c *Config) { c.HandshakeRate = 0 }, "--handshake-rate"},
		{"handshake rate NaN", func(c *Config) { c.HandshakeRate = math.NaN() }, "--handshake-rate"},
		{"handshake burst 0", func(c *Config) { c.HandshakeBurst = 0 }, "--handshake-burst"},
		{"read header timeout 0", func(c *Config) { c.ReadHeaderTimeout = 0 }, "--read-header-timeout"},
		{"max header bytes 0", func(c *Config) { c.MaxHeaderBytes = 0 }, "--max-header-bytes"},
		{"send rate negative", func(c *Config) { c.SendRate = -1 }, "--send-rate"},
		{"send burst 0", func(c *Config) { c.SendBurst = 0 }, "--send-burst"},
		{"join rate 0", func(c *Config) { c.JoinRate = 0 }, "--join-rate"},
		{"join burst 0", func(c *Config) { c.JoinBurst = 0 }, "--join-burst"},
		{"abuse strikes 0", func(c *Config) { c.AbuseStrikes = 0 }, "--abuse-strikes"},
		{"abuse window 0", func(c *Config) { c.AbuseWindow = 0 }, "--abuse-window"},
		{"max text bytes 0", func(c *Config) { c.MaxTextBytes = 0 }, "--max-text-bytes"},
		{"max frame bytes 0", func(c *Config) { c.MaxFrameBytes = 0 }, "--max-frame-bytes"},
		{"frame too small for text", func(c *Config) { c.MaxTextBytes, c.MaxFrameBytes = 4096, 4096+255 }, "--max-frame-bytes"},
		// A text of 4096 control characters is 24,576 bytes of JSON.
		{"frame too small for an escaped text", func(c *Config) { c.MaxTextBytes, c.MaxFrameBytes = 4096, 16<<10 }, "--max-frame-bytes"},
		{"frame one byte short of the worst send", func(c *Config) {
			c.MaxTextBytes, c.MaxFrameBytes = 1000, protocol.MaxSendEnvelopeBytes(1000)-1
		}, "--max-frame-bytes"},
		{"queue too small for one escaped message", func(c *Config) {
			c.MaxTextBytes, c.QueueBytes = 4096, protocol.MaxMessageEnvelopeBytes(4096)
		}, "--queue-bytes"},
		{"max rooms per conn 0", func(c *Config) { c.MaxRoomsPerConn = 0 }, "--max-rooms"},
		{"queue bytes 0", func(c *Config) { c.QueueBytes = 0 }, "--queue-bytes"},
		{"total queue below per-client", func(c *Config) { c.QueueBytes, c.TotalQueueBytes = 1<<20, 1<<20-1 }, "--total-queue-bytes"},
		{"ping interval 0", func(c *Config) { c.PingInterval = 0 }, "--ping-interval"},
		{"pong timeout 0", func(c *Config) { c.PongTimeout = 0 }, "--pong-timeout"},
		{"pong timeout equals ping interval", func(c *Config) { c.PingInterval, c.PongTimeout = time.Second, time.Second }, "--pong-timeout"},
		{"write timeout negative", func(c *Config) { c.WriteTimeout = -time.Second }, "--write-timeout"},
		{"drain delay negative", func(c *Config) { c.DrainDelay = -time.Second }, "--drain-delay"},
		{"drain window negative", func(c *Config) { c.DrainWindow = -time.Second }, "--drain-window"},
		{"drain linger negative", func(c *Config) { c.DrainLinger = -time.Second }, "--drain-linger"},
		{"shutdown timeout 0", func(c *Config) { c.ShutdownTimeout = 0 }, "--shutdown-timeout"},
		{"shutdown shorter than drain", func(c *Config) {
			c.DrainDelay, c.DrainWindow, c.ShutdownTimeout = 5*time.Second, 10*time.Second, 14*time.Second
		}, "--shutdown-timeout"},
		{"shutdown leaves no time to close", func(c *Config) {
			c.DrainDelay, c.DrainWindow, c.ShutdownTimeout = 5*time.Second, 10*time.Second, 15*time.Second
		}, "--shutdown-timeout"},
		{"drain retry max 0", func(c *Config) { c.DrainRetryMax = 0 }, "--drain-retry-max"},
		{"guest ttl negative", func(c *Config) { c.GuestTTL = -time.Hour }, "--guest-ttl"},
		{"guest ttl under a minute", func(c *Config) { c.GuestTTL = 59 * time.Second }, "--guest-ttl"},
		{"guest ttl over 30 days", func(c *Config) { c.GuestTTL = 721 * time.Hour }, "--guest-ttl"},
		{"presence grace negative", func(c *Config) { c.PresenceGrace = -time.Second }, "--presence-grace"},
		{"presence grace over 5m", func(c *Config) { c.PresenceGrace = 5*time.Minute + 1 }, "--presence-grace"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tc.mutate(&cfg)
			err := cfg.Validate()
			if err == nil {
				t.Fatalf("Validate accepted it")
			}
			if !strings.Contains(err.Error(), tc.flag) {
				t.Fatalf("Validate: %q; want it to name %s", err, tc.flag)
			}
			// Every reported problem names a flag.
			for _, line := range strings.Split(err.Error(), "\n") {
				if !strings.Contains(line, "--") {
					t.Errorf("error line %q names no flag", line)
				}
			}
			if _, err := New(cfg, Options{Broker: testHub(t, 0)}); err == nil {
				t.Fatalf("New accepted an invalid config")
			}
		})
	}
}

// New needs a broker: a nil Options.Broker is refused with an error that
// says so (no hub is built behind the caller's back).
func TestNewNeedsBroker(t *testing.T) {
	srv, err := New(testConfig(), Options{})
	if err == nil || !strings.Contains(err.Error(), "Options.Broker") {
		t.Fatalf("New without a broker: %v, %v; want an Options.Broker error", srv, err)
	}
	srv, err = New(testConfig(), Options{Broker: testHub(t, 0)})
	if err != nil {
		t.Fatalf("New with a broker: %v", err)
	}
	srv.Close()
}

func TestConfigValidateAcceptsEdges(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(*Config)
	}{
		{"no drain delay or window", func(c *Config) { c.DrainDelay, c.DrainWindow = 0, 0 }},
		{"frame exactly the worst send envelope", func(c *Config) {
			c.MaxTextBytes, c.MaxFrameBytes = 1000, protocol.MaxSendEnvelopeBytes(1000)
		}},
		{"queue exactly one worst message", func(c *Config) {
			c.MaxTextBytes, c.QueueBytes = 1000, protocol.MaxMessageEnvelopeBytes(1000)+1
		}},
		{"total queue equals per-client", func(c *Config) { c.QueueBytes, c.TotalQueueBytes = 64<<10, 64<<10 }},
		{"shutdown just longer than drain", func(c *Config) {
			c.DrainDelay, c.DrainWindow, c.ShutdownTimeout = time.Second, 2*time.Second, 3*time.Second+time.Millisecond
		}},
		{"64-byte node id", func(c *Config) { c.NodeID = strings.Repeat("n", 64) }},
		{"origin allowlist", func(c *Config) { c.AllowedOrigins = []string{"https://chat.example.com", "https://*.example.com"} }},
		{"fractional rates", func(c *Config) { c.SendRate, c.JoinRate, c.HandshakeRate = 0.5, 0.1, 0.01 }},
		{"no guest credentials, no presence grace, no typing", func(c *Config) { c.GuestTTL, c.PresenceGrace, c.Typing = 0, 0, false }},
		{"guest ttl bounds", func(c *Config) { c.GuestTTL, c.PresenceGrace = time.Minute, 5*time.Minute }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tc.mutate(&cfg)
			if err := cfg.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
		})
	}
}

func TestConfigValidateReportsEveryProblem(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Addr = ""
	cfg.MaxConns = 0
	cfg.SendRate = 0
	cfg.PingInterval = -time.Second
	cfg.QueueBytes = 0
	err := cfg.Validate()
	if err == nil {
		t.Fatal("Validate accepted it")
	}
	for _, flag := range []string{"--addr", "--max-conns", "--send-rate", "--ping-interval", "--queue-bytes"} {
		if !strings.Contains(err.Error(), flag) {
			t.Errorf("Validate: %q; want it to name %s too", err, flag)
		}
	}
}

// Every Config field is set by exactly one flag, and every flag has a help
// line. (The environment fallback of every flag
// of the binary is checked in internal/appconfig.)
func TestConfigEveryFieldHasFlag(t *testing.T) {
	base := DefaultConfig()
	fields := map[string]string{} // field -> flag
	probe := flag.NewFlagSet("probe", flag.ContinueOnError)
	probe.SetOutput(io.Discard)
	probeCfg := base
	probeCfg.RegisterFlags(probe)
	candidates := []string{"1h23m0s", "12345", "123.5", "https://x.example.com", "10.0.0.0/8", "false"}
	probe.VisitAll(func(f *flag.Flag) {
		if len(f.Usage) < 20 {
			t.Errorf("--%s has a thin help line: %q", f.Name, f.Usage)
		}
		var changed []string
		for _, v := range candidates {
			cfg := base
			fs := flag.NewFlagSet("one", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			cfg.RegisterFlags(fs)
			if fs.Set(f.Name, v) != nil {
				continue // not this flag's type
			}
			if changed = changedFields(base, cfg); len(changed) > 0 {
				break
			}
		}
		if len(changed) != 1 {
			t.Errorf("--%s changed fields %v; want exactly one", f.Name, changed)
			return
		}
		if prev, dup := fields[changed[0]]; dup {
			t.Errorf("Config.%s is set by both --%s and --%s", changed[0], prev, f.Name)
		}
		fields[changed[0]] = f.Name
	})
	rt := reflect.TypeOf(Config{})
	for i := 0; i < rt.NumField(); i++ {
		name := rt.Field(i).Name
		if _, ok := fields[name]; !ok {
			t.Errorf("Config.%s has no flag", name)
		}
	}
}

func changedFields(a, b Config) []string {
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	var out []string
	for i := 0; i < va.NumField(); i++ {
		if !reflect.DeepEqual(va.Field(i).Interface(), vb.Field(i).Interface()) {
			out = append(out, va.Type().Field(i).Name)
		}
	}
	return out
}
