package bench

import "time"

// SchemaVersion names the JSON layout; it changes only when a field changes
// meaning or goes away (new fields may be added).
const SchemaVersion = "chatbench/v1"

// Result is everything a run measured. Its JSON form (--json) is
// documented field by field in docs/benchmarks.md.
type Result struct {
	Schema    string    `json:"schema"`
	BenchID   string    `json:"bench_id"`
	Scenario  string    `json:"scenario"`
	Proto     string    `json:"proto"`
	Target    []string  `json:"target"`
	StartedAt time.Time `json:"started_at"`
	Params    Params    `json:"params"`
	// WindowS is the sending window (traffic scenarios) or the connection
	// storm (connect) as it actually ran, in seconds.
	WindowS     float64         `json:"window_s"`
	Connections ConnStats       `json:"connections"`
	Messages    MsgStats        `json:"messages"`
	Latency     LatencySummary  `json:"latency"`
	SlowLatency *LatencySummary `json:"slow_latency,omitempty"`
	Correctness Correctness     `json:"correctness"`
	Slow        *SlowStats      `json:"slow,omitempty"`
	Churn       *ChurnStats     `json:"churn,omitempty"`
	Drain       *DrainStats     `json:"drain,omitempty"`
	Server      *ServerStats    `json:"server,omitempty"`
	// ClientCPUCores is the bench process's own CPU over the window (connect:
	// over the storm), in cores: close to the cores it may use means the
	// load generator, not the server, set the pace.
	ClientCPUCores float64 `json:"client_cpu_cores"`
	// CloseCodes counts connections the server (or the network) closed
	// during the run, by close code; 1006 means no close frame arrived.
	CloseCodes map[string]int64 `json:"close_codes"`
	// Errors counts client-side errors by kind.
	Errors     map[string]int64 `json:"errors"`
	Timeline   []TimelinePoint  `json:"timeline"`
	Events     []Event          `json:"events"`
	Histogram  []Bucket         `json:"histogram"`
	Thresholds Thresholds       `json:"thresholds"`
	Warnings   []string         `json:"warnings"`
	// Error says why the run failed (exit status 3); absent otherwise.
	Error string `json:"error,omitempty"`
}

// Params echo the run's shape.
type Params struct {
	Conns          int     `json:"conns"`
	Rooms          int     `json:"rooms"`
	SendersPerRoom int     `json:"senders_per_room"`
	RatePerSender  float64 `json:"rate_per_sender"`
	SizeBytes      int     `json:"size_bytes"`
	DurationS      float64 `json:"duration_s"`
	Messages       int     `json:"messages_per_sender"`
	ConnectRate    float64 `json:"connect_rate"`
	SlowShare      float64 `json:"slow_share"`
	SourceIPs      int     `json:"source_ips"`
	// Via is how senders sent: ws, or api (through the server API).
	Via string `json:"via"`
	// TargetDeliveriesPerS is what the schedule asks for: senders × rate ×
	// members of their room, over all rooms.
	TargetDeliveriesPerS float64 `json:"target_deliveries_per_s"`
}

// ConnStats describe connection setup.
type ConnStats struct {
	Attempted   int64 `json:"attempted"`
	Established int64 `json:"established"`
	Failed      int64 `json:"failed"`
	// ConnectLatency runs from a connection's intended start (its slot in
	// the --connect-rate schedule, or when setup began) to the server's
	// 101 answer.
	ConnectLatency LatencySummary `json:"connect_latency"`
	// FailuresByStatus counts refused handshakes by HTTP status;
	// FailuresByReason by status and the first line of the server's
	// answer ("429 too many connections from this address").
	FailuresByStatus map[string]int64 `json:"failures_by_status"`
	FailuresByReason map[string]int64 `json:"failures_by_reason"`
	// HandshakesPerS is established connections per second of the setup.
	HandshakesPerS float64 `json:"handshakes_per_s"`
}

// MsgStats count messages.
type MsgStats struct {
	Sent        int64 `json:"sent"`
	Acked       int64 `json:"acked"`
	Rejected    int64 `json:"rejected"`
	WriteFailed int64 `json:"write_failed"`
	// Deliveries are live messages received by healthy members (what the
	// latency summary covers); DeliveriesPerS divides them by the window.
	Deliveries     int64   `json:"deliveries"`
	DeliveriesPerS float64 `json:"deliveries_per_s"`
	SentPerS       float64 `json:"sent_per_s"`
	// SenderMaxLagUs is how far behind its schedule a sender fell at worst
	// (already part of the latencies); SendsLate counts sends started more
	// than one interval late. Large values mean the load generator was
	// saturated.
	SenderMaxLagUs int64 `json:"sender_max_lag_us"`
	SendsLate      int64 `json:"sends_late"`
	// ErrorCodes counts chatgate error envelopes by code.
	ErrorCodes map[string]int64 `json:"error_codes"`
	// PresenceFrames received by all members.
	PresenceFrames int64 `json:"presence_frames"`
}

