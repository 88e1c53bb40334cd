package bench

import (
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/chatgate/chatgate/internal/cli"
)

// RegisterFlags defines the flags of c on fs with c's values as defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Scenario, "scenario", c.Scenario, "scenario: "+strings.Join(Scenarios, ", ")+" (or give it as the first argument)")
	fs.Func("url", "WebSocket `url` of the server, or a comma-separated list: connections are spread over them and a reconnect moves to the next one (default ws://127.0.0.1:8080/ws)", func(v string) error {
		c.URLs = splitComma(v)
		return nil
	})
	fs.StringVar(&c.Proto, "proto", c.Proto, "protocol: chatgate (JSON envelopes, seq-checked) or raw (plain text frames, as the gorilla examples/chat server speaks)")

	fs.StringVar(&c.Via, "via", c.Via, "how senders send: ws (a send envelope on their own WebSocket) or api (a publish through the gateway's server API as a system message, with --api-url and --api-key-file: backend-originated fan-out; the senders stay members and listen)")
	fs.StringVar(&c.APIURL, "api-url", c.APIURL, "--via api: the gateway's server API (its --api-addr)")
	fs.StringVar(&c.APIKeyFile, "api-key-file", c.APIKeyFile, "--via api: `file` holding an API key with the publish scope (give the gateway --api-rate and --api-burst above the senders' total rate)")
	fs.IntVar(&c.Conns, "conns", c.Conns, "members over all rooms (fanout, rooms, slow, drain, churn's stable members); connections to open (connect)")
	fs.IntVar(&c.Rooms, "rooms", c.Rooms, "rooms the members are spread over (rooms, churn, drain; fanout and slow use 1)")
	fs.IntVar(&c.Senders, "senders", c.Senders, "members of each room that also send (slow: sized from the gateway's limits unless given)")
	fs.Float64Var(&c.Rate, "rate", c.Rate, "messages per second each sender sends, on a fixed open-loop schedule (slow: sized from the gateway's limits unless given)")
	fs.IntVar(&c.Size, "size", c.Size, fmt.Sprintf("text bytes per message (at least %d; the gorilla chat example accepts at most 512; slow: the gateway's max_text_bytes, at most 4096, unless given)", minTextBytes))
	fs.DurationVar(&c.Duration, "duration", c.Duration, "sending window")
	fs.IntVar(&c.Messages, "messages", c.Messages, "messages per sender (0: as many as --duration allows); --duration still caps the window")
	fs.DurationVar(&c.Settle, "settle", c.Settle, "after the window, wait at most this long for acks, deliveries in flight and members still reconnecting")

	fs.Float64Var(&c.ConnectRate, "connect-rate", c.ConnectRate, "connections per second: the storm rate of connect, the arrival rate of churn; in other scenarios it paces the setup (0: as fast as --dial-concurrency allows)")
	fs.IntVar(&c.DialConcurrency, "dial-concurrency", c.DialConcurrency, "handshakes in flight at once")
	fs.DurationVar(&c.HandshakeTimeout, "handshake-timeout", c.HandshakeTimeout, "time allowed for one connection to be up (and, for chatgate, joined)")
	fs.DurationVar(&c.Hold, "hold", c.Hold, "connect: keep the connections open and idle this long before sampling the server and closing")
	fs.Func("source-ips", "local addresses to spread connections over: a range 127.0.0.1-127.0.0.8 or a comma-separated list (each gives another ~28k ephemeral ports, and another address for the gateway's --max-conns-per-ip)", func(v string) error {
		ips, err := ParseSourceIPs(v)
		c.SourceIPs = ips
		return err
	})

	fs.Float64Var(&c.SlowShare, "slow-share", c.SlowShare, "slow: share of the listeners that stop reading")
	fs.DurationVar(&c.SlowAfter, "slow-after", c.SlowAfter, "slow: when, after the window starts, slow listeners slow down (after the window they read at full speed again, to collect their close code)")
	fs.DurationVar(&c.SlowStall, "slow-stall", c.SlowStall, "slow: slow listeners stop reading this long at a time (reading 500ms in between); unless given, 0.8 of the gateway's write timeout (welcome.limits.write_timeout_ms), so they overflow its queue and get the 4008 close frame; 0 stops reading until the window ends (a gateway whose write deadline expires first drops the socket without a close frame: 1006)")
	fs.IntVar(&c.SlowRcvBuf, "slow-rcvbuf", c.SlowRcvBuf, "slow: socket receive buffer of slow listeners in bytes (small, so the kernel absorbs little and the gateway's queue fills soon); 0 leaves the kernel default")

	fs.DurationVar(&c.ChurnHold, "churn-hold", c.ChurnHold, "churn: how long each churning connection stays in its room")

	fs.StringVar(&c.DrainCmd, "drain-cmd", c.DrainCmd, "drain: shell `command` that drains the gateway (e.g. 'kill -TERM 1234'), run at --drain-at; the run fails if it fails; without it, drain the gateway yourself during the run")
	fs.DurationVar(&c.DrainAt, "drain-at", c.DrainAt, "drain: when to run --drain-cmd, from the start of the window (default a third of --duration)")

	fs.IntVar(&c.ServerPID, "server-pid", c.ServerPID, "sample this server process's CPU and RSS from /proc")
	fs.StringVar(&c.ServerMetrics, "server-metrics", c.ServerMetrics, "scrape this Prometheus `url` (the gateway's admin /metrics) for CPU, RSS and chatgate_* counters")

	fs.BoolVar(&c.JSON, "json", c.JSON, "print one JSON object (documented in docs/benchmarks.md) instead of the table")
	fs.StringVar(&c.Report, "report", c.Report, "also write a self-contained HTML report to this `file`")
	fs.StringVar(&c.Progress, "progress", c.Progress, "live progress on stderr: auto (only on a terminal), on or off")
	fs.DurationVar(&c.Interval, "interval", c.Interval, "resolution of the latency-over-time series")

	fs.DurationVar(&c.SLOP99, "slo-p99", c.SLOP99, "fail (exit 1) when the delivery p99 is above this")
	fs.DurationVar(&c.SLOP999, "slo-p999", c.SLOP999, "fail (exit 1) when the delivery p99.9 is above this")
	fs.Var(&c.MaxLoss, "max-loss", "fail (exit 1) when more messages were lost: a count (0) or a share (0.01%)")
	fs.Int64Var(&c.MaxDup, "max-dup", c.MaxDup, "fail (exit 1) when more deliveries were duplicated (-1: not checked)")
	fs.Int64Var(&c.MaxOutOfOrder, "max-out-of-order", c.MaxOutOfOrder, "fail (exit 1) when more deliveries were out of order (-1: not checked)")
	fs.Int64Var(&c.MaxConnectErrors, "max-connect-errors", c.MaxConnectErrors, "fail (exit 1) when more connections failed (-1: not checked)")
	fs.IntVar(&c.MinChecked, "min-checked", c.MinChecked, "with any threshold, fail (exit 1) when fewer members were checked for loss; -1: every member that can be (all but the slow listeners, and in a drain with one --url the members it closed)")

	fs.StringVar(&c.TokenFile, "token-file", c.TokenFile, "`file` holding a JWT that every connection sends as Authorization: Bearer (for a gateway run with --auth jwt); all connections are then the same user")
	fs.StringVar(&c.Token, "token", c.Token, "the same token given on the command line, for quick local use only: it shows in ps and shell history; prefer --token-file")
	fs.StringVar(&c.JWTSecretFile, "jwt-secret-file", c.JWTSecretFile, "the gateway's HS256 secret `file`: mint one token per connection (sub <bench-id>-<n>, name bench-<n>, valid for the run plus slack), so each connection is a distinct user")

	fs.StringVar(&c.BenchID, "bench-id", c.BenchID, "id carried in every message and room name (default random)")
	fs.BoolVar(&c.AllowRemote, "allow-remote", c.AllowRemote, "allow a server that is not on a loopback address (never point this at a server you do not own)")
}

