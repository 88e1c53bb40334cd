package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chatgate/chatgate/gateway"
	"github.com/chatgate/chatgate/gateway/api"
	"github.com/chatgate/chatgate/gateway/hub"
	"github.com/chatgate/chatgate/gateway/observe"
)

// gatewayConfig is the gateway's defaults with limits raised for load, as
// docs/benchmarks.md starts it.
func gatewayConfig() gateway.Config {
	cfg := gateway.DefaultConfig()
	cfg.NodeID = "bench-test"
	cfg.MaxConnsPerIP = 100000
	cfg.HandshakeRate, cfg.HandshakeBurst = 100000, 100000
	cfg.SendRate, cfg.SendBurst = 100000, 100000
	cfg.DrainDelay, cfg.DrainWindow = 0, 0
	return cfg
}

// startGateway runs an in-process gateway on a loopback httptest listener;
// without opts.Broker it gets an in-process hub of its own.
func startGateway(t *testing.T, cfg gateway.Config, opts gateway.Options) (*gateway.Server, string) {
	t.Helper()
	if opts.Broker == nil {
		opts.Broker = newHub(t, opts.Observer)
	}
	srv, err := gateway.New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	srv.SetReady(true)
	ts := httptest.NewServer(srv)
	t.Cleanup(func() {
		srv.BeginDrain()
		srv.ForceClose()
		ts.Close()
		srv.Close()
	})
	return srv, "ws" + strings.TrimPrefix(ts.URL, "http") + "/ws"
}

// newHub is an in-process hub with the default room settings, closed when
// the test ends (after the gateways started later, which close first).
func newHub(t *testing.T, obs observe.Observer) *hub.Hub {
	h := hub.New(hub.Config{Observer: obs})
	t.Cleanup(h.Close)
	return h
}

func TestEndToEndFanout(t *testing.T) {
	_, url := startGateway(t, gatewayConfig(), gateway.Options{})
	cfg := testConfig(url)
	cfg.Scenario = ScenarioFanout
	cfg.Conns, cfg.Senders, cfg.Rate = 40, 2, 50
	cfg.Duration, cfg.Settle = 1500*time.Millisecond, 5*time.Second
	cfg.MaxLoss = LossLimit{Given: true}
	cfg.MaxDup, cfg.MaxOutOfOrder = 0, 0
	report := filepath.Join(t.TempDir(), "out.html")
	cfg.Report = report
	var out bytes.Buffer
	res, code := Run(context.Background(), cfg, Options{Stdout: &out})
	t.Log(out.String())
	if code != ExitOK {
		t.Fatalf("exit %d", code)
	}
	c := res.Correctness
	// 2 senders × 50/s × 1.5 s = 150 messages to 40 members.
	if c.MembersChecked != 40 || c.Expected != 150*40 || c.Lost != 0 || c.Duplicated != 0 || c.OutOfOrder != 0 || c.Unconfirmed != 0 {
		t.Fatalf("correctness %+v", c)
	}
	if res.Messages.Sent != 150 || res.Messages.Acked != 150 || res.Latency.Count != 150*40 {
		t.Fatalf("messages %+v latency %+v", res.Messages, res.Latency)
	}
	if res.Connections.Established != 40 || res.Connections.ConnectLatency.Count != 40 || len(res.Timeline) == 0 {
		t.Fatalf("connections %+v, %d timeline points", res.Connections, len(res.Timeline))
	}
	checkHTML(t, report)
}

