package gateway

import (
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"
	"unicode"

	"github.com/chatgate/chatgate/gateway/auth"
	"github.com/chatgate/chatgate/gateway/protocol"
)

// Config is the gateway's configuration: listeners, authentication,
// admission, per-connection limits, heartbeats and the drain. Every field
// but the deprecated ones has a flag (RegisterFlags). The room settings
// belong to the broker (broker.Settings, hub.Settings), the log settings
// to internal/logging, the backplane's to the cluster; cmd/chatgate
// composes them all (internal/appconfig).
type Config struct {
	// Listeners.
	Addr      string
	AdminAddr string
	NodeID    string

	// Authentication.
	Auth            string // "none" or "jwt"
	JWTSecretFile   string
	JWTKeysFile     string
	JWTIssuer       string
	JWTAudience     string
	JWTLeeway       time.Duration
	MaxConnsPerUser int

	// Guests (--auth none): resumable identities (guest.go), and how long
	// a dropped connection's user stays in its rooms (linger.go).
	GuestKeyFile  string
	GuestTTL      time.Duration
	PresenceGrace time.Duration

	// Typing indicators (typing.go).
	Typing bool

	// Admission.
	AllowedOrigins    []string
	MaxConns          int
	MaxConnsPerIP     int
	MaxTCPConnsPerIP  int
	IPv6PrefixLen     int
	TrustedProxies    []netip.Prefix
	HandshakeRate     float64
	HandshakeBurst    int
	ReadHeaderTimeout time.Duration
	HTTPReadTimeout   time.Duration
	HTTPWriteTimeout  time.Duration
	HTTPIdleTimeout   time.Duration
	MaxHeaderBytes    int

	// Per-connection limits.
	SendRate        float64
	SendBurst       int
	UserSendRate    float64
	UserSendBurst   int
	JoinRate        float64
	JoinBurst       int
	AbuseStrikes    int
	AbuseWindow     time.Duration
	MaxTextBytes    int
	MaxFrameBytes   int
	MaxMsgFrames    int
	MaxRoomsPerConn int
	QueueBytes      int
	TotalQueueBytes int64

	// Heartbeats and writes.
	PingInterval time.Duration
	PongTimeout  time.Duration
	WriteTimeout time.Duration

	// Netpoll serves connections with the event loop (epoll, Linux)
	// instead of a reader and a writer goroutine each; WriteDelay is how
	// long its flushers let frames gather before writing.
	Netpoll    bool
	WriteDelay time.Duration

	// Drain.
	DrainDelay      time.Duration
	DrainWindow     time.Duration
	ShutdownTimeout time.Duration
	DrainRetryMax   time.Duration
	DrainLinger     time.Duration
}

// DefaultConfig returns the embedded defaults: `go run ./cmd/chatgate` with
// no flags serves with these.
func DefaultConfig() Config {
	host, _ := os.Hostname()
	if host == "" {
		host = "chatgate"
	}
	return Config{
		Addr:              ":8080",
		AdminAddr:         ":9090",
		NodeID:            host,
		MaxConns:          50000,
		MaxConnsPerIP:     200,
		IPv6PrefixLen:     64,
		Auth:              "none",
		JWTLeeway:         30 * time.Second,
		MaxConnsPerUser:   20,
		GuestTTL:          24 * time.Hour,
		PresenceGrace:     10 * time.Second,
		Typing:            true,
		HandshakeRate:     500,
		HandshakeBurst:    1000,
		ReadHeaderTimeout: 5 * time.Second,
		HTTPReadTimeout:   10 * time.Second,
		HTTPWriteTimeout:  30 * time.Second,
		HTTPIdleTimeout:   60 * time.Second,
		MaxHeaderBytes:    16 << 10,
		SendRate:          10,
		SendBurst:         20,
		JoinRate:          5,
		JoinBurst:         20,
		AbuseStrikes:      20,
		AbuseWindow:       10 * time.Second,
		MaxTextBytes:      protocol.DefaultMaxTextBytes,
		MaxFrameBytes:     32 << 10,
		MaxRoomsPerConn:   16,
		QueueBytes:        1 << 20,
		TotalQueueBytes:   1 << 30,
		PingInterval:      25 * time.Second,
		PongTimeout:       60 * time.Second,
		WriteTimeout:      5 * time.Second,
		Netpoll:           true,
		DrainDelay:        5 * time.Second,
		DrainWindow:       10 * time.Second,
		ShutdownTimeout:   25 * time.Second,
		DrainRetryMax:     5 * time.Second,
		DrainLinger:       5 * time.Second,
	}
}

