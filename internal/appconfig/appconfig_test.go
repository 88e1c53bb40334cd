package appconfig

// The composed configuration: every flag of the binary has a CHATGATE_*
// fallback, the command line beats the environment, every setting of every
// part is set by exactly one flag, and Validate reports every part.

import (
	"flag"
	"io"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

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
	cfg := Default()
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
		{"SendRate (flag beats env)", cfg.Gateway.SendRate, 3.0},
		{"AllowedOrigins (flag beats env)", cfg.Gateway.AllowedOrigins, []string{"https://cli.example.com"}},
		{"LogLevel (flag beats env)", cfg.Log.Level, "debug"},
		{"MaxConns", cfg.Gateway.MaxConns, 7},
		{"MaxConnsPerIP", cfg.Gateway.MaxConnsPerIP, 3},
		{"PingInterval", cfg.Gateway.PingInterval, 3 * time.Second},
		{"TotalQueueBytes", cfg.Gateway.TotalQueueBytes, int64(2147483648)},
		{"JoinRate", cfg.Gateway.JoinRate, 0.5},
		{"NodeID", cfg.Gateway.NodeID, "edge-1"},
		{"LogFormat", cfg.Log.Format, "json"},
		{"SendBurst (untouched)", cfg.Gateway.SendBurst, Default().Gateway.SendBurst},
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
	if want := []string{"https://a.example.com", "https://*.b.example.com"}; !reflect.DeepEqual(cfg.Gateway.AllowedOrigins, want) {
		t.Fatalf("AllowedOrigins %q; want %q", cfg.Gateway.AllowedOrigins, want)
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
	if !reflect.DeepEqual(cfg.Gateway.TrustedProxies, want) {
		t.Fatalf("TrustedProxies %v; want %v", cfg.Gateway.TrustedProxies, want)
	}
	if Default().Gateway.TrustedProxies != nil {
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

// Every setting of every part (the fields of Config's parts) is set by
// exactly one flag, every flag has a help line, and every flag can be set
// from its CHATGATE_* variable.
func TestEverySettingHasFlagAndEnv(t *testing.T) {
	base := Default()
	probe := flag.NewFlagSet("probe", flag.ContinueOnError)
	probe.SetOutput(io.Discard)
	probeCfg := base
	probeCfg.RegisterFlags(probe)

	// A bool flag is set to whichever of true and false is not its default.
	candidates := []string{"1h23m0s", "12345", "123.5", "https://x.example.com", "10.0.0.0/8", "memory", "true", "false"}
	fieldOf := map[string]string{} // Part.Field -> flag
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
			changed = changedSettings(base, cfg)
			if len(changed) > 0 {
				break
			}
		}
		if len(changed) != 1 {
			t.Errorf("%s changed settings %v; want exactly one", EnvName(f.Name), changed)
			return
		}
		if prev, dup := fieldOf[changed[0]]; dup {
			t.Errorf("%s is set by both --%s and --%s", changed[0], prev, f.Name)
		}
		fieldOf[changed[0]] = f.Name
	})
	for _, name := range settingNames() {
		if _, ok := fieldOf[name]; !ok {
			t.Errorf("%s has no flag (or no env fallback)", name)
		}
	}
}

// settingNames lists every field of Config's parts as Part.Field.
func settingNames() []string {
	var out []string
	rt := reflect.TypeOf(Config{})
	for i := 0; i < rt.NumField(); i++ {
		part := rt.Field(i)
		for j := 0; j < part.Type.NumField(); j++ {
			out = append(out, part.Name+"."+part.Type.Field(j).Name)
		}
	}
	return out
}

func changedSettings(a, b Config) []string {
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	var out []string
	for i := 0; i < va.NumField(); i++ {
		pa, pb := va.Field(i), vb.Field(i)
		for j := 0; j < pa.NumField(); j++ {
			if !reflect.DeepEqual(pa.Field(j).Interface(), pb.Field(j).Interface()) {
				out = append(out, va.Type().Field(i).Name+"."+pa.Type().Field(j).Name)
			}
		}
	}
	return out
}

func TestDefaultValid(t *testing.T) {
	cfg := Default()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("the defaults do not validate: %v", err)
	}
}

