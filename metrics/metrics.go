// Package metrics exports chatgate's Prometheus metrics. Metrics implements
// observe.Observer: the gateway reports events through it and it turns them
// into the chatgate_* families on a registry the caller provides.
//
// Hot-path updates neither allocate nor take a lock: every labelled child
// is resolved once, at construction, for every value of its closed
// vocabulary (which also makes every series exist from the start, at 0).
package metrics

import (
	"net/http"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/trace"

	"github.com/chatgate/chatgate/gateway/observe"
	"github.com/chatgate/chatgate/gateway/protocol"
)

const namespace = "chatgate"

// BuildInfo labels chatgate_build_info.
type BuildInfo struct {
	Version  string
	Revision string
}

// Metrics holds every chatgate_* collector.
type Metrics struct {
	// static after construction: collectors and their pre-resolved children
	connections      prometheus.Gauge
	accepted         prometheus.Counter
	rejected         map[observe.RejectReason]prometheus.Counter
	disconnects      map[observe.DisconnectReason]prometheus.Counter
	received         prometheus.Counter
	bytesReceived    prometheus.Counter
	published        prometheus.Counter
	requestsRejected map[string]prometheus.Counter
	rateLimited      prometheus.Counter
	delivered        prometheus.Counter
	bytesSent        prometheus.Counter
	framesSent       prometheus.Counter
	broadcastLatency prometheus.Histogram
	fanoutDuration   prometheus.Histogram
	fanoutRecipients prometheus.Histogram
	writeDuration    prometheus.Histogram
	queueBytes       prometheus.Histogram
	rooms            prometheus.Gauge
	roomMembers      prometheus.Histogram
	presenceEvents   prometheus.Counter
	historyReplayed  prometheus.Counter
	draining         prometheus.Gauge
	drainRemaining   prometheus.Gauge
	guestSessions    map[observe.GuestOutcome]prometheus.Counter
	// the server API's, by endpoint and result
	apiRequests map[observe.APIEndpoint]map[string]prometheus.Counter
	apiDuration map[observe.APIEndpoint]prometheus.Observer

	// ready is the gateway's readiness check (WatchReadiness), read by
	// chatgate_ready at scrape time; nil reads as not ready.
	ready atomic.Pointer[func() bool]

	// queueTotal reports the gateway-wide queued bytes; set once the
	// gateway exists (SetQueueTotal), read at scrape time.
	queueTotal atomic.Pointer[func() float64]
}

var (
	_ observe.Observer      = (*Metrics)(nil)
	_ observe.APIObserver   = (*Metrics)(nil)
	_ observe.GuestObserver = (*Metrics)(nil)
)

// LatencyBuckets cover 50µs to ~10s: a healthy loopback delivery is tens of
// microseconds, a loaded cross-zone one a few milliseconds, and anything
// near the top means a client or the gateway is in trouble.
var LatencyBuckets = []float64{
	0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
	0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
}