// flagGroups orders the help: every flag is in exactly one group.
var flagGroups = []struct {
	title string
	names []string
}{
	{"What to run", []string{"scenario", "url", "proto", "bench-id", "allow-remote"}},
	{"Traffic", []string{"conns", "rooms", "senders", "rate", "size", "duration", "messages", "settle"}},
	{"Connections", []string{"connect-rate", "dial-concurrency", "handshake-timeout", "hold", "source-ips"}},
	{"Scenario slow", []string{"slow-share", "slow-after", "slow-stall", "slow-rcvbuf"}},
	{"Scenario churn", []string{"churn-hold"}},
	{"Scenario drain", []string{"drain-cmd", "drain-at"}},
	{"Sending through the server API (--via api)", []string{"via", "api-url", "api-key-file"}},
	{"Authentication (a gateway run with --auth jwt)", []string{"jwt-secret-file", "token-file", "token"}},
	{"Server sampling", []string{"server-pid", "server-metrics"}},
	{"Thresholds (exit 1 when missed)", []string{"slo-p99", "slo-p999", "max-loss", "max-dup", "max-out-of-order", "max-connect-errors", "min-checked"}},
	{"Output", []string{"json", "report", "progress", "interval"}},
}

// ParseArgs parses a command line: an optional scenario name first, then
// flags. For --help it writes the usage to out and returns flag.ErrHelp;
// otherwise it writes nothing: errors name the flag as --flag, one line
// each, for the caller to print (cmd/chatbench adds a hint to --help).
func ParseArgs(args []string, out io.Writer) (Config, error) {
	c := DefaultConfig()
	fs := flag.NewFlagSet("chatbench", flag.ContinueOnError)
	c.RegisterFlags(fs)
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		c.Scenario = args[0]
		args = args[1:]
	}
	if err := cli.Parse(fs, args, func() { usage(fs, out) }); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments: %s (flags go after the scenario)", strings.Join(fs.Args(), " "))
	}
	c.given = map[string]bool{}
	fs.Visit(func(f *flag.Flag) { c.given[f.Name] = true })
	return c, c.Validate()
}

func usage(fs *flag.FlagSet, out io.Writer) {
	fmt.Fprintf(out, `Usage: chatbench [SCENARIO] [flags]

chatbench loads a chatgate gateway (or, with --proto raw, the gorilla
examples/chat server) and measures delivery latency from each message's
intended send time, while checking by seq that nothing was lost, duplicated
or reordered. Scenarios: %s.

'chatbench compare --help' describes the side-by-side comparison with the
gorilla examples/chat server.

Exit status: 0 ok, 1 a threshold (--slo-p99, --max-loss, ...) was missed or
the run measured nothing to check it on, 2 bad flags, 3 the run failed (no
connection, a failing --drain-cmd, ...). docs/benchmarks.md has the details.
`, strings.Join(Scenarios, ", "))
	for _, g := range flagGroups {
		fmt.Fprintf(out, "\n%s:\n", g.title)
		for _, name := range g.names {
			if f := fs.Lookup(name); f != nil {
				cli.PrintFlag(out, f, true)
			}
		}
	}
}
