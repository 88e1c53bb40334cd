package gateway

// Configuration: validation names the offending flag, every flag has a
// CHATGATE_* fallback, and the command line beats the environment.

import (
	"flag"
	"io"
	"math"
	"net/netip"
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
		{"history 0", func(c *Config) { c.History = 0 }, "--history"},
		{"room ttl 0", func(c *Config) { c.RoomTTL = 0 }, "--room-ttl"},
		{"stream storage unknown", func(c *Config) { c.StreamStorage = "disk" }, "--stream-storage"},
		{"stream replicas 0", func(c *Config) { c.StreamReplicas = 0 }, "--stream-replicas"},
		{"stream replicas 6", func(c *Config) { c.StreamReplicas = 6 }, "--stream-replicas"},
		{"stream max age 0", func(c *Config) { c.StreamMaxAge = 0 }, "--stream-max-age"},
		{"presence sync 0", func(c *Config) { c.PresenceSync = 0 }, "--presence-sync"},
		{"presence ttl below twice the sync", func(c *Config) { c.PresenceSync, c.PresenceTTL = 5*time.Second, 9*time.Second }, "--presence-ttl"},
		{"nats creds without backplane", func(c *Config) { c.NATSCredsFile = "/run/secrets/nats.creds" }, "--backplane"},
		{"nats tls cert without key", func(c *Config) { c.Backplane, c.NATSTLSCertFile = "nats://n:4222", "/c.pem" }, "--nats-tls-key-file"},
		{"max rooms total 0", func(c *Config) { c.MaxRooms = 0 }, "--max-rooms-total"},
		{"presence interval 0", func(c *Config) { c.PresenceInterval = 0 }, "--presence-interval"},
		{"presence max members 0", func(c *Config) { c.PresenceMaxMembers = 0 }, "--presence-max-members"},
		{"drain delay negative", func(c *Config) { c.DrainDelay = -time.Second }, "--drain-delay"},
		{"drain window negative", func(c *Config) { c.DrainWindow = -time.Second }, "--drain-window"},
		{"drain linger negative", func(c *Config) { c.DrainLinger = -time.Second }, "--drain-linger"},
		{"nats health timeout 0", func(c *Config) { c.NATSHealthTimeout = 0 }, "--nats-health-timeout"},
		{"shutdown timeout 0", func(c *Config) { c.ShutdownTimeout = 0 }, "--shutdown-timeout"},
		{"shutdown shorter than drain", func(c *Config) {
			c.DrainDelay, c.DrainWindow, c.ShutdownTimeout = 5*time.Second, 10*time.Second, 14*time.Second
		}, "--shutdown-timeout"},
		{"shutdown leaves no time to close", func(c *Config) {
			c.DrainDelay, c.DrainWindow, c.ShutdownTimeout = 5*time.Second, 10*time.Second, 15*time.Second
		}, "--shutdown-timeout"},
		{"drain retry max 0", func(c *Config) { c.DrainRetryMax = 0 }, "--drain-retry-max"},
		{"log format", func(c *Config) { c.LogFormat = "xml" }, "--log-format"},
		{"log level", func(c *Config) { c.LogLevel = "verbose" }, "--log-level"},
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
			if _, err := New(cfg, Options{}); err == nil {
				t.Fatalf("New accepted an invalid config")
			}
		})
	}
}

func TestConfigValidateAcceptsEdges(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(*Config)
	}{
		{"json logs, upper-case level", func(c *Config) { c.LogFormat, c.LogLevel = "json", "WARN" }},
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
	cfg.LogFormat = "yaml"
	err := cfg.Validate()
	if err == nil {
		t.Fatal("Validate accepted it")
	}
	for _, flag := range []string{"--addr", "--max-conns", "--send-rate", "--ping-interval", "--log-format"} {
		if !strings.Contains(err.Error(), flag) {
			t.Errorf("Validate: %q; want it to name %s too", err, flag)
		}
	}
}

func TestConfigEnvName(t *testing.T) {
	for flag, want := range map[string]string{
		"addr":             "CHATGATE_ADDR",
		"max-conns-per-ip": "CHATGATE_MAX_CONNS_PER_IP",
		"allowed-origins":  "CHATGATE_ALLOWED_ORIGINS",
		"log-format":       "CHATGATE_LOG_FORMAT",
	} {
		if got := EnvName(flag); got != want {
			t.Errorf("EnvName(%q) = %q; want %q", flag, got, want)
		}
	}
}

