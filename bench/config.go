package bench

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Scenarios.
const (
	ScenarioFanout  = "fanout"
	ScenarioRooms   = "rooms"
	ScenarioConnect = "connect"
	ScenarioChurn   = "churn"
	ScenarioSlow    = "slow"
	ScenarioDrain   = "drain"
)

// Scenarios lists every scenario name.
var Scenarios = []string{ScenarioFanout, ScenarioRooms, ScenarioConnect, ScenarioChurn, ScenarioSlow, ScenarioDrain}

// Protocols.
const (
	ProtoChatgate = "chatgate"
	ProtoRaw      = "raw"
)

// Hard bounds that keep every run finite whatever the flags say.
const (
	maxDuration = time.Hour
	maxConns    = 1 << 20
	maxRate     = 1e6
	maxSize     = 1 << 20
)

// Config is a bench run. Every field has a flag (RegisterFlags).
type Config struct {
	Scenario string
	URLs     []string
	Proto    string

	// Traffic.
	Conns    int     // members (all rooms together); connections for connect
	Rooms    int     // rooms the members are spread over
	Senders  int     // senders per room, taken from its members
	Rate     float64 // messages per second per sender
	Size     int     // text bytes per message
	Duration time.Duration
	Messages int // messages per sender; 0 = as many as Duration allows
	Settle   time.Duration

	// Connections.
	ConnectRate      float64 // connections per second (connect, churn; throttles the others' setup when set)
	DialConcurrency  int
	HandshakeTimeout time.Duration
	Hold             time.Duration // connect: keep the connections open this long
	SourceIPs        []net.IP

	// slow
	SlowShare  float64
	SlowAfter  time.Duration
	SlowStall  time.Duration // 0 stops reading until the window ends
	SlowRcvBuf int

	// churn
	ChurnHold time.Duration

	// drain
	DrainCmd string
	DrainAt  time.Duration

	// Server sampling.
	ServerPID     int
	ServerMetrics string

	// Output.
	JSON     bool
	Report   string
	Progress string // auto, on, off
	Interval time.Duration

	// Thresholds; zero or negative (the defaults) means not checked.
	SLOP99           time.Duration
	SLOP999          time.Duration
	MaxLoss          LossLimit
	MaxDup           int64
	MaxOutOfOrder    int64
	MaxConnectErrors int64

	// Authentication for a gateway run with --auth jwt (chatgate only):
	// at most one of these is set.
	Token         string // one token for every connection; quick local use only
	TokenFile     string // the same, read from a file
	JWTSecretFile string // HS256 secret: a token, and a user, per connection

	BenchID     string
	AllowRemote bool

	// creds are the loaded Token/TokenFile/JWTSecretFile, set by Run.
	creds *credentials
}

// LossLimit is --max-loss: a count ("0", "10") or a share ("0.1%").
type LossLimit struct {
	Given   bool
	Count   int64
	Ratio   float64 // used when IsRatio
	IsRatio bool
}

func (l *LossLimit) String() string {
	switch {
	case !l.Given:
		return ""
	case l.IsRatio:
		return strconv.FormatFloat(l.Ratio*100, 'g', -1, 64) + "%"
	default:
		return strconv.FormatInt(l.Count, 10)
	}
}

// Set parses a --max-loss value.
func (l *LossLimit) Set(v string) error {
	v = strings.TrimSpace(v)
	if pct, ok := strings.CutSuffix(v, "%"); ok {
		f, err := strconv.ParseFloat(pct, 64)
		if err != nil || f < 0 || f > 100 {
			return fmt.Errorf("want a percentage between 0%% and 100%%, got %q", v)
		}
		*l = LossLimit{Given: true, IsRatio: true, Ratio: f / 100}
		return nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return fmt.Errorf("want a message count or a percentage such as 0.1%%, got %q", v)
	}
	*l = LossLimit{Given: true, Count: n}
	return nil
}