// TestEndToEndViaAPI: with --via api the senders publish through the
// server API; every member, the senders included, gets every message once
// and in order, each publish's answer is its ack, and the API counted
// every publish.
func TestEndToEndViaAPI(t *testing.T) {
	h := newHub(t, nil)
	_, url := startGateway(t, gatewayConfig(), gateway.Options{Broker: h})
	dir := t.TempDir()
	const key = "bench-0123456789abcdef0123456789abcdef"
	keys, keyFile := filepath.Join(dir, "keys.json"), filepath.Join(dir, "key")
	if err := os.WriteFile(keys, []byte(`{"keys":[{"name":"bench","key":"`+key+`","scopes":["publish"]}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, []byte(key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	acfg := api.DefaultConfig()
	acfg.Addr, acfg.KeysFile, acfg.Rate, acfg.Burst = "127.0.0.1:0", keys, 10000, 10000
	counts := &apiCounts{}
	ah, err := api.New(acfg, api.Deps{Broker: h, MaxTextBytes: 4096, Metrics: counts})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(ah)
	t.Cleanup(func() { ts.Close(); ah.Close() })

	cfg := testConfig(url)
	cfg.Scenario = ScenarioRooms
	cfg.Via, cfg.APIURL, cfg.APIKeyFile = ViaAPI, ts.URL, keyFile
	cfg.Conns, cfg.Rooms, cfg.Senders, cfg.Rate = 20, 2, 2, 40
	cfg.Duration, cfg.Settle = 1500*time.Millisecond, 5*time.Second
	cfg.MaxLoss = LossLimit{Given: true}
	cfg.MaxDup, cfg.MaxOutOfOrder = 0, 0
	var out bytes.Buffer
	res, code := Run(context.Background(), cfg, Options{Stdout: &out})
	t.Log(out.String())
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, res.Error)
	}
	// 2 rooms × 2 senders × 40/s × 1.5 s = 240 messages, each to its
	// room's 10 members.
	c := res.Correctness
	if res.Params.Via != ViaAPI || res.Messages.Sent != 240 || res.Messages.Acked != 240 || c.Unconfirmed != 0 {
		t.Fatalf("via %q, messages %+v, correctness %+v", res.Params.Via, res.Messages, c)
	}
	if c.MembersChecked != 20 || c.Expected != 240*10 || c.Lost != 0 || c.Duplicated != 0 || c.OutOfOrder != 0 || res.Latency.Count != 240*10 {
		t.Fatalf("correctness %+v latency %+v", c, res.Latency)
	}
	if got := counts.ok.Load(); got != 240 {
		t.Fatalf("the API answered %d publishes ok; the bench sent 240", got)
	}
}

// apiCounts counts the API's successful publishes.
type apiCounts struct{ ok atomic.Int64 }

func (a *apiCounts) APIRequest(e observe.APIEndpoint, result string, _ time.Duration) {
	if e == observe.APIPublish && result == "ok" {
		a.ok.Add(1)
	}
}

// checkHTML checks the report is one self-contained page.
func checkHTML(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	page := string(b)
	for _, want := range []string{"<!doctype html>", "<svg", "Latency over time", "Latency histogram", "Correctness", "<polyline", "<rect"} {
		if !strings.Contains(page, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	for _, banned := range []string{"<script", "src=", "<link", "@import", "url("} {
		if strings.Contains(page, banned) {
			t.Errorf("report is not self-contained: has %q", banned)
		}
	}
}

// TestEndToEndSlow: slow listeners are evicted with 4008 while the healthy
// ones lose nothing.
func TestEndToEndSlow(t *testing.T) {
	gcfg := gatewayConfig()
	// A half MiB queue holds 1.3 s of this traffic: healthy members ride
	// out a hiccup of the (race-instrumented) bench, while a slow one,
	// which stops reading for the rest of the window, overflows it.
	gcfg.QueueBytes = 512 << 10
	_, url := startGateway(t, gcfg, gateway.Options{})
	cfg := testConfig(url)
	cfg.Scenario = ScenarioSlow
	// 400 KiB/s to each listener fills the queue and the kernel's
	// buffers (about 1 MiB on loopback) in under 4 s of the 6 s window,
	// with room for a busy machine's sender lag.
	cfg.Conns, cfg.Senders, cfg.Rate, cfg.Size = 10, 2, 50, 4000
	cfg.SlowShare, cfg.SlowAfter, cfg.SlowStall = 0.25, 200*time.Millisecond, 0
	cfg.given = map[string]bool{"senders": true, "rate": true, "size": true, "slow-stall": true}
	cfg.Duration, cfg.Settle = 6*time.Second, 5*time.Second
	var out bytes.Buffer
	res, code := Run(context.Background(), cfg, Options{Stdout: &out})
	t.Log(out.String())
	if code != ExitOK {
		t.Fatalf("exit %d", code)
	}
	s := res.Slow
	if s == nil || s.Members != 2 || s.Evicted != 2 || s.CloseCodes["4008"] != 2 {
		t.Fatalf("slow %+v", s)
	}
	c := res.Correctness
	if c.MembersChecked != 8 || c.Lost != 0 || c.Duplicated != 0 || c.OutOfOrder != 0 || c.Expected != res.Messages.Sent*8 {
		t.Fatalf("healthy members: %+v (sent %d)", c, res.Messages.Sent)
	}
	if res.CloseCodes["4008"] != 2 || len(res.CloseCodes) != 1 {
		t.Fatalf("close codes %v", res.CloseCodes)
	}
	if res.SlowLatency == nil || res.Latency.Count == 0 {
		t.Fatal("no latency split")
	}
}

// TestEndToEndDrain drains one of two gateways that share a hub: its
// members reconnect to the other, rejoin with since, and nothing is lost.
func TestEndToEndDrain(t *testing.T) {
	a, urlA, urlB := sharedHub(t, 10000, 200*time.Millisecond)
	cfg := testConfig(urlA)
	cfg.URLs = []string{urlA, urlB}
	cfg.Scenario = ScenarioDrain
	cfg.Conns, cfg.Rooms, cfg.Senders, cfg.Rate = 12, 2, 2, 40
	cfg.Duration, cfg.DrainAt, cfg.Settle = 2*time.Second, 500*time.Millisecond, 5*time.Second
	drained := false
	var out bytes.Buffer
	res, code := Run(context.Background(), cfg, Options{Stdout: &out, Drain: func(ctx context.Context) error {
		drained = true
		a.BeginDrain()
		a.CloseClients(ctx, 100*time.Millisecond)
		return nil
	}})
	t.Log(out.String())
	if code != ExitOK || !drained {
		t.Fatalf("exit %d, drained %v", code, drained)
	}
	c, d := res.Correctness, res.Drain
	// Members alternate between the URLs: the 6 on A come back on B.
	if d == nil || d.Reconnects != 6 || d.ResumeFailed != 0 || c.Rejoins != 6 || c.RecoveredJoins != 6 || c.UnrecoveredJoins != 0 {
		t.Fatalf("drain %+v correctness %+v", d, c)
	}
	if c.MembersChecked != 12 || c.Lost != 0 || c.Duplicated != 0 || c.OutOfOrder != 0 {
		t.Fatalf("correctness %+v", c)
	}
	if res.CloseCodes["1001"] != 6 {
		t.Fatalf("close codes %v", res.CloseCodes)
	}
}

func TestEndToEndConnectAndChurn(t *testing.T) {
	_, url := startGateway(t, gatewayConfig(), gateway.Options{})
	t.Run("connect", func(t *testing.T) {
		cfg := testConfig(url)
		cfg.Scenario = ScenarioConnect
		cfg.Conns, cfg.ConnectRate, cfg.Hold = 60, 300, 100*time.Millisecond
		cfg.SourceIPs, _ = ParseSourceIPs("127.0.0.1-127.0.0.3")
		cfg.MaxConnectErrors = 0
		res, code := Run(context.Background(), cfg, Options{})
		if code != ExitOK || res.Connections.Established != 60 || res.Connections.ConnectLatency.Count != 60 || res.Connections.HandshakesPerS <= 0 {
			t.Fatalf("exit %d: %+v", code, res.Connections)
		}
		// The storm's CPU (here the in-process gateway's too) is counted.
		if res.ClientCPUCores <= 0 {
			t.Fatalf("client CPU %v over the storm", res.ClientCPUCores)
		}
		t.Logf("client cpu %v", res.ClientCPUCores)
	})
	t.Run("churn", func(t *testing.T) {
		cfg := testConfig(url)
		cfg.Scenario = ScenarioChurn
		cfg.Conns, cfg.Rooms, cfg.Senders, cfg.Rate = 10, 2, 1, 20
		cfg.ConnectRate, cfg.ChurnHold = 40, 200*time.Millisecond
		cfg.Duration, cfg.Settle = time.Second, 3*time.Second
		res, code := Run(context.Background(), cfg, Options{})
		ch := res.Churn
		if code != ExitOK || ch == nil || ch.Arrivals != 40 || ch.Joined != 40 || ch.Failed != 0 || ch.JoinLatency.Count != 40 {
			t.Fatalf("exit %d churn %+v errors %v", code, ch, res.Errors)
		}
		if res.Correctness.Lost != 0 || res.Correctness.MembersChecked != 10 || res.Messages.PresenceFrames == 0 {
			t.Fatalf("correctness %+v presence %d", res.Correctness, res.Messages.PresenceFrames)
		}
	})
}

// TestJSONShape pins the documented top-level and nested field names of
// --json: renaming one breaks this test (and the scripts that read it).
func TestJSONShape(t *testing.T) {
	f := newFakeServer(t, false, nil)
	cfg := testConfig(f.url())
	cfg.Conns, cfg.Senders, cfg.Rate, cfg.Messages = 3, 1, 100, 5
	cfg.Duration, cfg.Settle = time.Second, time.Second
	cfg.JSON = true
	var out bytes.Buffer
	_, code := Run(context.Background(), cfg, Options{Stdout: &out})
	if code != ExitOK {
		t.Fatalf("exit %d", code)
	}
	var obj map[string]any
	dec := json.NewDecoder(&out)
	if err := dec.Decode(&obj); err != nil {
		t.Fatal(err)
	}
	if dec.More() {
		t.Fatal("more than one JSON value on stdout")
	}
	want := map[string][]string{
		"":            {"schema", "bench_id", "scenario", "proto", "target", "started_at", "params", "window_s", "connections", "messages", "latency", "correctness", "close_codes", "errors", "timeline", "events", "histogram", "thresholds", "warnings", "client_cpu_cores"},
		"params":      {"conns", "rooms", "senders_per_room", "rate_per_sender", "size_bytes", "duration_s", "messages_per_sender", "connect_rate", "slow_share", "source_ips", "via", "target_deliveries_per_s"},
		"connections": {"attempted", "established", "failed", "connect_latency", "failures_by_status", "failures_by_reason", "handshakes_per_s"},
		"messages":    {"sent", "acked", "rejected", "write_failed", "deliveries", "deliveries_per_s", "sent_per_s", "sender_max_lag_us", "sends_late", "error_codes", "presence_frames"},
		"latency":     {"count", "p50_us", "p90_us", "p99_us", "p999_us", "max_us", "mean_us"},
		"correctness": {"members_checked", "members_excluded", "excluded_by", "expected", "received", "lost", "missing_at_end", "loss_ratio", "duplicated", "out_of_order", "rejoins", "recovered_joins", "unrecovered_joins", "healed_by_replay", "unconfirmed", "foreign"},
		"thresholds":  {"checked", "violations", "passed"},
	}
	for section, keys := range want {
		m := obj
		if section != "" {
			m, _ = obj[section].(map[string]any)
		}
		var got []string
		for k := range m {
			got = append(got, k)
		}
		for _, k := range keys {
			if _, ok := m[k]; !ok {
				t.Errorf("%s: missing %q (has %v)", section, k, got)
			}
		}
		if section != "" && len(m) != len(keys) {
			t.Errorf("%s: has %d fields %v, documented %d", section, len(m), got, len(keys))
		}
	}
	if obj["schema"] != SchemaVersion {
		t.Errorf("schema %v", obj["schema"])
	}
	for _, arr := range []string{"timeline", "events", "histogram", "warnings", "target"} {
		if _, ok := obj[arr].([]any); !ok {
			t.Errorf("%s is %T, want an array", arr, obj[arr])
		}
	}
	for _, o := range []string{"close_codes", "errors"} {
		if _, ok := obj[o].(map[string]any); !ok {
			t.Errorf("%s is %T, want an object", o, obj[o])
		}
	}
	// And it decodes back into Result without unknown fields.
	b, _ := json.Marshal(obj)
	var r Result
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&r); err != nil {
		t.Fatal(err)
	}
	if r.Correctness.Expected != 15 || !reflect.DeepEqual(r.Target, cfg.URLs) {
		t.Fatalf("round trip: %+v", r.Correctness)
	}
}

// TestServerUnreachable fails with exit 3 and still reports.
func TestServerUnreachable(t *testing.T) {
	ts := httptest.NewServer(http.NotFoundHandler())
	url := "ws" + strings.TrimPrefix(ts.URL, "http") + "/ws"
	ts.Close()
	cfg := testConfig(url)
	cfg.Conns, cfg.Senders = 3, 1
	cfg.JSON = true
	var out bytes.Buffer
	res, code := Run(context.Background(), cfg, Options{Stdout: &out})
	if code != ExitFailed || res.Error != "no connection could be established (errors: connect_refused=3)" || res.Errors["connect_refused"] != 3 {
		t.Fatalf("exit %d error %q errors %v", code, res.Error, res.Errors)
	}
	if !strings.Contains(out.String(), `"error"`) {
		t.Fatalf("JSON lacks the error: %s", out.String())
	}
}

// TestIdleWindowLastsDuration: a traffic run with no senders still holds
// its connections for the whole --duration (what the comparison harness's
// idle-memory scenario relies on), and reports the server's RSS at its end.
func TestIdleWindowLastsDuration(t *testing.T) {
	_, url := startGateway(t, gatewayConfig(), gateway.Options{})
	cfg := testConfig(url)
	cfg.Scenario = ScenarioFanout
	cfg.Conns, cfg.Senders = 20, 0
	cfg.Duration = 700 * time.Millisecond
	cfg.ServerPID = os.Getpid() // the gateway runs in this process
	began := time.Now()
	res, code := Run(context.Background(), cfg, Options{})
	took := time.Since(began)
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, res.Error)
	}
	if took < cfg.Duration {
		t.Fatalf("the run took %v, less than its %v window", took, cfg.Duration)
	}
	if res.WindowS != 0.7 || res.Connections.Established != 20 || res.Correctness.MembersChecked != 20 {
		t.Fatalf("window %v s, connections %+v, correctness %+v", res.WindowS, res.Connections, res.Correctness)
	}
	if res.Server == nil || res.Server.RSSEndBytes <= 0 || res.Server.RSSBeforeBytes <= 0 {
		t.Fatalf("server %+v", res.Server)
	}
}