// MessageFrames returns the most frames one inbound message may have:
// --max-message-frames, or when 0 --max-frame-bytes / 512 (64 with the
// default 32 KiB), at least 16, so that raising the size limit leaves
// clients that fragment messages (gorilla/websocket does, at its 4 KiB write
// buffer) the same room.
func (c *Config) MessageFrames() int {
	if c.MaxMsgFrames > 0 {
		return c.MaxMsgFrames
	}
	return max(16, c.MaxFrameBytes/512)
}

// TCPConnsPerIP returns the accept-time cap on TCP connections per client
// address: --max-tcp-conns-per-ip, or --max-conns-per-ip + 64 when 0 (room
// for page loads and handshakes beside a full set of WebSockets).
func (c *Config) TCPConnsPerIP() int {
	if c.MaxTCPConnsPerIP > 0 {
		return c.MaxTCPConnsPerIP
	}
	return c.MaxConnsPerIP + 64
}

// UserSendLimits returns the send rate and burst shared by all connections
// of one user or address: --user-send-rate and --user-send-burst, each
// twice its per-connection counterpart when 0.
func (c *Config) UserSendLimits() (float64, int) {
	r, b := c.UserSendRate, c.UserSendBurst
	if r == 0 {
		r = 2 * c.SendRate
	}
	if b == 0 {
		b = 2 * c.SendBurst
	}
	return r, b
}

// AuthConfig is the JWT verification the --jwt-* flags configure (used
// with --auth jwt, and by the server API's --api-jwt with its own
// audience).
func (c *Config) AuthConfig() auth.Config {
	return auth.Config{
		SecretFile: c.JWTSecretFile,
		KeysFile:   c.JWTKeysFile,
		Issuer:     c.JWTIssuer,
		Audience:   c.JWTAudience,
		Leeway:     c.JWTLeeway,
	}
}

