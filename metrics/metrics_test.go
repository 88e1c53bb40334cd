package metrics

import (
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/goleak"

	"github.com/chatgate/chatgate/gateway/observe"
	"github.com/chatgate/chatgate/gateway/protocol"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newMetrics(t testing.TB) (*Metrics, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	m := New(reg, BuildInfo{Version: "v1.2.3", Revision: "abc"}, func() float64 { return 4096 })
	m.SetQueueTotal(func() float64 { return 123456 })
	return m, reg
}

// TestEventsMoveTheRightSeries drives each Observer event and checks the
// series it must move, and only by the expected amount.
func TestEventsMoveTheRightSeries(t *testing.T) {
	type check struct {
		c    prometheus.Collector
		want float64
	}
	cases := []struct {
		name   string
		event  func(m *Metrics)
		checks func(m *Metrics, vec func(name, label string) prometheus.Collector) []check
	}{
		{"slow consumer eviction", func(m *Metrics) { m.Disconnecting(observe.DisconnectSlowConsumer) },
			func(m *Metrics, vec func(string, string) prometheus.Collector) []check {
				return []check{{vec("disconnects_total", "slow_consumer"), 1}, {vec("disconnects_total", "drain"), 0}}
			}},
		{"connection lifecycle", func(m *Metrics) { m.ConnAccepted(); m.ConnAccepted(); m.ConnClosed() },
			func(m *Metrics, _ func(string, string) prometheus.Collector) []check {
				return []check{{m.accepted, 2}, {m.connections, 1}}
			}},
		{"origin rejection", func(m *Metrics) { m.ConnRejected(observe.RejectOrigin) },
			func(m *Metrics, vec func(string, string) prometheus.Collector) []check {
				return []check{{vec("connections_rejected_total", "origin"), 1}, {vec("connections_rejected_total", "capacity"), 0}}
			}},
		{"rate limited request", func(m *Metrics) { m.RequestRejected(string(protocol.CodeRateLimited)) },
			func(m *Metrics, vec func(string, string) prometheus.Collector) []check {
				return []check{{vec("messages_rejected_total", "rate_limited"), 1}, {m.rateLimited, 1}}
			}},
		{"other rejected request", func(m *Metrics) { m.RequestRejected(string(protocol.CodeNotJoined)) },
			func(m *Metrics, vec func(string, string) prometheus.Collector) []check {
				return []check{{vec("messages_rejected_total", "not_joined"), 1}, {m.rateLimited, 0}}
			}},
		{"frames in", func(m *Metrics) { m.FrameReceived(100); m.FrameReceived(20) },
			func(m *Metrics, _ func(string, string) prometheus.Collector) []check {
				return []check{{m.received, 2}, {m.bytesReceived, 120}}
			}},
		{"publish", func(m *Metrics) { m.MessageAccepted() },
			func(m *Metrics, _ func(string, string) prometheus.Collector) []check {
				return []check{{m.published, 1}}
			}},
		{"frame out", func(m *Metrics) { m.FrameWritten(300, 3, time.Millisecond) },
			func(m *Metrics, _ func(string, string) prometheus.Collector) []check {
				return []check{{m.framesSent, 3}, {m.bytesSent, 300}}
			}},
		{"delivery", func(m *Metrics) { m.Delivered(time.Millisecond, trace.TraceID{}) },
			func(m *Metrics, _ func(string, string) prometheus.Collector) []check {
				return []check{{m.delivered, 1}}
			}},
		{"rooms", func(m *Metrics) { m.RoomOpened(); m.RoomOpened(); m.RoomClosed() },
			func(m *Metrics, _ func(string, string) prometheus.Collector) []check {
				return []check{{m.rooms, 1}}
			}},
		{"presence and history", func(m *Metrics) { m.PresenceSent(5); m.HistoryReplayed(7) },
			func(m *Metrics, _ func(string, string) prometheus.Collector) []check {
				return []check{{m.presenceEvents, 5}, {m.historyReplayed, 7}}
			}},
		{"api requests", func(m *Metrics) {
			m.APIRequest(observe.APIPublish, "ok", time.Millisecond)
			m.APIRequest(observe.APIPublish, "ok", time.Millisecond)
			m.APIRequest(observe.APIDisconnect, "forbidden", time.Millisecond)
			m.APIRequest(observe.APIDisconnect, "not-a-result", time.Millisecond)
		},
			func(m *Metrics, _ func(string, string) prometheus.Collector) []check {
				return []check{
					{m.apiRequests[observe.APIPublish]["ok"], 2},
					{m.apiRequests[observe.APIDisconnect]["forbidden"], 1},
					{m.apiRequests[observe.APIPublish]["forbidden"], 0},
				}
			}},
		{"guest sessions", func(m *Metrics) {
			m.GuestSession(observe.GuestResumed)
			m.GuestSession(observe.GuestResumed)
			m.GuestSession(observe.GuestUnknownKey)
			m.GuestSession("not-an-outcome")
		},
			func(m *Metrics, _ func(string, string) prometheus.Collector) []check {
				return []check{
					{m.guestSessions[observe.GuestResumed], 2},
					{m.guestSessions[observe.GuestUnknownKey], 1},
					{m.guestSessions[observe.GuestNew], 0},
				}
			}},
		{"drain state", func(m *Metrics) { m.SetDraining(true); m.SetDrainRemaining(42) },
			func(m *Metrics, _ func(string, string) prometheus.Collector) []check {
				return []check{{m.draining, 1}, {m.drainRemaining, 42}}
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, _ := newMetrics(t)
			tc.event(m)
			vec := func(name, label string) prometheus.Collector {
				switch name {
				case "disconnects_total":
					return m.disconnects[observe.DisconnectReason(label)]
				case "connections_rejected_total":
					return m.rejected[observe.RejectReason(label)]
				case "messages_rejected_total":
					return m.requestsRejected[label]
				}
				t.Fatalf("unknown vec %s", name)
				return nil
			}
			for i, c := range tc.checks(m, vec) {
				if got := testutil.ToFloat64(c.c); got != c.want {
					t.Errorf("check %d: got %v; want %v", i, got, c.want)
				}
			}
		})
	}
}

// TestVocabulariesPreinitialised: every label value of every closed
// vocabulary is exported at zero before anything happens, and no label
// could carry a room, user or connection id.
func TestVocabulariesPreinitialised(t *testing.T) {
	_, reg := newMetrics(t)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]map[string]bool{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "reason", "version", "revision", "goversion", "endpoint", "code", "outcome":
				default:
					t.Errorf("%s has label %q; only closed vocabularies are allowed", f.GetName(), l.GetName())
				}
				if seen[f.GetName()] == nil {
					seen[f.GetName()] = map[string]bool{}
				}
				seen[f.GetName()][l.GetValue()] = true
			}
		}
	}
	want := map[string][]string{}
	for _, r := range observe.DisconnectReasons {
		want["chatgate_disconnects_total"] = append(want["chatgate_disconnects_total"], string(r))
	}
	for _, r := range observe.RejectReasons {
		want["chatgate_connections_rejected_total"] = append(want["chatgate_connections_rejected_total"], string(r))
	}
	for _, c := range protocol.ErrorCodes {
		want["chatgate_messages_rejected_total"] = append(want["chatgate_messages_rejected_total"], string(c))
	}
	for _, o := range observe.GuestOutcomes {
		want["chatgate_guest_sessions_total"] = append(want["chatgate_guest_sessions_total"], string(o))
	}
	for fam, values := range want {
		for _, v := range values {
			if !seen[fam][v] {
				t.Errorf("%s{reason=%q} not pre-initialised", fam, v)
			}
		}
	}
	// The server API's requests: every endpoint with every result, and
	// the endpoint and code labels take no other value.
	apiSeries := map[[2]string]bool{}
	for _, f := range families {
		if f.GetName() != "chatgate_api_requests_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			var key [2]string
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "endpoint":
					key[0] = l.GetValue()
				case "code":
					key[1] = l.GetValue()
				}
			}
			apiSeries[key] = true
		}
	}
	for _, e := range observe.APIEndpoints {
		for _, r := range observe.APIResults {
			if !apiSeries[[2]string{string(e), r}] {
				t.Errorf("chatgate_api_requests_total{endpoint=%q,code=%q} not pre-initialised", e, r)
			}
		}
	}
	if want := len(observe.APIEndpoints) * len(observe.APIResults); len(apiSeries) != want {
		t.Errorf("chatgate_api_requests_total has %d series; want %d", len(apiSeries), want)
	}
	for _, c := range protocol.ErrorCodes {
		if c != protocol.CodeNotJoined && c != protocol.CodeUnknownType && !slices.Contains(observe.APIResults, string(c)) {
			t.Errorf("protocol code %s is missing from observe.APIResults", c)
		}
	}
}