// DefaultConfig is a small fanout against a local chatgate.
func DefaultConfig() Config {
	return Config{
		Scenario:         ScenarioFanout,
		URLs:             []string{"ws://127.0.0.1:8080/ws"},
		Proto:            ProtoChatgate,
		Conns:            100,
		Rooms:            1,
		Senders:          1,
		Rate:             10,
		Size:             64,
		Duration:         10 * time.Second,
		Settle:           5 * time.Second,
		DialConcurrency:  64,
		HandshakeTimeout: 10 * time.Second,
		Hold:             2 * time.Second,
		SlowShare:        0.1,
		SlowAfter:        time.Second,
		SlowStall:        3 * time.Second,
		SlowRcvBuf:       4096,
		ChurnHold:        time.Second,
		Progress:         "auto",
		Interval:         time.Second,
		MaxDup:           -1,
		MaxOutOfOrder:    -1,
		MaxConnectErrors: -1,
	}
}

// RegisterFlags defines the flags of c on fs with c's values as defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Scenario, "scenario", c.Scenario, "scenario: "+strings.Join(Scenarios, ", ")+" (or give it as the first argument)")
	fs.Func("url", "WebSocket URL of the server, or a comma-separated list: connections are spread over them and a reconnect moves to the next one (default ws://127.0.0.1:8080/ws)", func(v string) error {
		c.URLs = splitComma(v)
		return nil
	})
	fs.StringVar(&c.Proto, "proto", c.Proto, "protocol: chatgate (JSON envelopes, seq-checked) or raw (plain text frames, as the gorilla examples/chat server speaks)")

	fs.IntVar(&c.Conns, "conns", c.Conns, "members over all rooms (fanout, rooms, slow, drain, churn's stable members); connections to open (connect)")
	fs.IntVar(&c.Rooms, "rooms", c.Rooms, "rooms the members are spread over (rooms, churn, drain; fanout and slow use 1)")
	fs.IntVar(&c.Senders, "senders", c.Senders, "members of each room that also send")
	fs.Float64Var(&c.Rate, "rate", c.Rate, "messages per second each sender sends, on a fixed open-loop schedule")
	fs.IntVar(&c.Size, "size", c.Size, fmt.Sprintf("text bytes per message (at least %d; the gorilla chat example accepts at most 512)", minTextBytes))
	fs.DurationVar(&c.Duration, "duration", c.Duration, "sending window")
	fs.IntVar(&c.Messages, "messages", c.Messages, "messages per sender (0: as many as --duration allows); --duration still caps the window")
	fs.DurationVar(&c.Settle, "settle", c.Settle, "after the window, wait at most this long for acks and deliveries in flight")

	fs.Float64Var(&c.ConnectRate, "connect-rate", c.ConnectRate, "connections per second: the storm rate of connect, the arrival rate of churn; in other scenarios it paces the setup (0: as fast as --dial-concurrency allows)")
	fs.IntVar(&c.DialConcurrency, "dial-concurrency", c.DialConcurrency, "handshakes in flight at once")
	fs.DurationVar(&c.HandshakeTimeout, "handshake-timeout", c.HandshakeTimeout, "time allowed for one connection to be up (and, for chatgate, joined)")
	fs.DurationVar(&c.Hold, "hold", c.Hold, "connect: keep the connections open and idle this long before sampling the server and closing")
	fs.Func("source-ips", "local addresses to spread connections over: a range 127.0.0.1-127.0.0.8 or a comma-separated list (each gives another ~28k ephemeral ports)", func(v string) error {
		ips, err := ParseSourceIPs(v)
		c.SourceIPs = ips
		return err
	})

	fs.Float64Var(&c.SlowShare, "slow-share", c.SlowShare, "slow: share of the listeners that stop reading")
	fs.DurationVar(&c.SlowAfter, "slow-after", c.SlowAfter, "slow: when, after the window starts, slow listeners slow down (after the window they read at full speed again, to collect their close code)")
	fs.DurationVar(&c.SlowStall, "slow-stall", c.SlowStall, "slow: slow listeners stop reading this long at a time (reading 500ms in between); keep it below the gateway's --write-timeout (5s) to receive the 4008 close frame; 0 stops reading until the window ends, and a gateway whose write deadline expires first then drops the socket without a close frame (1006)")
	fs.IntVar(&c.SlowRcvBuf, "slow-rcvbuf", c.SlowRcvBuf, "slow: socket receive buffer of slow listeners in bytes (small, so the server's queue fills soon); 0 leaves the kernel default")

	fs.DurationVar(&c.ChurnHold, "churn-hold", c.ChurnHold, "churn: how long each churning connection stays in its room")

	fs.StringVar(&c.DrainCmd, "drain-cmd", c.DrainCmd, "drain: shell command that drains the gateway (e.g. 'kill -TERM 1234'), run at --drain-at; without it, drain the gateway yourself during the run")
	fs.DurationVar(&c.DrainAt, "drain-at", c.DrainAt, "drain: when to run --drain-cmd, from the start of the window (default a third of --duration)")

	fs.IntVar(&c.ServerPID, "server-pid", c.ServerPID, "sample this server process's CPU and RSS from /proc")
	fs.StringVar(&c.ServerMetrics, "server-metrics", c.ServerMetrics, "scrape this Prometheus URL (the gateway's admin /metrics) for CPU, RSS and chatgate_* counters")

	fs.BoolVar(&c.JSON, "json", c.JSON, "print one JSON object (documented in docs/benchmarks.md) instead of the table")
	fs.StringVar(&c.Report, "report", c.Report, "also write a self-contained HTML report to this file")
	fs.StringVar(&c.Progress, "progress", c.Progress, "live progress on stderr: auto (only on a terminal), on or off")
	fs.DurationVar(&c.Interval, "interval", c.Interval, "resolution of the latency-over-time series")

	fs.DurationVar(&c.SLOP99, "slo-p99", c.SLOP99, "fail (exit 1) when the delivery p99 is above this")
	fs.DurationVar(&c.SLOP999, "slo-p999", c.SLOP999, "fail (exit 1) when the delivery p99.9 is above this")
	fs.Var(&c.MaxLoss, "max-loss", "fail (exit 1) when more messages were lost: a count (0) or a share (0.01%)")
	fs.Int64Var(&c.MaxDup, "max-dup", c.MaxDup, "fail (exit 1) when more deliveries were duplicated (-1: not checked)")
	fs.Int64Var(&c.MaxOutOfOrder, "max-out-of-order", c.MaxOutOfOrder, "fail (exit 1) when more deliveries were out of order (-1: not checked)")
	fs.Int64Var(&c.MaxConnectErrors, "max-connect-errors", c.MaxConnectErrors, "fail (exit 1) when more connections failed (-1: not checked)")

	fs.StringVar(&c.TokenFile, "token-file", c.TokenFile, "file holding a JWT that every connection sends as Authorization: Bearer (for a gateway run with --auth jwt); all connections are then the same user")
	fs.StringVar(&c.Token, "token", c.Token, "the same token given on the command line, for quick local use only: it shows in ps and shell history; prefer --token-file")
	fs.StringVar(&c.JWTSecretFile, "jwt-secret-file", c.JWTSecretFile, "the gateway's HS256 secret file: mint one token per connection (sub <bench-id>-<n>, name bench-<n>, valid for the run plus slack), so each connection is a distinct user")

	fs.StringVar(&c.BenchID, "bench-id", c.BenchID, "id carried in every message and room name (default random)")
	fs.BoolVar(&c.AllowRemote, "allow-remote", c.AllowRemote, "allow a server that is not on a loopback address (never point this at a server you do not own)")
}