// RegisterFlags defines a flag for every field of c, using c's current
// values as defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Addr, "addr", c.Addr, "chat listener: serves the web page at / and WebSockets at /ws")
	fs.StringVar(&c.AdminAddr, "admin-addr", c.AdminAddr, "admin listener: /livez, /readyz and /metrics (empty disables it)")
	fs.StringVar(&c.NodeID, "node-id", c.NodeID, "this replica's name, sent to clients in welcome.node (defaults to the hostname)")

	fs.StringVar(&c.Auth, "auth", c.Auth, "authentication: none (anonymous users) or jwt (every connection needs a valid token)")
	fs.StringVar(&c.JWTSecretFile, "jwt-secret-file", c.JWTSecretFile, "file holding the HS256 shared secret (at least 32 bytes) for --auth jwt")
	fs.StringVar(&c.JWTKeysFile, "jwt-keys-file", c.JWTKeysFile, "file of RS256/ES256 public keys (PEM or JWKS) for --auth jwt; reloaded when it changes")
	fs.StringVar(&c.JWTIssuer, "jwt-issuer", c.JWTIssuer, "required token issuer (iss) when set")
	fs.StringVar(&c.JWTAudience, "jwt-audience", c.JWTAudience, "required token audience (aud) when set")
	fs.DurationVar(&c.JWTLeeway, "jwt-leeway", c.JWTLeeway, "clock skew allowed when checking exp, nbf and iat")
	fs.IntVar(&c.MaxConnsPerUser, "max-conns-per-user", c.MaxConnsPerUser, "most WebSockets open at once for one authenticated user; above it upgrades get 429")
	fs.StringVar(&c.GuestKeyFile, "guest-key-file", c.GuestKeyFile, "file of keys (one per line, at least 32 bytes each; the first signs) for the guest credentials that let anonymous users reconnect as themselves; replicas must share it; reloaded when it changes; empty, or a file that does not exist yet, means a key generated at start, good on this process only; ignored with --auth jwt")
	fs.DurationVar(&c.GuestTTL, "guest-ttl", c.GuestTTL, "how long a guest credential stays valid after it was issued (each connection gets a fresh one); 0 issues none, so every anonymous connection is a new user")
	fs.DurationVar(&c.PresenceGrace, "presence-grace", c.PresenceGrace, "how long a user whose connection dropped or was closed by the gateway (a drain, a network failure, a slow client) stays present in its rooms, so that reconnecting within it (as the same user: a token or a guest credential) shows no leave and join; a leave request, a close frame from the client, a close for misbehaviour or a server API disconnect leaves at once; 0 leaves at once always")
	fs.BoolVar(&c.Typing, "typing", c.Typing, "relay typing indicators (announced in welcome.features); false refuses them as unknown_type")
	fs.Func("allowed-origins", "comma-separated Origin patterns allowed to open WebSockets, e.g. https://chat.example.com,https://*.example.com; empty allows only an http(s) origin naming the request's own Host, which does not stop DNS rebinding: set this in production; requests without Origin (non-browser clients) are always allowed", func(v string) error {
		c.AllowedOrigins = splitList(v)
		return nil
	})
	fs.IntVar(&c.MaxConns, "max-conns", c.MaxConns, "most WebSockets open at once; above it upgrades get 503")
	fs.IntVar(&c.MaxConnsPerIP, "max-conns-per-ip", c.MaxConnsPerIP, "most WebSockets open at once from one client IP; above it upgrades get 429")
	fs.IntVar(&c.MaxTCPConnsPerIP, "max-tcp-conns-per-ip", c.MaxTCPConnsPerIP, "most TCP connections open at once on the chat listener from one client address (peer, not X-Forwarded-For; trusted proxies are not counted), whatever they are for; more are closed at accept; 0 means --max-conns-per-ip + 64")
	fs.IntVar(&c.IPv6PrefixLen, "ipv6-prefix-len", c.IPv6PrefixLen, "per-IP limits count IPv6 clients by this many leading bits of their address (64: one /64, the block one subscriber usually holds; 128: each address alone); IPv4 addresses count alone")
	fs.Func("trusted-proxies", "comma-separated addresses or CIDRs of reverse proxies (ingress, Gateway API, load balancer) whose X-Forwarded-For is believed: a connection from one is counted against --max-conns-per-ip by the nearest untrusted X-Forwarded-For address; empty trusts no header and counts the TCP peer", func(v string) error {
		p, err := parsePrefixes(splitList(v))
		c.TrustedProxies = p
		return err
	})
	fs.Float64Var(&c.HandshakeRate, "handshake-rate", c.HandshakeRate, "WebSocket handshakes accepted per second, all clients together; above it upgrades get 503")
	fs.IntVar(&c.HandshakeBurst, "handshake-burst", c.HandshakeBurst, "burst allowance of --handshake-rate")
	fs.DurationVar(&c.ReadHeaderTimeout, "read-header-timeout", c.ReadHeaderTimeout, "time allowed to read a request's headers")
	fs.DurationVar(&c.HTTPReadTimeout, "http-read-timeout", c.HTTPReadTimeout, "time allowed to read a whole request on both listeners (a WebSocket has its own timeouts once upgraded)")
	fs.DurationVar(&c.HTTPWriteTimeout, "http-write-timeout", c.HTTPWriteTimeout, "time allowed to write a response on both listeners, from the end of the request's headers")
	fs.DurationVar(&c.HTTPIdleTimeout, "http-idle-timeout", c.HTTPIdleTimeout, "how long a keep-alive HTTP connection may wait for its next request on both listeners")
	fs.IntVar(&c.MaxHeaderBytes, "max-header-bytes", c.MaxHeaderBytes, "largest request header block accepted")

	fs.Float64Var(&c.SendRate, "send-rate", c.SendRate, "messages per second one connection may send (sustained)")
	fs.IntVar(&c.SendBurst, "send-burst", c.SendBurst, "messages one connection may send in a burst")
	fs.Float64Var(&c.UserSendRate, "user-send-rate", c.UserSendRate, "messages per second all connections of one user (--auth jwt) or of one client address (anonymous) may send together, on top of --send-rate; reconnecting does not refill it; 0 means twice --send-rate")
	fs.IntVar(&c.UserSendBurst, "user-send-burst", c.UserSendBurst, "burst allowance of --user-send-rate; 0 means twice --send-burst")
	fs.Float64Var(&c.JoinRate, "join-rate", c.JoinRate, "joins per second one connection may make (sustained)")
	fs.IntVar(&c.JoinBurst, "join-burst", c.JoinBurst, "joins one connection may make in a burst")
	fs.IntVar(&c.AbuseStrikes, "abuse-strikes", c.AbuseStrikes, "rate-limit or protocol violations tolerated per --abuse-window before the connection is closed with 1008")
	fs.DurationVar(&c.AbuseWindow, "abuse-window", c.AbuseWindow, "window over which --abuse-strikes are counted")
	fs.IntVar(&c.MaxTextBytes, "max-text-bytes", c.MaxTextBytes, "largest message text in bytes; larger sends get a too_large error")
	fs.IntVar(&c.MaxFrameBytes, "max-frame-bytes", c.MaxFrameBytes, "largest inbound WebSocket message in bytes, as written (JSON escapes count); larger ones close the connection with 1009; at least the longest send envelope a --max-text-bytes text can need (6 bytes per byte of text, plus 492)")
	fs.IntVar(&c.MaxMsgFrames, "max-message-frames", c.MaxMsgFrames, "most WebSocket frames (fragments) one inbound message may have; more close the connection with 1009; 0 means --max-frame-bytes / 512 (fragments of 512 bytes on average), at least 16")
	fs.IntVar(&c.MaxRoomsPerConn, "max-rooms", c.MaxRoomsPerConn, "rooms one connection may be in at once")
	fs.IntVar(&c.QueueBytes, "queue-bytes", c.QueueBytes, "outbound queue cap per connection in bytes; above it the client is evicted with 4008")
	fs.Int64Var(&c.TotalQueueBytes, "total-queue-bytes", c.TotalQueueBytes, "outbound bytes queued over all connections before the gateway sheds the most backed-up clients with 1013")

	fs.DurationVar(&c.PingInterval, "ping-interval", c.PingInterval, "how often the server pings each client")
	fs.DurationVar(&c.PongTimeout, "pong-timeout", c.PongTimeout, "close with 4001 when nothing (pong or frame) arrives from a client for this long")
	fs.DurationVar(&c.WriteTimeout, "write-timeout", c.WriteTimeout, "deadline for each write to a client; a client that misses it is disconnected")
	fs.DurationVar(&c.WriteDelay, "write-delay", c.WriteDelay, "with --netpoll, how long a flusher lets frames gather before writing them, so one write carries several (less CPU per delivery, that much more latency); 0 writes at once")
	fs.BoolVar(&c.Netpoll, "netpoll", c.Netpoll, "serve connections from an event loop (epoll; Linux only, ignored elsewhere): an idle connection holds no goroutine; false gives each a reader and a writer goroutine")

	fs.DurationVar(&c.DrainDelay, "drain-delay", c.DrainDelay, "on SIGTERM, keep serving this long with /readyz failing so load balancers stop routing here")
	fs.DurationVar(&c.DrainWindow, "drain-window", c.DrainWindow, "spread the closing of client connections (1001) over this window")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", c.ShutdownTimeout, "from SIGTERM, force-close whatever is left after this long")
	fs.DurationVar(&c.DrainRetryMax, "drain-retry-max", c.DrainRetryMax, "largest reconnect delay (retry_ms) suggested to drained clients; each gets a random one between a tenth of it and it")
	fs.DurationVar(&c.DrainLinger, "drain-linger", c.DrainLinger, "after the last client is closed, keep serving /metrics this long so the drain's final counts are scraped (ends at --shutdown-timeout at the latest; 0 exits at once)")
}