// New registers every collector on reg, plus the Go runtime and process
// collectors, and returns the Metrics. queueDepth, if not nil, reports the
// current worst per-client queue in bytes; SetQueueTotal provides the
// gateway-wide total.
func New(reg prometheus.Registerer, build BuildInfo, queueDepth func() float64) *Metrics {
	f := factory{reg}
	m := &Metrics{
		connections: f.gauge("connections", "WebSocket connections open now."),
		accepted:    f.counter("connections_accepted_total", "WebSocket connections accepted (upgraded)."),
		received:    f.counter("messages_received_total", "WebSocket messages received from clients (every frame, valid or not)."),
		bytesReceived: f.counter("bytes_received_total",
			"Payload bytes of WebSocket messages received from clients."),
		published: f.counter("messages_published_total", "Chat messages accepted and sequenced (each counted once, not per recipient)."),
		rateLimited: f.counter("rate_limited_total",
			"Client requests refused by a per-connection rate limit."),
		delivered: f.counter("messages_delivered_total",
			"Chat messages written to a recipient's socket (one per recipient)."),
		bytesSent:  f.counter("bytes_sent_total", "Payload bytes written to clients."),
		framesSent: f.counter("frames_sent_total", "WebSocket data messages written to clients; each may coalesce several envelopes."),
		broadcastLatency: f.histogram("broadcast_latency_seconds",
			"Time from the gateway accepting a chat message to its frame being written to a recipient's socket, per recipient.", LatencyBuckets),
		fanoutDuration: f.histogram("fanout_duration_seconds",
			"Time to hand one broadcast to every local member's queue.", LatencyBuckets),
		fanoutRecipients: f.histogram("fanout_recipients",
			"Local recipients per broadcast.", prometheus.ExponentialBuckets(1, 4, 9)),
		writeDuration: f.histogram("write_duration_seconds",
			"Time of one write to a client socket, which may carry several WebSocket messages.", LatencyBuckets),
		queueBytes: f.histogram("send_queue_bytes",
			"A client's outbound queue in bytes, sampled at every enqueue.", prometheus.ExponentialBuckets(256, 4, 8)),
		rooms: f.gauge("rooms", "Rooms held in memory (including empty rooms kept for their history)."),
		roomMembers: f.histogram("room_members",
			"Room member counts, sampled at each join.", prometheus.ExponentialBuckets(1, 4, 8)),
		presenceEvents:  f.counter("presence_events_total", "Presence frames queued to members (one per recipient)."),
		historyReplayed: f.counter("history_replayed_total", "Messages replayed from room history on join with since."),
		draining:        f.gauge("draining", "1 while the gateway drains."),
		drainRemaining:  f.gauge("drain_remaining_connections", "Connections still open during a drain."),
	}
	rejected := f.counterVec("connections_rejected_total", "Connection attempts refused before the upgrade, by reason.", "reason")
	m.rejected = make(map[observe.RejectReason]prometheus.Counter)
	for _, r := range observe.RejectReasons {
		m.rejected[r] = rejected.WithLabelValues(string(r))
	}
	disconnects := f.counterVec("disconnects_total", "Connections ended, by the first reason.", "reason")
	m.disconnects = make(map[observe.DisconnectReason]prometheus.Counter)
	for _, r := range observe.DisconnectReasons {
		m.disconnects[r] = disconnects.WithLabelValues(string(r))
	}
	reqRejected := f.counterVec("messages_rejected_total", "Client requests answered with an error envelope, by error code.", "reason")
	m.requestsRejected = make(map[string]prometheus.Counter)
	for _, c := range protocol.ErrorCodes {
		m.requestsRejected[string(c)] = reqRejected.WithLabelValues(string(c))
	}
	apiRequests := f.counterVec("api_requests_total", "Server API requests, by endpoint and result (ok or the error code answered).", "endpoint", "code")
	apiDuration := f.histogramVec("api_request_duration_seconds", "Time to answer one server API request, by endpoint.", LatencyBuckets, "endpoint")
	m.apiRequests = make(map[observe.APIEndpoint]map[string]prometheus.Counter)
	m.apiDuration = make(map[observe.APIEndpoint]prometheus.Observer)
	for _, e := range observe.APIEndpoints {
		m.apiRequests[e] = make(map[string]prometheus.Counter)
		for _, r := range observe.APIResults {
			m.apiRequests[e][r] = apiRequests.WithLabelValues(string(e), r)
		}
		m.apiDuration[e] = apiDuration.WithLabelValues(string(e))
	}
	m.guestSessions = guestSessions(f)
	buildInfo := f.gaugeVec("build_info", "Build information; always 1.", "version", "revision", "goversion")
	buildInfo.WithLabelValues(build.Version, build.Revision, runtime.Version()).Set(1)
	f.gaugeFunc("ready", "1 while /readyz answers 200: the same check, made at scrape time (not ready while starting, draining, or without its cluster backplane).", func() float64 {
		if ready := m.ready.Load(); ready != nil {
			return b2f((*ready)())
		}
		return 0
	})
	if queueDepth != nil {
		f.gaugeFunc("send_queue_max_bytes", "The largest outbound queue of any client now, in bytes.", queueDepth)
	}
	f.gaugeFunc("send_queue_total_bytes", "Bytes queued to all clients together now (what --total-queue-bytes caps), history replays included.", func() float64 {
		if total := m.queueTotal.Load(); total != nil {
			return (*total)()
		}
		return 0
	})
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// SetQueueTotal makes chatgate_send_queue_total_bytes report total (the
// bytes queued to all clients together); until it is called it reports 0.
func (m *Metrics) SetQueueTotal(total func() float64) { m.queueTotal.Store(&total) }

// Handler serves the registry's metrics, in OpenMetrics when the scraper
// asks for it (so exemplars are visible).
func Handler(g prometheus.Gatherer) http.Handler {
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{EnableOpenMetrics: true})
}