func TestExemplarCarriesTraceID(t *testing.T) {
	m, reg := newMetrics(t)
	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	m.Delivered(3*time.Millisecond, tid)
	srv := httptest.NewServer(Handler(reg))
	defer srv.Close()
	req, _ := http.NewRequest("GET", srv.URL, nil)
	req.Header.Set("Accept", "application/openmetrics-text; version=1.0.0")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	if _, err := io.Copy(&b, resp.Body); err != nil {
		t.Fatal(err)
	}
	body := b.String()
	if !strings.Contains(body, `chatgate_broadcast_latency_seconds_bucket{le="0.005"} 1 # {trace_id="4bf92f3577b34da6a3ce929d0e0e4736"} 0.003`) {
		t.Fatalf("no exemplar with the trace id in:\n%s", grep(body, "broadcast_latency"))
	}
	if !strings.Contains(body, "chatgate_build_info{") || !strings.Contains(body, `version="v1.2.3"`) {
		t.Fatal("build_info missing")
	}
	if !strings.Contains(body, "chatgate_send_queue_max_bytes 4096") {
		t.Fatal("worst queue gauge missing")
	}
	if !strings.Contains(body, "chatgate_send_queue_total_bytes 123456") {
		t.Fatal("gateway-wide queue gauge missing")
	}
	if !strings.Contains(body, "go_goroutines") || !strings.Contains(body, "process_open_fds") {
		t.Fatal("runtime or process collector missing")
	}
}