// TestValidateRejects: each part's settings are validated, and the error
// names the flag.
func TestValidateRejects(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(*Config)
		flag   string
	}{
		{"gateway: max conns 0", func(c *Config) { c.Gateway.MaxConns = 0 }, "--max-conns"},
		{"rooms: history 0", func(c *Config) { c.Rooms.History = 0 }, "--history"},
		{"rooms: max rooms total 0", func(c *Config) { c.Rooms.MaxRooms = 0 }, "--max-rooms-total"},
		{"rooms: presence interval 0", func(c *Config) { c.Rooms.PresenceInterval = 0 }, "--presence-interval"},
		{"rooms: presence max members 0", func(c *Config) { c.Rooms.PresenceMaxMembers = 0 }, "--presence-max-members"},
		{"hub: room ttl 0", func(c *Config) { c.Hub.RoomTTL = 0 }, "--room-ttl"},
		{"cluster: stream storage unknown", func(c *Config) { c.Cluster.StreamStorage = "disk" }, "--stream-storage"},
		{"cluster: stream replicas 0", func(c *Config) { c.Cluster.StreamReplicas = 0 }, "--stream-replicas"},
		{"cluster: stream replicas 6", func(c *Config) { c.Cluster.StreamReplicas = 6 }, "--stream-replicas"},
		{"cluster: stream max age 0", func(c *Config) { c.Cluster.StreamMaxAge = 0 }, "--stream-max-age"},
		{"cluster: presence sync 0", func(c *Config) { c.Cluster.PresenceSync = 0 }, "--presence-sync"},
		{"cluster: presence ttl below twice the sync", func(c *Config) {
			c.Cluster.PresenceSync, c.Cluster.PresenceTTL = 5*time.Second, 9*time.Second
		}, "--presence-ttl"},
		{"cluster: nats creds without backplane", func(c *Config) { c.Cluster.NATSCredsFile = "/run/secrets/nats.creds" }, "--backplane"},
		{"cluster: nats tls cert without key", func(c *Config) {
			c.Cluster.Backplane, c.Cluster.NATSTLSCertFile = "nats://n:4222", "/c.pem"
		}, "--nats-tls-key-file"},
		{"cluster: nats health timeout 0", func(c *Config) { c.Cluster.NATSHealthTimeout = 0 }, "--nats-health-timeout"},
		{"api: addr without credentials", func(c *Config) { c.API.Addr = ":8081" }, "--api-keys-file"},
		{"api: rate 0", func(c *Config) { c.API.Rate = 0 }, "--api-rate"},
		{"api: burst below a batch", func(c *Config) { c.API.Burst = 10 }, "--api-burst"},
		{"api: body limit tiny", func(c *Config) { c.API.MaxBodyBytes = 10 }, "--api-max-body-bytes"},
		{"api: timeout 0", func(c *Config) { c.API.Timeout = 0 }, "--api-timeout"},
		{"api: jwt without the chat's keys", func(c *Config) { c.API.Addr, c.API.JWT = ":8081", true }, "--api-jwt"},
		{"log: format", func(c *Config) { c.Log.Format = "xml" }, "--log-format"},
		{"log: level", func(c *Config) { c.Log.Level = "verbose" }, "--log-level"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Default()
			tc.mutate(&cfg)
			err := cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.flag) {
				t.Fatalf("Validate: %v; want it to name %s", err, tc.flag)
			}
			for _, line := range strings.Split(err.Error(), "\n") {
				if !strings.Contains(line, "--") {
					t.Errorf("error line %q names no flag", line)
				}
			}
		})
	}
	// Every part's problems are reported at once.
	cfg := Default()
	cfg.Gateway.Addr, cfg.Rooms.History, cfg.Hub.RoomTTL, cfg.Cluster.StreamReplicas, cfg.Log.Format = "", 0, 0, 0, "yaml"
	err := cfg.Validate()
	for _, flag := range []string{"--addr", "--history", "--room-ttl", "--stream-replicas", "--log-format"} {
		if err == nil || !strings.Contains(err.Error(), flag) {
			t.Errorf("Validate: %v; want it to name %s too", err, flag)
		}
	}
}
