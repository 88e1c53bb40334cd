package bench

import (
	"errors"
	"fmt"
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

// How senders send (--via).
const (
	ViaWS  = "ws"  // a send envelope on the sender's own WebSocket
	ViaAPI = "api" // a publish through the gateway's server API (docs/api.md)
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
	Via string // ViaWS or ViaAPI
	// APIURL and APIKeyFile reach the server API (--via api).
	APIURL     string
	APIKeyFile string
	Conns      int     // members (all rooms together); connections for connect
	Rooms      int     // rooms the members are spread over
	Senders    int     // senders per room, taken from its members
	Rate       float64 // messages per second per sender
	Size       int     // text bytes per message
	Duration   time.Duration
	Messages   int // messages per sender; 0 = as many as Duration allows
	Settle     time.Duration

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
	// MinChecked is the fewest members that must be checked for loss when
	// any threshold is checked; -1 (the default) asks for every member
	// that can be: all but the slow listeners and, in a drain with a
	// single URL, the members the drain closed.
	MinChecked int

	// Authentication for a gateway run with --auth jwt (chatgate only):
	// at most one of these is set.
	Token         string // one token for every connection; quick local use only
	TokenFile     string // the same, read from a file
	JWTSecretFile string // HS256 secret: a token, and a user, per connection

	BenchID     string
	AllowRemote bool

	// creds are the loaded Token/TokenFile/JWTSecretFile, set by Run.
	creds *credentials
	// given names the flags given on the command line (ParseArgs): the
	// slow scenario sizes the ones left out from the gateway's limits.
	given map[string]bool
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
		Via:              ViaWS,
		APIURL:           "http://127.0.0.1:8081",
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
		MinChecked:       -1,
	}
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
	switch c.Via {
	case ViaWS:
	case ViaAPI:
		switch {
		case c.Proto != ProtoChatgate:
			bad("--via api needs --proto chatgate: only chatgate has a server API")
		case c.Scenario == ScenarioConnect || c.Scenario == ScenarioChurn:
			bad("--via api: the %s scenario sends nothing", c.Scenario)
		case c.APIKeyFile == "":
			bad("--via api needs --api-key-file (the gateway's --api-keys-file has the key, with the publish scope)")
		}
		if err := checkAPIURL(c.APIURL, c.AllowRemote); err != nil {
			bad("--api-url %s: %v", c.APIURL, err)
		}
	default:
		bad("--via must be ws or api, got %q", c.Via)
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
	// Each bound below depends on the ones before it: a bad --conns is
	// reported alone, not with the --rooms and --senders it would spoil.
	switch {
	case c.Conns < 1:
		bad("--conns must be positive, got %d", c.Conns)
	case c.Conns > maxConns:
		bad("--conns must be at most %d, got %d", maxConns, c.Conns)
	case c.Rooms < 1:
		bad("--rooms must be positive, got %d", c.Rooms)
	case c.Rooms > c.Conns:
		bad("--rooms %d is more than --conns %d: every room needs a member", c.Rooms, c.Conns)
	case c.Proto == ProtoRaw && c.Rooms > 1:
		bad("--rooms %d: the gorilla chat example has one room (every message goes to every connection); use --rooms 1", c.Rooms)
	case c.Scenario == ScenarioConnect:
	case c.Senders < 0:
		bad("--senders must not be negative, got %d", c.Senders)
	case c.Senders > c.Conns/c.Rooms:
		bad("--senders %d is more than the %d members of a room (--conns / --rooms)", c.Senders, c.Conns/c.Rooms)
	}
	if !(c.Rate >= 0) || c.Rate > maxRate {
		bad("--rate must be 0-%.0f, got %v", maxRate, c.Rate)
	}
	if c.Size < minTextBytes || c.Size > maxSize {
		bad("--size must be %d-%d, got %d", minTextBytes, maxSize, c.Size)
	} else if c.Proto == ProtoRaw && c.Size > 512 {
		bad("--size %d: the gorilla chat example closes connections that send more than 512 bytes", c.Size)
	}
	durationOK := c.Duration > 0 && c.Duration <= maxDuration
	if !durationOK {
		bad("--duration must be positive and at most %v, got %v", maxDuration, c.Duration)
	}
	if c.Messages < 0 {
		bad("--messages must not be negative")
	}
	if c.Settle < 0 || c.Settle > 10*time.Minute {
		bad("--settle must be 0-10m, got %v", c.Settle)
	}
	if !(c.ConnectRate >= 0) || c.ConnectRate > maxRate {
		bad("--connect-rate must be 0-%.0f, got %v", maxRate, c.ConnectRate)
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
		if durationOK && (c.DrainAt < 0 || c.DrainAt > c.Duration) {
			bad("--drain-at %v is not within --duration %v", c.DrainAt, c.Duration)
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
	if c.MinChecked < -1 {
		bad("--min-checked must be -1 (every member that can be checked) or more, got %d", c.MinChecked)
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
// (checkAPIURL is the same for the server API's http(s) URL.)
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

// checkAPIURL checks --api-url: http(s), on loopback unless allowRemote.
func checkAPIURL(raw string, allowRemote bool) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("want http(s)://host:port")
	}
	return checkHost(u.Hostname(), allowRemote)
}