// parseWithEnv parses args then applies env, as the binary does.
func parseWithEnv(t *testing.T, args []string, env map[string]string) (Config, *flag.FlagSet, []string, error) {
	t.Helper()
	cfg := DefaultConfig()
	fs := flag.NewFlagSet("chatgate", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfg.RegisterFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatalf("Parse(%q): %v", args, err)
	}
	var asked []string
	err := ApplyEnv(fs, func(name string) (string, bool) {
		asked = append(asked, name)
		v, ok := env[name]
		return v, ok
	})
	return cfg, fs, asked, err
}

func TestConfigApplyEnv(t *testing.T) {
	cfg, fs, asked, err := parseWithEnv(t,
		[]string{"--send-rate=3", "--allowed-origins=https://cli.example.com", "--log-level", "debug"},
		map[string]string{
			"CHATGATE_SEND_RATE":         "99",                      // the command line wins
			"CHATGATE_ALLOWED_ORIGINS":   "https://env.example.com", // the command line wins
			"CHATGATE_LOG_LEVEL":         "nonsense",                // ignored: given on the command line
			"CHATGATE_MAX_CONNS":         "7",
			"CHATGATE_MAX_CONNS_PER_IP":  "3",
			"CHATGATE_PING_INTERVAL":     "3s",
			"CHATGATE_TOTAL_QUEUE_BYTES": "2147483648",
			"CHATGATE_JOIN_RATE":         "0.5",
			"CHATGATE_NODE_ID":           "edge-1",
			"CHATGATE_LOG_FORMAT":        "json",
			"CHATGATE_UNRELATED":         "1",
		})
	if err != nil {
		t.Fatalf("ApplyEnv: %v", err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"SendRate (flag beats env)", cfg.SendRate, 3.0},
		{"AllowedOrigins (flag beats env)", cfg.AllowedOrigins, []string{"https://cli.example.com"}},
		{"LogLevel (flag beats env)", cfg.LogLevel, "debug"},
		{"MaxConns", cfg.MaxConns, 7},
		{"MaxConnsPerIP", cfg.MaxConnsPerIP, 3},
		{"PingInterval", cfg.PingInterval, 3 * time.Second},
		{"TotalQueueBytes", cfg.TotalQueueBytes, int64(2147483648)},
		{"JoinRate", cfg.JoinRate, 0.5},
		{"NodeID", cfg.NodeID, "edge-1"},
		{"LogFormat", cfg.LogFormat, "json"},
		{"SendBurst (untouched)", cfg.SendBurst, DefaultConfig().SendBurst},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %#v; want %#v", c.name, c.got, c.want)
		}
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
	// Only flags not given on the command line consult the environment,
	// and each under its own CHATGATE_ name.
	given := map[string]bool{"send-rate": true, "allowed-origins": true, "log-level": true}
	want := map[string]bool{}
	fs.VisitAll(func(f *flag.Flag) {
		if !given[f.Name] {
			want[EnvName(f.Name)] = true
		}
	})
	gotAsked := map[string]bool{}
	for _, n := range asked {
		gotAsked[n] = true
	}
	if !reflect.DeepEqual(gotAsked, want) {
		t.Errorf("ApplyEnv looked up %v; want %v", asked, want)
	}
}

