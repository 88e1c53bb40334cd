package dashboards

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"

	"github.com/chatgate/chatgate/internal/gatewaytest"
	"github.com/chatgate/chatgate/internal/natstest"
	"github.com/chatgate/chatgate/internal/wstest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const (
	e2eNamespace = "e2e"
	e2ePod       = "p1"
	waitLimit    = 20 * time.Second
	// floodTextBytes is the flooder's message size: large, so the slow
	// consumer's socket buffers fill quickly (--max-text-bytes allows it).
	floodTextBytes = 16000
)

// grafanaVars are the substitutions Grafana would make, longest names first.
var grafanaVars = strings.NewReplacer(
	"${namespace}", e2eNamespace, "${pod}", e2ePod,
	"$namespace", e2eNamespace, "$pod", e2ePod,
	"$__rate_interval", "1m", "$__interval_ms", "15000", "$__interval", "15s",
	"$__range_ms", "300000", "$__range_s", "300", "$__range", "5m",
)

// TestE2EDashboardAndAlerts runs the real gateway binary in cluster mode
// (its backplane an embedded single-node NATS JetStream server), scraped
// every second by a real Prometheus, and drives it through chat, a slow
// consumer, a rate-limit abuser, a refused origin, a history replay, a NATS
// outage and a drain. Then every dashboard query and every alert expression
// is evaluated through Prometheus's HTTP API, at the moment a scrape showed
// the drain.
//
// Dashboard queries get Grafana's variables substituted ($namespace → e2e,
// $pod → p1, $__rate_interval → 1m, …) and must return at least one series
// with a number (not NaN). Alert expressions are evaluated twice: as
// written (logged: an empty result just means "not firing"), and with every
// comparison turned into its bool form (x > 0.25 → x > bool 0.25), which
// keeps the series and yields 0 or 1 instead of filtering; that form must
// return series, proving each alert reads data that exists. The rules are
// also loaded into the Prometheus, which must evaluate them without error;
// the outage must make ChatgateBackplaneDown and
// ChatgateBackplanePublishErrors pending there, and the drain
// ChatgateDrainOverrunning and ChatgateNoReadyReplicas.
func TestE2EDashboardAndAlerts(t *testing.T) {
	promBin, err := exec.LookPath("/usr/bin/prometheus")
	if err != nil {
		promBin, err = exec.LookPath("prometheus")
	}
	switch {
	case err != nil && os.Getenv("CHATGATE_E2E") == "1":
		t.Fatalf("CHATGATE_E2E=1 but no prometheus binary (%v); install the Debian package prometheus (.ci/run does)", err)
	case err != nil:
		t.Skip("skipping: needs a Prometheus server binary (apt-get install prometheus); set CHATGATE_E2E=1 to make its absence fail")
	case testing.Short() && os.Getenv("CHATGATE_E2E") != "1":
		t.Skip("skipping in -short mode: starts the gateway and Prometheus")
	}
	started := time.Now()
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{}}
	t.Cleanup(hc.CloseIdleConnections)

	// The NATS server's cleanup is registered before the gateway's, so it
	// runs after the gateway is gone.
	nats := natstest.Start(t, "e2e-nats")
	keysFile := filepath.Join(t.TempDir(), "api-keys.json")
	if err := os.WriteFile(keysFile, []byte(`{"keys":[{"name":"e2e","key":"`+e2eAPIKey+`","scopes":["publish","moderate","read"]}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	gw := startGatewayProc(t, gatewaytest.Build(t),
		"--api-addr", "127.0.0.1:0", "--api-keys-file", keysFile,
		"--backplane", nats.URL(), "--stream-replicas", "1", "--node-id", "e2e-"+e2ePod,
		"--send-rate", "200", "--send-burst", "10",
		"--max-text-bytes", strconv.Itoa(floodTextBytes), "--max-frame-bytes", "98304",
		"--abuse-strikes", "3",
		"--queue-bytes", "131072",
		"--drain-delay", "2s", "--drain-window", "3s", "--shutdown-timeout", "15s",
		"--presence-interval", "100ms",
	)
	prom := startPrometheus(t, promBin, gw.AdminAddr, hc)
	t.Logf("gateway built and started, Prometheus ready after %v", time.Since(started).Round(time.Millisecond))
	prom.waitFor(t, "the gateway being scraped", `up{job="chatgate"} == 1`)
	// Chat needs the backplane: wait until the gateway has connected to
	// NATS and created the stream.
	waitUntil(t, "/readyz to succeed (backplane up)", func() bool { return gw.status(hc, "/readyz") == http.StatusOK })

	chatter := driveTraffic(t, gw, hc)
	t.Logf("traffic done after %v", time.Since(started).Round(time.Millisecond))

	// Wait until Prometheus has scraped the state the traffic left.
	sel := func(metric, extra string) string {
		s := fmt.Sprintf(`%s{namespace=%q, pod=%q`, metric, e2eNamespace, e2ePod)
		if extra != "" {
			s += ", " + extra
		}
		return s + "}"
	}
	for _, q := range []string{
		sel("chatgate_messages_published_total", "") + " > 0",
		sel("chatgate_messages_delivered_total", "") + " > 0",
		sel("chatgate_broadcast_latency_seconds_count", "") + " > 0",
		sel("chatgate_disconnects_total", `reason="slow_consumer"`) + " > 0",
		sel("chatgate_disconnects_total", `reason="rate_abuse"`) + " > 0",
		sel("chatgate_rate_limited_total", "") + " > 0",
		sel("chatgate_messages_rejected_total", `reason="rate_limited"`) + " > 0",
		sel("chatgate_connections_rejected_total", `reason="origin"`) + " > 0",
		sel("chatgate_history_replayed_total", "") + " > 0",
		sel("chatgate_presence_events_total", "") + " > 0",
		sel("chatgate_rooms", "") + " > 0",
		sel("chatgate_connections", "") + " > 0",
		sel("chatgate_ready", "") + " == 1",
		sel("chatgate_backplane_up", "") + " == 1",
		sel("chatgate_backplane_publish_duration_seconds_count", "") + " > 0",
		sel("chatgate_backplane_rooms", "") + " > 0",
		sel("chatgate_backplane_repairing_rooms", "") + " >= 0",
		sel("chatgate_backplane_repairs_total", `cause="resync"`) + " >= 0",
		sel("chatgate_backplane_live_gaps_total", "") + " >= 0",
		sel("chatgate_backplane_presence_sync_age_seconds", "") + " >= 0",
		sel("chatgate_backplane_publish_conflicts_total", "") + " >= 0",
		sel("chatgate_backplane_publish_errors_total", "") + " == 0",
		sel("chatgate_backplane_delivery_gaps_total", "") + " == 0",
	} {
		prom.waitFor(t, "the traffic to be scraped", q)
	}
	t.Logf("Prometheus saw the traffic after %v", time.Since(started).Round(time.Millisecond))

	// A NATS outage: the gateway stays up but unready, and a send is
	// answered unavailable without being stored. Then NATS comes back on
	// the same port and store, and chat resumes without a restart.
	nats.Stop()
	waitUntil(t, "/readyz to fail without NATS", func() bool { return gw.status(hc, "/readyz") == http.StatusServiceUnavailable })
	chatter.Send(map[string]any{"type": "send", "room": "lobby", "text": "lost", "ref": "outage"})
	chatter.WaitEnv("unavailable for the send during the outage", func(e wstest.Env) bool {
		return e.Type() == "error" && e.Str("code") == "unavailable" && e.Str("ref") == "outage"
	})
	prom.waitFor(t, "a scrape of the outage", sel("chatgate_backplane_up", "")+" == 0"+
		" and on (instance) "+sel("chatgate_backplane_publish_errors_total", "")+" > 0")
	for _, alert := range []string{"ChatgateBackplaneDown", "ChatgateBackplanePublishErrors"} {
		prom.waitFor(t, alert+" pending in Prometheus",
			fmt.Sprintf(`max_over_time(ALERTS{alertname=%q, alertstate="pending", namespace=%q, pod=%q}[5m])`, alert, e2eNamespace, e2ePod))
	}
	if chatter.Count(func(e wstest.Env) bool { return e.Type() == "ack" && e.Str("ref") == "outage" }) > 0 {
		t.Error("a send during the outage was acked")
	}
	nats.Restart()
	waitUntil(t, "/readyz to succeed once NATS is back", func() bool { return gw.status(hc, "/readyz") == http.StatusOK })
	chatter.Send(map[string]any{"type": "send", "room": "lobby", "text": "back", "ref": "recovered"})
	chatter.WaitEnv("the ack of a send after the outage", func(e wstest.Env) bool { return e.Type() == "ack" && e.Str("ref") == "recovered" })
	// Back on NATS, every room the gateway serves reads what it missed
	// from the stream (a resync repair).
	prom.waitFor(t, "a scrape of the recovery", sel("chatgate_backplane_up", "")+" == 1"+
		" and on (instance) "+sel("chatgate_backplane_repairs_total", `cause="resync"`)+" > 0")
	t.Logf("NATS outage and recovery seen after %v", time.Since(started).Round(time.Millisecond))

	// The server API, just before the drain so its rates are in the
	// window the queries are evaluated over.
	driveAPI(t, gw, hc, chatter)
	prom.waitFor(t, "the API traffic to be scraped",
		sel("chatgate_api_requests_total", `endpoint="publish", code="ok"`)+" > 0"+
			" and on (instance) "+sel("chatgate_api_requests_total", `endpoint="rooms", code="unauthorized"`)+" > 0"+
			" and on (instance) "+sel("chatgate_disconnects_total", `reason="kicked"`)+" > 0")

	// Drain: readiness fails at once, a new connection is refused, and the
	// clients are closed over the drain window while /metrics stays up.
	connected := gw.metric(hc, "chatgate_connections")
	if connected < 1 {
		t.Fatalf("chatgate_connections = %v before the drain; want the chatters", connected)
	}
	if err := gw.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "/readyz to fail after SIGTERM", func() bool { return gw.status(hc, "/readyz") == http.StatusServiceUnavailable })
	if _, resp, err := websocket.DefaultDialer.Dial("ws://"+gw.ChatAddr+"/ws", nil); err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("dial while draining: err=%v resp=%v; want 503", err, resp)
	}
	at := prom.waitFor(t, "a scrape of the drain",
		sel("chatgate_draining", "")+" == 1"+
			" and on (instance) "+sel("chatgate_ready", "")+" == 0"+
			" and on (instance) "+sel("chatgate_disconnects_total", `reason="drain"`)+" > 0"+
			" and on (instance) "+sel("chatgate_connections_rejected_total", `reason="draining"`)+" > 0")
	evalTime := at.Time
	t.Logf("evaluating every query at %s, the scrape showing the drain", evalTime.Format(time.RFC3339Nano))
	for _, alert := range []string{"ChatgateDrainOverrunning", "ChatgateNoReadyReplicas"} {
		prom.waitFor(t, alert+" pending in Prometheus",
			fmt.Sprintf(`max_over_time(ALERTS{alertname=%q, alertstate="pending", namespace=%q}[5m])`, alert, e2eNamespace))
	}
	// The drain's outcome outlives its last client: the summary line and
	// a scrape of the final counts (the admin listener lingers) agree with
	// the connections the drain started with.
	summary := gw.LogRecord(t, "drain summary", waitLimit)
	closed, _ := summary["closed"].(map[string]any)
	if summary["clients"] != connected || closed["drain"] != connected || summary["clean"] != true {
		t.Fatalf("drain summary %v; want all %v connections closed by the drain", summary, connected)
	}
	final := prom.waitFor(t, "a scrape of the drain's final counts",
		sel("chatgate_drain_remaining_connections", "")+" == 0"+
			" and on (instance) "+sel("chatgate_draining", "")+" == 1"+
			" and on (instance) "+sel("chatgate_disconnects_total", `reason="drain"`)+fmt.Sprintf(" == %v", connected))
	t.Logf("Prometheus scraped the drain's final counts (%v drain closes, 0 left) at %s; summary %v",
		connected, final.Time.Format(time.RFC3339Nano), summary)
	select {
	case <-gw.Exited:
		if gw.ExitErr() != nil {
			t.Errorf("gateway exited with %v after the drain; want 0", gw.ExitErr())
		}
	case <-time.After(waitLimit):
		t.Error("gateway did not exit after the drain")
	}

	var failures []string
	fail := func(format string, args ...any) { failures = append(failures, fmt.Sprintf(format, args...)) }

	// The dashboard's variables resolve the way Grafana asks for them.
	for _, v := range []struct{ label, match, want string }{
		{"namespace", "chatgate_build_info", e2eNamespace},
		{"pod", grafanaVars.Replace(`chatgate_build_info{namespace=~"$namespace"}`), e2ePod},
	} {
		vals, err := prom.labelValues(v.label, v.match)
		if err != nil || !slices.Contains(vals, v.want) {
			fail("variable %s: label_values(%s, %s) = %q, %v; want %q", v.label, v.match, v.label, vals, err, v.want)
		}
	}

	// Every dashboard query returns numbers.
	d := loadDashboard(t)
	queries := 0
	for _, p := range dataPanels(d) {
		for _, tg := range p.Targets {
			queries++
			expr := grafanaVars.Replace(tg.Expr)
			name := fmt.Sprintf("panel %q target %s", p.Title, tg.RefID)
			if strings.Contains(expr, "$") {
				fail("%s: unsubstituted variable in %s", name, expr)
				continue
			}
			res, err := prom.query(expr, evalTime)
			switch {
			case err != nil:
				fail("%s: %v\n    %s", name, err, expr)
			case len(res) == 0:
				fail("%s: no series\n    %s", name, expr)
			case res.allNaN():
				fail("%s: only NaN (no data in the window)\n    %s", name, expr)
			default:
				t.Logf("ok  %s: %d series, first %s", name, len(res), res[0])
			}
		}
	}

	// Every alert expression parses, runs, and reads existing data.
	for _, r := range loadRules(t).Groups[0].Rules {
		queries++
		res, err := prom.query(r.Expr, evalTime)
		if err != nil {
			fail("alert %s: %v\n    %s", r.Alert, err, r.Expr)
			continue
		}
		state := "not firing"
		if len(res) > 0 {
			state = "condition true for " + res[0].String()
		}
		inner, err := boolComparisons(r.Expr)
		if err != nil {
			fail("alert %s: %v", r.Alert, err)
			continue
		}
		res, err = prom.query(inner, evalTime)
		switch {
		case err != nil:
			fail("alert %s (bool form): %v\n    %s", r.Alert, err, inner)
		case len(res) == 0:
			fail("alert %s (bool form): no series\n    %s", r.Alert, inner)
		default:
			t.Logf("ok  alert %s: %s; bool form %s", r.Alert, state, res[0])
		}
	}

	// Prometheus itself loaded and evaluated every rule.
	health, err := prom.ruleHealth()
	if err != nil {
		fail("rules API: %v", err)
	}
	for _, name := range wantAlerts {
		if h := health[name]; h != "ok" {
			fail("alert %s: Prometheus reports rule health %q", name, h)
		}
	}

	if len(failures) > 0 {
		t.Errorf("%d of %d queries and checks failed:\n  %s", len(failures), queries, strings.Join(failures, "\n  "))
	}
	t.Logf("%d queries evaluated; whole run took %v", queries, time.Since(started).Round(time.Millisecond))
}

// ---- the traffic ----

// driveTraffic runs every scenario the dashboard has panels for and leaves
// three chatters and a history reader connected for the drain. It returns
// one of the chatters, joined to the lobby.
func driveTraffic(t *testing.T, gw *gatewayProc, hc *http.Client) *wsClient {
	t.Helper()
	base := "ws://" + gw.ChatAddr + "/ws"

	// Chatters in the lobby, each acking its own messages.
	var chatters []*wsClient
	for i := range 3 {
		c := dialClient(t, base+fmt.Sprintf("?room=lobby&name=chatter%d", i))
		c.WaitEnv("joined lobby", func(e wstest.Env) bool { return e.Type() == "joined" && e.Str("room") == "lobby" })
		chatters = append(chatters, c)
	}
	for i, c := range chatters {
		for j := range 3 {
			c.Send(map[string]any{"type": "send", "room": "lobby", "text": fmt.Sprintf("hello %d", j), "ref": fmt.Sprintf("c%d-%d", i, j)})
		}
	}
	for i, c := range chatters {
		c.WaitEnv("acks", func(e wstest.Env) bool { return e.Type() == "ack" && e.Str("ref") == fmt.Sprintf("c%d-2", i) })
	}

	// A slow consumer: a tiny receive buffer and no reading, in a room
	// where a flooder sends large messages until the gateway evicts it.
	// The flooder paces itself under --send-rate and keeps at most
	// floodWindow of its own messages undelivered to itself, so its own
	// queue stays far below --queue-bytes however the machine is loaded:
	// only the slow consumer can be evicted.
	const floodWindow = 3
	flooder := dialClient(t, base+"?room=flood&name=flooder")
	flooder.WaitEnv("joined flood", func(e wstest.Env) bool { return e.Type() == "joined" && e.Str("room") == "flood" })
	slow := dialSlowConsumer(t, base+"?room=flood&name=slow")
	flooder.WaitEnv("the slow consumer's presence", func(e wstest.Env) bool { return e.Type() == "presence" && e.U64("online") >= 2 })
	text := strings.Repeat("x", floodTextBytes)
	floodStart := time.Now()
	evicted := func() bool { return gw.metric(hc, `chatgate_disconnects_total{reason="slow_consumer"}`) >= 1 }
	sent := 0
	func() {
		tick := time.NewTicker(10 * time.Millisecond) // 100/s, under --send-rate
		defer tick.Stop()
		deadline := time.NewTimer(waitLimit)
		defer deadline.Stop()
		for i := 0; i%10 != 0 || !evicted(); i++ {
			select {
			case <-deadline.C:
				t.Fatalf("the slow consumer was not evicted after %d messages of %d bytes", sent, len(text))
			case <-tick.C:
			}
			echoed := flooder.Count(func(e wstest.Env) bool { return e.Type() == "message" && e.Str("room") == "flood" })
			if sent-echoed < floodWindow {
				flooder.Send(map[string]any{"type": "send", "room": "flood", "text": text})
				sent++
			}
		}
	}()
	t.Logf("traffic: slow consumer evicted after %d messages in %v", sent, time.Since(floodStart).Round(time.Millisecond))
	if code := drainToClose(slow); code != 4008 {
		t.Errorf("slow consumer closed with %d; want 4008", code)
	}
	if n := gw.metric(hc, `chatgate_disconnects_total{reason="slow_consumer"}`); n != 1 {
		t.Errorf("%v slow-consumer evictions; want exactly the slow consumer's", n)
	}
	if rl := flooder.Count(func(e wstest.Env) bool { return e.Type() == "error" }); rl > 0 {
		t.Errorf("the flooder got %d error envelopes while pacing under the limits", rl)
	}

	// A rate-limit abuser: a burst far over --send-burst earns rate_limited
	// errors, then 1008 after --abuse-strikes.
	abuser := dialClient(t, base+"?room=abuse&name=abuser")
	abuser.WaitEnv("joined abuse", func(e wstest.Env) bool { return e.Type() == "joined" })
	for i := range 60 {
		if abuser.TrySend(map[string]any{"type": "send", "room": "abuse", "text": "spam", "ref": strconv.Itoa(i)}) != nil {
			break
		}
	}
	abuser.WaitEnv("a rate_limited error", func(e wstest.Env) bool { return e.Type() == "error" && e.Str("code") == "rate_limited" })
	if code := abuser.WaitClosed(); code != websocket.ClosePolicyViolation {
		t.Errorf("abuser closed with %d; want 1008", code)
	}
	t.Logf("traffic: abuser closed with 1008")

	// A browser from a foreign origin is refused before the upgrade.
	_, resp, err := websocket.DefaultDialer.Dial(base, http.Header{"Origin": {"https://evil.example"}})
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("foreign origin: err=%v resp=%v; want 403", err, resp)
	}

	// A late joiner replays the last messages from history.
	lobby := wstest.Seqs(chatters[0].Snapshot(), "lobby")
	last := lobby[len(lobby)-1]
	late := dialClient(t, base+"?name=late")
	late.WaitEnv("welcome", func(e wstest.Env) bool { return e.Type() == "welcome" })
	late.Send(map[string]any{"type": "join", "room": "lobby", "since": last - 5})
	late.WaitEnv("the replayed messages", func(e wstest.Env) bool { return e.Type() == "message" && e.U64("seq") == last })
	if n := late.Count(func(e wstest.Env) bool { return e.Type() == "message" }); n < 5 {
		t.Errorf("late joiner got %d messages; want the 5 since %d replayed", n, last-5)
	}
	return chatters[0]
}

// e2eAPIKey is the server API key the gateway is started with.
const e2eAPIKey = "e2e-0123456789abcdef0123456789abcdef"

// driveAPI calls every kind of server API endpoint: publishes that reach
// the chatter, reads, a refused key, and a kick of a client of its own
// (gone before it returns, so the drain's counts are the chatters').
func driveAPI(t *testing.T, gw *gatewayProc, hc *http.Client, chatter *wsClient) {
	t.Helper()
	call := func(key, method, path, body string, want int) {
		t.Helper()
		req, err := http.NewRequest(method, "http://"+gw.APIAddr+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("%s %s: %d %s; want %d", method, path, resp.StatusCode, b, want)
		}
	}
	for i := range 5 {
		call(e2eAPIKey, "POST", "/v1/publish", fmt.Sprintf(`{"room":"lobby","text":"notice %d","sender":"Ops"}`, i), http.StatusOK)
	}
	chatter.WaitEnv("the last system message", func(e wstest.Env) bool {
		return e.Type() == "message" && e["system"] == true && e.Str("text") == "notice 4"
	})
	call(e2eAPIKey, "GET", "/v1/rooms/lobby/presence", "", http.StatusOK)
	call(e2eAPIKey, "GET", "/v1/rooms/lobby/history?limit=5", "", http.StatusOK)
	call(e2eAPIKey, "GET", "/v1/rooms", "", http.StatusOK)
	call("not-a-key-0123456789abcdef0123456789", "GET", "/v1/rooms", "", http.StatusUnauthorized)

	before := gw.metric(hc, "chatgate_connections")
	victim := dialClient(t, "ws://"+gw.ChatAddr+"/ws?room=lobby&name=victim")
	welcome := victim.WaitEnv("welcome", func(e wstest.Env) bool { return e.Type() == "welcome" })
	call(e2eAPIKey, "POST", "/v1/disconnect", `{"conn":"`+welcome.Str("conn")+`"}`, http.StatusOK)
	if code := victim.WaitClosed(); code != 4403 {
		t.Errorf("the kicked client closed with %d; want 4403", code)
	}
	waitUntil(t, "the kicked connection to be gone", func() bool { return gw.metric(hc, "chatgate_connections") == before })
	t.Logf("traffic: server API publishes, reads, a refused key and a kick")
}

// wsClient is the one WebSocket test client (internal/wstest); these read
// in the background, so they never become slow consumers themselves.
type wsClient = wstest.Client

func dialClient(t *testing.T, u string) *wsClient {
	t.Helper()
	return wstest.Dial(t, u, wstest.Options{Background: true, Timeout: waitLimit})
}

// dialSlowConsumer dials with a tiny receive buffer and reads nothing until
// told to.
func dialSlowConsumer(t *testing.T, u string) *wsClient {
	t.Helper()
	return wstest.Dial(t, u, wstest.Options{Dialer: wstest.SmallBufferDialer(waitLimit), Timeout: waitLimit})
}

// drainToClose reads everything left, fast, and returns the close code.
func drainToClose(c *wsClient) int {
	if tc, ok := c.Conn().NetConn().(*net.TCPConn); ok {
		_ = tc.SetReadBuffer(4 << 20)
	}
	return c.WaitClosed()
}

// ---- the NATS server ----

// ---- the gateway process ----

// gatewayProc is the real binary, with the reads this test needs.
type gatewayProc struct{ *gatewaytest.Proc }

func startGatewayProc(t *testing.T, bin string, args ...string) *gatewayProc {
	t.Helper()
	return &gatewayProc{gatewaytest.Start(t, bin, args...)}
}

func (p *gatewayProc) status(hc *http.Client, path string) int { return p.Status(hc, path) }

// metric reads one sample, e.g. `name{label="v"}`, from the gateway's
// /metrics in the text format; -1 if absent.
func (p *gatewayProc) metric(hc *http.Client, series string) float64 {
	resp, err := hc.Get("http://" + p.AdminAddr + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			v, err := strconv.ParseFloat(strings.Fields(rest)[0], 64)
			if err == nil {
				return v
			}
		}
	}
	return -1
}

// ---- the Prometheus process ----

type promProc struct {
	base string
	hc   *http.Client
}

// startPrometheus runs Prometheus on a free loopback port with a temporary
// TSDB, scraping adminAddr every second as pod p1 in namespace e2e and
// evaluating alerts.yaml every second. Its log goes to t.Logf.
func startPrometheus(t *testing.T, bin, adminAddr string, hc *http.Client) *promProc {
	t.Helper()
	dir := t.TempDir()
	rules := filepath.Join(dir, "alerts.yaml")
	if err := os.WriteFile(rules, AlertRules, 0o644); err != nil {
		t.Fatal(err)
	}
	config := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - %q
scrape_configs:
  - job_name: chatgate
    static_configs:
      - targets: [%q]
        labels:
          namespace: %q
          pod: %q
`, rules, adminAddr, e2eNamespace, e2ePod)
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := freeLoopbackAddr(t)
	cmd := exec.Command(bin,
		"--config.file="+cfgPath,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--log.level=info",
	)
	out, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = nil
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	logged := make(chan struct{})
	exited := make(chan struct{})
	go func() {
		defer close(logged)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			t.Logf("prometheus: %s", sc.Text())
		}
	}()
	go func() {
		<-logged
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	p := &promProc{base: "http://" + addr, hc: hc}
	waitUntil(t, "Prometheus to be ready", func() bool {
		select {
		case <-exited:
			t.Fatal("prometheus exited during startup (see its log above)")
		default:
		}
		resp, err := hc.Get(p.base + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return p
}

func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

type sample struct {
	Metric map[string]string
	Time   time.Time
	Value  string
}

func (s sample) String() string {
	var labels []string
	for k, v := range s.Metric {
		labels = append(labels, k+"="+strconv.Quote(v))
	}
	slices.Sort(labels)
	return "{" + strings.Join(labels, ", ") + "} " + s.Value
}

type vector []sample

func (v vector) allNaN() bool {
	for _, s := range v {
		if s.Value != "NaN" {
			return false
		}
	}
	return true
}

type apiResponse struct {
	Status    string          `json:"status"`
	ErrorType string          `json:"errorType"`
	Error     string          `json:"error"`
	Data      json.RawMessage `json:"data"`
}

func (p *promProc) get(path string, params url.Values) (json.RawMessage, error) {
	resp, err := p.hc.Get(p.base + path + "?" + params.Encode())
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var r apiResponse
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return nil, fmt.Errorf("HTTP %d: %v", resp.StatusCode, err)
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("%s: %s", r.ErrorType, r.Error)
	}
	return r.Data, nil
}

// query runs an instant query at the given time (now if zero).
func (p *promProc) query(expr string, at time.Time) (vector, error) {
	params := url.Values{"query": {expr}}
	if !at.IsZero() {
		params.Set("time", strconv.FormatFloat(float64(at.UnixMilli())/1000, 'f', 3, 64))
	}
	data, err := p.get("/api/v1/query", params)
	if err != nil {
		return nil, err
	}
	var d struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		return nil, err
	}
	point := func(raw [2]any) (time.Time, string) {
		ts, _ := raw[0].(float64)
		v, _ := raw[1].(string)
		return time.UnixMilli(int64(ts * 1000)), v
	}
	switch d.ResultType {
	case "vector":
		var rs []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		}
		if err := json.Unmarshal(d.Result, &rs); err != nil {
			return nil, err
		}
		out := make(vector, 0, len(rs))
		for _, r := range rs {
			ts, v := point(r.Value)
			out = append(out, sample{Metric: r.Metric, Time: ts, Value: v})
		}
		return out, nil
	case "scalar":
		var raw [2]any
		if err := json.Unmarshal(d.Result, &raw); err != nil {
			return nil, err
		}
		ts, v := point(raw)
		return vector{{Time: ts, Value: v}}, nil
	default:
		return nil, fmt.Errorf("result type %q; want a vector", d.ResultType)
	}
}

// waitFor polls an instant query until it returns a series and returns the
// first one.
func (p *promProc) waitFor(t *testing.T, what, expr string) sample {
	t.Helper()
	deadline := time.NewTimer(waitLimit)
	defer deadline.Stop()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		res, err := p.query(expr, time.Time{})
		if err == nil && len(res) > 0 {
			return res[0]
		}
		select {
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s: %s\n  last result %v, error %v", what, expr, res, err)
		case <-tick.C:
		}
	}
}

func (p *promProc) labelValues(label, match string) ([]string, error) {
	data, err := p.get("/api/v1/label/"+label+"/values", url.Values{"match[]": {match}})
	if err != nil {
		return nil, err
	}
	var vals []string
	err = json.Unmarshal(data, &vals)
	return vals, err
}

// ruleHealth returns each alerting rule's health as Prometheus evaluates it.
func (p *promProc) ruleHealth() (map[string]string, error) {
	data, err := p.get("/api/v1/rules", url.Values{"type": {"alert"}})
	if err != nil {
		return nil, err
	}
	var d struct {
		Groups []struct {
			Rules []struct {
				Name      string `json:"name"`
				Health    string `json:"health"`
				LastError string `json:"lastError"`
			} `json:"rules"`
		} `json:"groups"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, g := range d.Groups {
		for _, r := range g.Rules {
			out[r.Name] = r.Health
			if r.LastError != "" {
				out[r.Name] += ": " + r.LastError
			}
		}
	}
	return out, nil
}

// waitUntil polls cond every 50ms until it holds or the deadline passes.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}