func splitList(v string) []string {
	var out []string
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// Validate reports every invalid setting at once.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Addr == "" {
		bad("--addr must not be empty")
	}
	if c.NodeID == "" || len(c.NodeID) > 64 || strings.IndexFunc(c.NodeID, unicode.IsControl) >= 0 {
		bad("--node-id must be 1-64 characters with no control characters")
	}
	for _, o := range c.AllowedOrigins {
		if _, err := compileOrigin(o); err != nil {
			bad("--allowed-origins: %v", err)
		}
	}
	positiveInts := []struct {
		name string
		v    int
	}{
		{"--max-conns", c.MaxConns}, {"--max-conns-per-ip", c.MaxConnsPerIP}, {"--handshake-burst", c.HandshakeBurst},
		{"--max-header-bytes", c.MaxHeaderBytes}, {"--send-burst", c.SendBurst}, {"--join-burst", c.JoinBurst},
		{"--abuse-strikes", c.AbuseStrikes}, {"--max-text-bytes", c.MaxTextBytes}, {"--max-frame-bytes", c.MaxFrameBytes},
		{"--max-rooms", c.MaxRoomsPerConn}, {"--queue-bytes", c.QueueBytes},
	}
	for _, p := range positiveInts {
		if p.v <= 0 {
			bad("%s must be positive, got %d", p.name, p.v)
		}
	}
	positiveRates := []struct {
		name string
		v    float64
	}{{"--handshake-rate", c.HandshakeRate}, {"--send-rate", c.SendRate}, {"--join-rate", c.JoinRate}}
	for _, p := range positiveRates {
		if !(p.v > 0) {
			bad("%s must be positive, got %v", p.name, p.v)
		}
	}
	positiveDurations := []struct {
		name string
		v    time.Duration
	}{
		{"--read-header-timeout", c.ReadHeaderTimeout}, {"--http-read-timeout", c.HTTPReadTimeout}, {"--http-write-timeout", c.HTTPWriteTimeout},
		{"--http-idle-timeout", c.HTTPIdleTimeout}, {"--abuse-window", c.AbuseWindow}, {"--ping-interval", c.PingInterval},
		{"--pong-timeout", c.PongTimeout}, {"--write-timeout", c.WriteTimeout},
		{"--shutdown-timeout", c.ShutdownTimeout}, {"--drain-retry-max", c.DrainRetryMax},
	}
	for _, p := range positiveDurations {
		if p.v <= 0 {
			bad("%s must be positive, got %v", p.name, p.v)
		}
	}
	if !(c.UserSendRate >= 0) || c.UserSendBurst < 0 {
		bad("--user-send-rate and --user-send-burst must not be negative (0 means twice --send-rate and --send-burst)")
	}
	if c.WriteDelay < 0 || c.WriteDelay > c.WriteTimeout/2 {
		bad("--write-delay must be between 0 and half of --write-timeout (%v), got %v", c.WriteTimeout, c.WriteDelay)
	}
	if c.MaxMsgFrames < 0 {
		bad("--max-message-frames must not be negative (0 means --max-frame-bytes / 512), got %d", c.MaxMsgFrames)
	}
	if c.MaxTCPConnsPerIP != 0 && c.MaxTCPConnsPerIP < c.MaxConnsPerIP {
		bad("--max-tcp-conns-per-ip (%d) must be at least --max-conns-per-ip (%d), or 0 for --max-conns-per-ip + 64: every WebSocket is a TCP connection", c.MaxTCPConnsPerIP, c.MaxConnsPerIP)
	}
	if c.IPv6PrefixLen < 1 || c.IPv6PrefixLen > 128 {
		bad("--ipv6-prefix-len must be between 1 and 128, got %d", c.IPv6PrefixLen)
	}
	if c.DrainDelay < 0 || c.DrainWindow < 0 || c.DrainLinger < 0 {
		bad("--drain-delay, --drain-window and --drain-linger must not be negative")
	}
	if c.GuestTTL != 0 && (c.GuestTTL < time.Minute || c.GuestTTL > 30*24*time.Hour) {
		bad("--guest-ttl must be 0 (no guest credentials) or between 1m and 720h, got %v", c.GuestTTL)
	}
	if c.PresenceGrace < 0 || c.PresenceGrace > 5*time.Minute {
		bad("--presence-grace must be between 0 and 5m, got %v", c.PresenceGrace)
	}
	if c.PongTimeout <= c.PingInterval {
		bad("--pong-timeout (%v) must be longer than --ping-interval (%v)", c.PongTimeout, c.PingInterval)
	}
	if c.MaxTextBytes > 0 {
		// JSON may spend 6 bytes on one byte of text (\u00XX): a frame
		// limit below the worst case would close, with 1009, a client
		// sending a text the text limit allows.
		if need := protocol.MaxSendEnvelopeBytes(c.MaxTextBytes); c.MaxFrameBytes < need {
			bad("--max-frame-bytes (%d) must hold a send envelope with a --max-text-bytes (%d) text at its longest JSON encoding (6 bytes per byte of text): at least %d", c.MaxFrameBytes, c.MaxTextBytes, need)
		}
		// One message at its longest must fit a queue, or every
		// recipient of it would be evicted.
		if need := protocol.MaxMessageEnvelopeBytes(c.MaxTextBytes) + 1; c.QueueBytes < need {
			bad("--queue-bytes (%d) must hold one message envelope with a --max-text-bytes (%d) text at its longest JSON encoding: at least %d", c.QueueBytes, c.MaxTextBytes, need)
		}
	}
	if c.TotalQueueBytes < int64(c.QueueBytes) {
		bad("--total-queue-bytes (%d) must be at least --queue-bytes (%d)", c.TotalQueueBytes, c.QueueBytes)
	}
	if c.ShutdownTimeout <= c.DrainDelay+c.DrainWindow {
		bad("--shutdown-timeout (%v) must be longer than --drain-delay + --drain-window (%v), leaving time for the last clients to close", c.ShutdownTimeout, c.DrainDelay+c.DrainWindow)
	}
	switch c.Auth {
	case "none":
	case "jwt":
		if c.JWTSecretFile == "" && c.JWTKeysFile == "" {
			bad("--auth jwt needs --jwt-secret-file or --jwt-keys-file")
		}
		if c.JWTLeeway < 0 || c.JWTLeeway > 5*time.Minute {
			bad("--jwt-leeway must be between 0 and 5m, got %v", c.JWTLeeway)
		}
		if c.MaxConnsPerUser <= 0 {
			bad("--max-conns-per-user must be positive, got %d", c.MaxConnsPerUser)
		}
	default:
		bad("--auth must be none or jwt, got %q", c.Auth)
	}
	return errors.Join(errs...)
}

// parsePrefixes reads addresses (taken as single-host prefixes) and CIDRs.
func parsePrefixes(items []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, it := range items {
		if p, err := netip.ParsePrefix(it); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(it)
		if err != nil {
			return nil, fmt.Errorf("%q is neither an IP address nor a CIDR", it)
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}