// SlowStats report the slow listeners.
type SlowStats struct {
	Members int `json:"members"`
	// Evicted counts slow listeners closed with 4008 slow_consumer.
	Evicted int `json:"evicted"`
	// CloseCodes counts every slow listener's end: a close code, or
	// "open" for one still connected at the end.
	CloseCodes map[string]int64 `json:"close_codes"`
	Deliveries int64            `json:"deliveries"`
	// Plan is how the run set out to overflow the gateway's queue
	// (chatgate only).
	Plan *SlowPlan `json:"plan,omitempty"`
}

// ChurnStats report the churning connections.
type ChurnStats struct {
	Arrivals int64 `json:"arrivals"`
	Joined   int64 `json:"joined"`
	Failed   int64 `json:"failed"`
	// JoinLatency runs from an arrival's intended time to its joined (raw:
	// to the 101 answer).
	JoinLatency LatencySummary `json:"join_latency"`
	// PresenceFramesPerS is presence frames per second over all stable
	// members: the presence cost of the churn.
	PresenceFramesPerS float64 `json:"presence_frames_per_s"`
}

// DrainStats report the drain scenario.
type DrainStats struct {
	Command           string  `json:"command,omitempty"`
	RanAtS            float64 `json:"ran_at_s"`
	Error             string  `json:"error,omitempty"`
	Output            string  `json:"output,omitempty"`
	Reconnects        int64   `json:"reconnects"`
	ReconnectFailures int64   `json:"reconnect_failures"`
	// ResumeFailed counts members that could not reconnect and rejoin:
	// every attempt failed, or they were still trying when the run ended.
	ResumeFailed int `json:"resume_failed"`
	// NoReplica counts those of them that had nowhere else to go: --url
	// named a single gateway, the one that drained. They are excluded from
	// the loss accounting (correctness.excluded_by no_replica), not lost.
	NoReplica int `json:"no_replica"`
}

// ServerStats come from --server-pid and --server-metrics.
type ServerStats struct {
	Source string `json:"source"`
	// CPUSeconds used by the server during the window (traffic) or the
	// storm (connect), and per delivery or per connection.
	CPUSeconds         float64 `json:"cpu_seconds"`
	CPUUsPerDelivery   float64 `json:"cpu_us_per_delivery,omitempty"`
	CPUUsPerConnection float64 `json:"cpu_us_per_connection,omitempty"`
	// CPUCores is CPUSeconds over the window's length: cores kept busy.
	CPUCores float64 `json:"cpu_cores"`
	// RSS before the bench connected, with every connection up, at the
	// end (traffic: after the window and the settle wait; connect: at the
	// end of the storm, before the hold) and the most seen;
	// MemBytesPerConn is (connected − before) / connections.
	RSSBeforeBytes    int64   `json:"rss_before_bytes"`
	RSSConnectedBytes int64   `json:"rss_connected_bytes"`
	RSSEndBytes       int64   `json:"rss_end_bytes"`
	RSSPeakBytes      int64   `json:"rss_peak_bytes"`
	MemBytesPerConn   float64 `json:"mem_bytes_per_conn"`
	// MemPerConnNoisy says the RSS did not grow while the connections
	// opened (the runtime returned memory meanwhile): the sample says
	// nothing, and MemBytesPerConn is 0.
	MemPerConnNoisy bool `json:"mem_per_conn_noisy,omitempty"`
	// Metrics holds the change of every scraped chatgate_* counter over the
	// run, and the last value of gauges.
	Metrics map[string]float64 `json:"metrics,omitempty"`
	Errors  []string           `json:"errors,omitempty"`
}

// TimelinePoint is one --interval of the window.
type TimelinePoint struct {
	TS             float64 `json:"t_s"`
	DeliveriesPerS float64 `json:"deliveries_per_s"`
	SentPerS       float64 `json:"sent_per_s"`
	P50Us          int64   `json:"p50_us"`
	P99Us          int64   `json:"p99_us"`
	MaxUs          int64   `json:"max_us"`
	Conns          int64   `json:"conns"`
	// The slow listeners' deliveries and p99 (slow only; absent in an
	// interval where they received nothing).
	SlowDeliveriesPerS float64 `json:"slow_deliveries_per_s,omitempty"`
	SlowP99Us          int64   `json:"slow_p99_us,omitempty"`
}

// Event kinds.
const (
	EventDrain   = "drain"   // the drain ran (--drain-cmd or by hand at --drain-at)
	EventEvicted = "evicted" // connections closed with 4008 slow_consumer
	EventShed    = "shed"    // connections closed with 1013 (the gateway's total queue was full)
)

// Event is a moment of the run, marked on the report's charts. Closes are
// gathered per --interval: TS is the first of them, Count how many.
type Event struct {
	TS    float64 `json:"t_s"`
	Kind  string  `json:"kind"`
	Count int64   `json:"count"`
}

// Thresholds is the verdict on --slo-p99, --max-loss and the others.
type Thresholds struct {
	Checked    []string `json:"checked"`
	Violations []string `json:"violations"`
	Passed     bool     `json:"passed"`
}