func TestConfigApplyEnvOriginList(t *testing.T) {
	cfg, _, _, err := parseWithEnv(t, nil, map[string]string{
		"CHATGATE_ALLOWED_ORIGINS": " https://a.example.com, ,https://*.b.example.com ,",
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"https://a.example.com", "https://*.b.example.com"}; !reflect.DeepEqual(cfg.AllowedOrigins, want) {
		t.Fatalf("AllowedOrigins %q; want %q", cfg.AllowedOrigins, want)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	// A bad pattern from the environment fails validation, naming the flag.
	cfg, _, _, err = parseWithEnv(t, nil, map[string]string{"CHATGATE_ALLOWED_ORIGINS": "evil.example"})
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "--allowed-origins") {
		t.Fatalf("Validate: %v; want an --allowed-origins error", err)
	}
}

func TestConfigTrustedProxies(t *testing.T) {
	cfg, _, _, err := parseWithEnv(t, nil, map[string]string{
		"CHATGATE_TRUSTED_PROXIES": " 10.0.0.0/8, 192.168.1.7 ,,::ffff:172.16.0.9, fd00::/8, 10.1.2.3/16",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"),
		netip.MustParsePrefix("192.168.1.7/32"),
		netip.MustParsePrefix("172.16.0.9/32"), // IPv4-mapped IPv6 is the IPv4 address
		netip.MustParsePrefix("fd00::/8"),
		netip.MustParsePrefix("10.1.0.0/16"), // host bits dropped
	}
	if !reflect.DeepEqual(cfg.TrustedProxies, want) {
		t.Fatalf("TrustedProxies %v; want %v", cfg.TrustedProxies, want)
	}
	if DefaultConfig().TrustedProxies != nil {
		t.Fatal("no proxy may be trusted by default")
	}
}

func TestConfigApplyEnvErrors(t *testing.T) {
	cases := []struct {
		name  string
		args  []string
		env   map[string]string
		names []string // variables the error must name; none means no error
	}{
		{"int not a number", nil, map[string]string{"CHATGATE_MAX_CONNS": "lots"}, []string{"CHATGATE_MAX_CONNS"}},
		{"empty int", nil, map[string]string{"CHATGATE_HISTORY": ""}, []string{"CHATGATE_HISTORY"}},
		{"duration without unit", nil, map[string]string{"CHATGATE_PING_INTERVAL": "25"}, []string{"CHATGATE_PING_INTERVAL"}},
		{"float garbage", nil, map[string]string{"CHATGATE_SEND_RATE": "fast"}, []string{"CHATGATE_SEND_RATE"}},
		{"int64 overflow", nil, map[string]string{"CHATGATE_TOTAL_QUEUE_BYTES": "99999999999999999999"}, []string{"CHATGATE_TOTAL_QUEUE_BYTES"}},
		{"every bad one is named", nil, map[string]string{
			"CHATGATE_MAX_CONNS":     "x",
			"CHATGATE_WRITE_TIMEOUT": "soon",
			"CHATGATE_ADDR":          ":9000", // fine
		}, []string{"CHATGATE_MAX_CONNS", "CHATGATE_WRITE_TIMEOUT"}},
		{"trusted proxy not an address", nil, map[string]string{"CHATGATE_TRUSTED_PROXIES": "10.0.0.0/8,ingress.local"}, []string{"CHATGATE_TRUSTED_PROXIES"}},
		{"trusted proxy prefix too long", nil, map[string]string{"CHATGATE_TRUSTED_PROXIES": "10.0.0.0/33"}, []string{"CHATGATE_TRUSTED_PROXIES"}},
		{"bad env shadowed by a flag", []string{"--max-conns=5"}, map[string]string{"CHATGATE_MAX_CONNS": "x"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, _, _, err := parseWithEnv(t, tc.args, tc.env)
			if len(tc.names) == 0 {
				if err != nil {
					t.Fatalf("ApplyEnv: %v; want no error", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("ApplyEnv accepted %v", tc.env)
			}
			for _, n := range tc.names {
				if !strings.Contains(err.Error(), n) {
					t.Errorf("ApplyEnv: %q; want it to name %s", err, n)
				}
			}
			// The value that was given is quoted back.
			for _, n := range tc.names {
				if !strings.Contains(err.Error(), tc.env[n]) {
					t.Errorf("ApplyEnv: %q; want it to quote the value %q", err, tc.env[n])
				}
			}
		})
	}
	// A value that parses but is out of range is caught by Validate,
	// naming the flag.
	cfg, _, _, err := parseWithEnv(t, nil, map[string]string{"CHATGATE_MAX_CONNS": "0"})
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "--max-conns") {
		t.Fatalf("Validate: %v; want a --max-conns error", err)
	}
}

// Every Config field is set by exactly one flag, every flag has a help line,
// and every flag can be set from its CHATGATE_* variable.
func TestConfigEveryFieldHasFlagAndEnv(t *testing.T) {
	base := DefaultConfig()
	probe := flag.NewFlagSet("probe", flag.ContinueOnError)
	probe.SetOutput(io.Discard)
	probeCfg := base
	probeCfg.RegisterFlags(probe)

	candidates := []string{"1h23m0s", "12345", "123.5", "https://x.example.com", "10.0.0.0/8"}
	fieldOf := map[string]string{} // field name -> flag
	probe.VisitAll(func(f *flag.Flag) {
		if len(f.Usage) < 20 {
			t.Errorf("--%s has a thin help line: %q", f.Name, f.Usage)
		}
		var changed []string
		for _, v := range candidates {
			cfg, _, _, err := parseWithEnv(t, nil, map[string]string{EnvName(f.Name): v})
			if err != nil {
				continue // not this flag's type
			}
			changed = changedFields(base, cfg)
			if len(changed) > 0 {
				break
			}
		}
		if len(changed) != 1 {
			t.Errorf("%s changed fields %v; want exactly one", EnvName(f.Name), changed)
			return
		}
		if prev, dup := fieldOf[changed[0]]; dup {
			t.Errorf("Config.%s is set by both --%s and --%s", changed[0], prev, f.Name)
		}
		fieldOf[changed[0]] = f.Name
	})
	rt := reflect.TypeOf(Config{})
	for i := 0; i < rt.NumField(); i++ {
		if _, ok := fieldOf[rt.Field(i).Name]; !ok {
			t.Errorf("Config.%s has no flag (or no env fallback)", rt.Field(i).Name)
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