// ParseArgs parses a command line: an optional scenario name first, then
// flags.
func ParseArgs(args []string, out io.Writer) (Config, error) {
	c := DefaultConfig()
	fs := flag.NewFlagSet("chatbench", flag.ContinueOnError)
	fs.SetOutput(out)
	c.RegisterFlags(fs)
	fs.Usage = func() { usage(fs, out) }
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		c.Scenario = args[0]
		args = args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	return c, c.Validate()
}

func usage(fs *flag.FlagSet, out io.Writer) {
	fmt.Fprintf(out, `Usage: chatbench [SCENARIO] [flags]

chatbench loads a chatgate gateway (or, with --proto raw, the gorilla
examples/chat server) and measures delivery latency from each message's
intended send time, while checking by seq that nothing was lost, duplicated
or reordered. Scenarios: %s.

Exit status: 0 ok, 1 a threshold (--slo-p99, --max-loss, ...) was missed,
2 bad flags, 3 the run failed.

Flags:
`, strings.Join(Scenarios, ", "))
	fs.PrintDefaults()
}

// Validate checks the configuration and fills in scenario defaults.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	known := false
	for _, s := range Scenarios {
		known = known || s == c.Scenario
	}
	if !known {
		bad("unknown scenario %q (want one of %s)", c.Scenario, strings.Join(Scenarios, ", "))
	}
	if c.Proto != ProtoChatgate && c.Proto != ProtoRaw {
		bad("--proto must be chatgate or raw, got %q", c.Proto)
	}
	if len(c.URLs) == 0 {
		bad("--url is required")
	}
	for _, u := range c.URLs {
		if err := checkURL(u, c.AllowRemote); err != nil {
			bad("--url %s: %v", u, err)
		}
	}
	switch c.Scenario {
	case ScenarioFanout, ScenarioSlow:
		c.Rooms = 1
	}
	if c.Conns < 1 || c.Conns > maxConns {
		bad("--conns must be 1-%d, got %d", maxConns, c.Conns)
	}
	if c.Rooms < 1 || c.Rooms > c.Conns {
		bad("--rooms must be 1-%d (at most --conns), got %d", c.Conns, c.Rooms)
	}
	if c.Scenario != ScenarioConnect {
		perRoom := c.Conns / max(c.Rooms, 1)
		if c.Senders < 0 || c.Senders > perRoom {
			bad("--senders must be 0-%d (the members of a room), got %d", perRoom, c.Senders)
		}
	}
	if !(c.Rate >= 0) || c.Rate > maxRate {
		bad("--rate must be 0-%g, got %v", maxRate, c.Rate)
	}
	if c.Size < minTextBytes || c.Size > maxSize {
		bad("--size must be %d-%d, got %d", minTextBytes, maxSize, c.Size)
	}
	if c.Proto == ProtoRaw && c.Rooms > 1 {
		bad("--rooms %d: the gorilla chat example has one room (every message goes to every connection); use --rooms 1", c.Rooms)
	}
	if c.Proto == ProtoRaw && c.Size > 512 {
		bad("--size %d: the gorilla chat example closes connections that send more than 512 bytes", c.Size)
	}
	if c.Duration <= 0 || c.Duration > maxDuration {
		bad("--duration must be positive and at most %v, got %v", maxDuration, c.Duration)
	}
	if c.Messages < 0 {
		bad("--messages must not be negative")
	}
	if c.Settle < 0 || c.Settle > 10*time.Minute {
		bad("--settle must be 0-10m, got %v", c.Settle)
	}
	if !(c.ConnectRate >= 0) || c.ConnectRate > maxRate {
		bad("--connect-rate must be 0-%g, got %v", maxRate, c.ConnectRate)
	}
	if c.DialConcurrency < 1 || c.DialConcurrency > 100000 {
		bad("--dial-concurrency must be 1-100000, got %d", c.DialConcurrency)
	}
	if c.HandshakeTimeout <= 0 || c.HandshakeTimeout > 5*time.Minute {
		bad("--handshake-timeout must be positive and at most 5m")
	}
	if c.Hold < 0 || c.Hold > maxDuration {
		bad("--hold must be 0-%v", maxDuration)
	}
	if !(c.SlowShare >= 0 && c.SlowShare < 1) {
		bad("--slow-share must be at least 0 and below 1, got %v", c.SlowShare)
	}
	if c.SlowAfter < 0 || c.SlowRcvBuf < 0 || c.SlowStall < 0 {
		bad("--slow-after, --slow-stall and --slow-rcvbuf must not be negative")
	}
	if c.ChurnHold <= 0 || c.ChurnHold > maxDuration {
		bad("--churn-hold must be positive and at most %v", maxDuration)
	}
	if c.Scenario == ScenarioConnect || c.Scenario == ScenarioChurn {
		if !(c.ConnectRate > 0) {
			bad("%s needs --connect-rate (connections per second)", c.Scenario)
		}
	}
	if c.Scenario == ScenarioDrain {
		if c.Proto == ProtoRaw {
			bad("drain needs --proto chatgate (it resumes with since)")
		}
		if c.DrainAt == 0 {
			c.DrainAt = c.Duration / 3
		}
		if c.DrainAt < 0 || c.DrainAt > c.Duration {
			bad("--drain-at must be within --duration")
		}
	}
	if c.ServerPID < 0 {
		bad("--server-pid must not be negative")
	}
	if c.ServerMetrics != "" {
		u, err := url.Parse(c.ServerMetrics)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
			bad("--server-metrics must be an http URL, got %q", c.ServerMetrics)
		} else if err := checkHost(u.Hostname(), c.AllowRemote); err != nil {
			bad("--server-metrics: %v", err)
		}
	}
	switch c.Progress {
	case "auto", "on", "off":
	default:
		bad("--progress must be auto, on or off, got %q", c.Progress)
	}
	if c.Interval < 10*time.Millisecond || c.Interval > time.Minute {
		bad("--interval must be 10ms-1m, got %v", c.Interval)
	}
	if c.SLOP99 < 0 || c.SLOP999 < 0 {
		bad("--slo-p99 and --slo-p999 must not be negative")
	}
	authFlags := 0
	for _, v := range []string{c.Token, c.TokenFile, c.JWTSecretFile} {
		if v != "" {
			authFlags++
		}
	}
	if authFlags > 1 {
		bad("--token, --token-file and --jwt-secret-file exclude each other: give one")
	}
	if authFlags > 0 && c.Proto == ProtoRaw {
		bad("--token, --token-file and --jwt-secret-file need --proto chatgate")
	}
	if c.BenchID != "" && !validID(c.BenchID) {
		bad("--bench-id must be 1-16 letters and digits, got %q", c.BenchID)
	}
	for _, ip := range c.SourceIPs {
		if len(c.URLs) > 0 && !c.AllowRemote && !ip.IsLoopback() {
			bad("--source-ips: %v is not a loopback address", ip)
		}
	}
	return errors.Join(errs...)
}

