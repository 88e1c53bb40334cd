package bench

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chatgate/chatgate/gateway"
)

// TestConnectExplains429: handshakes refused by the gateway's per-IP limit
// come with the cause and how to spread the source addresses.
func TestConnectExplains429(t *testing.T) {
	g := gatewayConfig()
	g.MaxConnsPerIP = 20
	_, url := startGateway(t, g, gateway.Options{})
	cfg := testConfig(url)
	cfg.Scenario = ScenarioConnect
	cfg.Conns, cfg.ConnectRate, cfg.Hold = 30, 300, 50*time.Millisecond
	var out bytes.Buffer
	res, _ := Run(context.Background(), cfg, Options{Stdout: &out})
	c := res.Connections
	if c.Established != 20 || c.FailuresByStatus["429"] != 10 || c.FailuresByReason["429 too many connections from this address"] != 10 {
		t.Fatalf("connections %+v", c)
	}
	want := "warning       10 handshakes were refused with HTTP 429 (too many connections from this address): the gateway's per-IP limit (--max-conns-per-ip, 200 by default) refused them; the gateway let in about 20 from each of the 1 source address(es) used: spread them over at least 2 with --source-ips 127.0.0.1-127.0.0.2"
	if !strings.Contains(out.String(), want) {
		t.Fatalf("no hint; want\n%s\nin:\n%s", want, out.String())
	}
}

// TestMemoryNeverNegative: an RSS that shrank while connecting gives no
// memory per connection, and the summary says the sample was too noisy.
func TestMemoryNeverNegative(t *testing.T) {
	before := serverSample{cpu: 1, rss: 50 << 20}
	connected := serverSample{cpu: 2, rss: 48 << 20}
	st := serverStats(&sampler{pid: 1}, before, connected, before, connected, 0, 300, 0, true)
	if st.MemBytesPerConn != 0 || !st.MemPerConnNoisy {
		t.Fatalf("%+v", st)
	}
	r := &Result{Scenario: ScenarioConnect, Proto: ProtoChatgate, Server: st, Connections: ConnStats{Attempted: 300, Established: 300}}
	r.warn(&Config{})
	var b bytes.Buffer
	WriteTable(&b, r)
	out := b.String()
	if !strings.Contains(out, "memory per connection: sample too noisy") ||
		!strings.Contains(out, "memory per connection is not reported: the server's RSS went from 50.0 MiB to 48.0 MiB while 300 connections opened") ||
		strings.Contains(out, "-6") {
		t.Fatalf("table:\n%s", out)
	}
}

// TestSlowOverflowsTheQueue runs slow with its flags left to chatbench
// against a real gateway: it sizes stall, text, senders and rate from the
// gateway's welcome.limits (here a 256 KiB queue, a 2 s write timeout and
// the default 10 sends/s per connection, with a shared budget per address
// wide enough for the senders of one source address) and the kernel's
// buffers, and every slow listener is evicted with 4008.
func TestSlowOverflowsTheQueue(t *testing.T) {
	g := gatewayConfig()
	g.SendRate, g.SendBurst = 10, 20
	g.UserSendRate, g.UserSendBurst = 1000, 1000
	g.QueueBytes, g.WriteTimeout = 256<<10, 2*time.Second
	_, url := startGateway(t, g, gateway.Options{})
	cfg := testConfig(url)
	cfg.Scenario = ScenarioSlow
	// Few healthy members: this test is about the slow one, and the race
	// detector makes every delivery costly.
	cfg.Conns, cfg.SlowShare, cfg.Duration = 12, 0.25, 7*time.Second
	cfg.Report = filepath.Join(t.TempDir(), "slow.html")
	var out bytes.Buffer
	res, _ := Run(context.Background(), cfg, Options{Stdout: &out})
	t.Log(out.String())
	s := res.Slow
	if s == nil || s.Plan == nil || s.Members == 0 || s.Evicted != s.Members {
		t.Fatalf("slow %+v", s)
	}
	p := s.Plan
	if strings.Join(p.Sized, ",") != "slow-stall,size,senders,rate" || p.QueueBytes != 256<<10 || p.WriteTimeoutMs != 2000 || p.Problem != "" ||
		!p.StallUntilBlocked || p.KernelBytes <= 0 || res.Params.SendersPerRoom < 2 || res.Params.RatePerSender > 8 {
		t.Fatalf("plan %+v, params %+v", p, res.Params)
	}
	if strings.Contains(out.String(), "slow listeners cannot") || strings.Contains(out.String(), "were not evicted") {
		t.Fatalf("warned:\n%s", out.String())
	}
	// The report marks the evictions and draws the slow listeners apart.
	marks, series := reportMarks(t, cfg.Report)
	if len(marks) == 0 || !strings.HasSuffix(marks[0], " evicted (4008)") || !series["slow listeners p99"] || !series["p99"] {
		t.Fatalf("report marks %q, series %v", marks, series)
	}
	if n := res.Events; len(n) == 0 || n[0].Kind != EventEvicted {
		t.Fatalf("events %+v", n)
	}
}

// TestSlowSaysWhenItCannot: when the limits or the flags given cannot
// make a slow listener overflow the queue, the run says so.
func TestSlowSaysWhenItCannot(t *testing.T) {
	cases := []struct {
		name  string
		set   func(*Config)
		given []string
		want  string
	}{
		{"flags too small", func(c *Config) { c.Conns, c.Rate, c.Size, c.Senders = 20, 10, 64, 1 }, []string{"rate", "size", "senders"},
			"the slow listeners cannot be expected to overflow the gateway's queue: slow listeners receive about "},
		{"too few members", func(c *Config) { c.Conns = 4 }, nil,
			"the slow listeners cannot be expected to overflow the gateway's queue: 3 sender(s) leave 1 listener(s), and --slow-share 0.1 of them is less than one slow listener"},
		// The gateway's default shared budget (twice --send-rate per
		// address) is below what the plan must send from one address.
		{"shared budget", func(c *Config) { c.Conns = 40 }, nil,
			"the slow listeners cannot be expected to overflow the gateway's queue: the senders must send "},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := gatewayConfig()
			g.SendRate, g.SendBurst = 10, 20
			_, url := startGateway(t, g, gateway.Options{})
			cfg := testConfig(url)
			cfg.Scenario = ScenarioSlow
			cfg.Conns, cfg.Duration, cfg.Settle = 10, time.Second, time.Second
			cfg.given = map[string]bool{}
			for _, n := range tc.given {
				cfg.given[n] = true
			}
			tc.set(&cfg)
			var out bytes.Buffer
			Run(context.Background(), cfg, Options{Stdout: &out})
			if !strings.Contains(out.String(), "warning       "+tc.want) {
				t.Fatalf("want the warning\n%s\nin:\n%s", tc.want, out.String())
			}
		})
	}
}