// ---- observe.Observer ----

func (m *Metrics) ConnAccepted() {
	m.accepted.Inc()
	m.connections.Inc()
}

func (m *Metrics) ConnRejected(r observe.RejectReason) {
	if c, ok := m.rejected[r]; ok {
		c.Inc()
	}
}

func (m *Metrics) Disconnecting(r observe.DisconnectReason) {
	if c, ok := m.disconnects[r]; ok {
		c.Inc()
	}
}

func (m *Metrics) ConnClosed() { m.connections.Dec() }

func (m *Metrics) FrameReceived(bytes int) {
	m.received.Inc()
	m.bytesReceived.Add(float64(bytes))
}

func (m *Metrics) MessageAccepted() { m.published.Inc() }

func (m *Metrics) RequestRejected(code string) {
	if c, ok := m.requestsRejected[code]; ok {
		c.Inc()
	}
	if code == string(protocol.CodeRateLimited) {
		m.rateLimited.Inc()
	}
}

func (m *Metrics) Fanout(recipients int, d time.Duration) {
	m.fanoutDuration.Observe(d.Seconds())
	m.fanoutRecipients.Observe(float64(recipients))
}

func (m *Metrics) FrameWritten(bytes, messages int, d time.Duration) {
	m.framesSent.Add(float64(messages))
	m.bytesSent.Add(float64(bytes))
	m.writeDuration.Observe(d.Seconds())
}

func (m *Metrics) Delivered(latency time.Duration, traceID trace.TraceID) {
	m.delivered.Inc()
	if traceID.IsValid() {
		// Only traced messages pay for the exemplar's label map.
		m.broadcastLatency.(prometheus.ExemplarObserver).ObserveWithExemplar(
			latency.Seconds(), prometheus.Labels{"trace_id": traceID.String()})
		return
	}
	m.broadcastLatency.Observe(latency.Seconds())
}

func (m *Metrics) QueueSampled(bytes int) { m.queueBytes.Observe(float64(bytes)) }

func (m *Metrics) RoomOpened() { m.rooms.Inc() }
func (m *Metrics) RoomClosed() { m.rooms.Dec() }

func (m *Metrics) RoomSize(members int) { m.roomMembers.Observe(float64(members)) }

func (m *Metrics) PresenceSent(frames int) { m.presenceEvents.Add(float64(frames)) }

func (m *Metrics) HistoryReplayed(n int) { m.historyReplayed.Add(float64(n)) }

func (m *Metrics) WatchReadiness(ready func() bool) { m.ready.Store(&ready) }
func (m *Metrics) SetDraining(ok bool)              { m.draining.Set(b2f(ok)) }
func (m *Metrics) SetDrainRemaining(n int)          { m.drainRemaining.Set(float64(n)) }

// APIRequest implements observe.APIObserver.
func (m *Metrics) APIRequest(endpoint observe.APIEndpoint, result string, d time.Duration) {
	if c, ok := m.apiRequests[endpoint][result]; ok {
		c.Inc()
	}
	if h, ok := m.apiDuration[endpoint]; ok {
		h.Observe(d.Seconds())
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// factory registers collectors in the chatgate namespace.
type factory struct{ reg prometheus.Registerer }

func (f factory) counter(name, help string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: name, Help: help})
	f.reg.MustRegister(c)
	return c
}

func (f factory) gauge(name, help string) prometheus.Gauge {
	g := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Name: name, Help: help})
	f.reg.MustRegister(g)
	return g
}

func (f factory) gaugeFunc(name, help string, fn func() float64) {
	f.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: namespace, Name: name, Help: help}, fn))
}

func (f factory) histogram(name, help string, buckets []float64) prometheus.Histogram {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: namespace, Name: name, Help: help, Buckets: buckets})
	f.reg.MustRegister(h)
	return h
}

func (f factory) counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	v := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: name, Help: help}, labels)
	f.reg.MustRegister(v)
	return v
}

func (f factory) histogramVec(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	v := prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: name, Help: help, Buckets: buckets}, labels)
	f.reg.MustRegister(v)
	return v
}

func (f factory) gaugeVec(name, help string, labels ...string) *prometheus.GaugeVec {
	v := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Name: name, Help: help}, labels)
	f.reg.MustRegister(v)
	return v
}