func validID(s string) bool {
	if len(s) == 0 || len(s) > 16 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

func splitComma(v string) []string {
	var out []string
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func checkURL(raw string, allowRemote bool) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	if u.Scheme != "ws" && u.Scheme != "wss" {
		return fmt.Errorf("scheme must be ws or wss")
	}
	return checkHost(u.Hostname(), allowRemote)
}

// checkHost refuses servers off this machine unless allowRemote: a load
// test sends a lot of traffic, and by default only to loopback.
func checkHost(host string, allowRemote bool) error {
	if allowRemote {
		return nil
	}
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%q is not a loopback address (127.0.0.0/8, ::1 or localhost); pass --allow-remote for a server you own elsewhere", host)
	}
	return nil
}

// ParseSourceIPs reads "127.0.0.1-127.0.0.8" (an inclusive IPv4 range of at
// most 256 addresses) or a comma-separated list.
func ParseSourceIPs(v string) ([]net.IP, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return nil, nil
	}
	if lo, hi, ok := strings.Cut(v, "-"); ok && !strings.Contains(v, ",") {
		a, b := net.ParseIP(strings.TrimSpace(lo)).To4(), net.ParseIP(strings.TrimSpace(hi)).To4()
		if a == nil || b == nil {
			return nil, fmt.Errorf("range %q: want two IPv4 addresses", v)
		}
		x, y := ipv4ToUint(a), ipv4ToUint(b)
		if y < x || y-x >= 256 {
			return nil, fmt.Errorf("range %q: want a rising range of at most 256 addresses", v)
		}
		out := make([]net.IP, 0, y-x+1)
		for n := x; n <= y; n++ {
			out = append(out, net.IPv4(byte(n>>24), byte(n>>16), byte(n>>8), byte(n)))
		}
		return out, nil
	}
	var out []net.IP
	for _, s := range splitComma(v) {
		ip := net.ParseIP(s)
		if ip == nil {
			return nil, fmt.Errorf("%q is not an IP address", s)
		}
		out = append(out, ip)
	}
	if len(out) > 256 {
		return nil, fmt.Errorf("at most 256 source addresses")
	}
	return out, nil
}

func ipv4ToUint(ip net.IP) uint32 {
	return uint32(ip[0])<<24 | uint32(ip[1])<<16 | uint32(ip[2])<<8 | uint32(ip[3])
}