// TestHotPathDoesNotAllocate guards the per-event cost on the paths the
// gateway calls per message and per recipient.
func TestHotPathDoesNotAllocate(t *testing.T) {
	m, _ := newMetrics(t)
	allocs := testing.AllocsPerRun(1000, hotPath(m))
	if allocs != 0 {
		t.Fatalf("hot-path updates allocated %.1f times; want 0", allocs)
	}
}

func hotPath(m *Metrics) func() {
	return func() {
		m.FrameReceived(64)
		m.MessageAccepted()
		m.Fanout(100, 20*time.Microsecond)
		m.QueueSampled(512)
		m.FrameWritten(640, 5, 30*time.Microsecond)
		m.Delivered(200*time.Microsecond, trace.TraceID{})
		m.RequestRejected("rate_limited")
		m.Disconnecting(observe.DisconnectSlowConsumer)
	}
}

func BenchmarkHotPath(b *testing.B) {
	m, _ := newMetrics(b)
	f := hotPath(m)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			f()
		}
	})
}

func grep(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// chatgate_ready is read from the gateway's readiness check at each scrape:
// it follows the check with no event in between, and reads 0 before the
// gateway has handed one over.
func TestReadyGaugeReadsTheReadinessCheck(t *testing.T) {
	m, reg := newMetrics(t)
	read := func() float64 {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "chatgate_ready" {
				return mf.GetMetric()[0].GetGauge().GetValue()
			}
		}
		t.Fatal("no chatgate_ready")
		return 0
	}
	if got := read(); got != 0 {
		t.Fatalf("chatgate_ready = %v before any readiness check; want 0", got)
	}
	var ready atomic.Bool
	m.WatchReadiness(ready.Load)
	for _, want := range []bool{false, true, false, true} {
		ready.Store(want)
		if got := read(); got != b2f(want) {
			t.Fatalf("chatgate_ready = %v while the check says %v", got, want)
		}
	}
}
