package cluster

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the chatgate_backplane_* families. None has a room label.
type metrics struct {
	publishDuration prometheus.Histogram
	publishErrors   prometheus.Counter
	gaps            prometheus.Counter
	conflicts       prometheus.Counter
	liveGaps        prometheus.Counter
	drops           prometheus.Counter
	repairs         map[repairCause]prometheus.Counter
	repaired        prometheus.Counter
	repairDuration  prometheus.Histogram
}

// publishBuckets cover a loopback PubAck (~100µs) to a struggling cluster.
var publishBuckets = []float64{
	0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
}

func newMetrics(reg prometheus.Registerer, bp *Backplane) *metrics {
	const ns = "chatgate"
	m := &metrics{
		publishDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "backplane_publish_duration_seconds",
			Help: "Time from accepting a send to its JetStream PubAck (the message is stored), retries included; successful publishes only.", Buckets: publishBuckets}),
		publishErrors: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "backplane_publish_errors_total",
			Help: "Sends answered with unavailable: not stored in the stream, or stored but not delivered on this replica within the publish timeout or before the stream was lost."}),
		conflicts: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "backplane_publish_conflicts_total",
			Help: "Publish attempts refused because another replica had just stored a message in the same room (each is retried)."}),
		gaps: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "backplane_delivery_gaps_total",
			Help: "Times a room lost messages before this replica delivered them: gone from the stream before a repair could read them (trimmed or aged out), or lost with the stream itself (a NATS server restarted without its store)."}),
		liveGaps: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "backplane_live_gaps_total",
			Help: "Live messages that named a previous message of their room this replica had not received (a republished message missed); each starts a repair from the stream."}),
		drops: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "backplane_live_drops_total",
			Help: "Times the NATS client reported dropping a room's live messages because this replica's dispatchers were behind (a slow consumer); each starts a repair."}),
		repairs: make(map[repairCause]prometheus.Counter, len(repairCauses)),
		repaired: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "backplane_repaired_messages_total",
			Help: "Messages delivered from the stream by repairs rather than live."}),
		repairDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "backplane_repair_duration_seconds",
			Help: "Time from asking for a room's repair to live delivery resuming in order (messages held meanwhile).", Buckets: publishBuckets}),
	}
	repairs := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "backplane_repairs_total",
		Help: "Repairs asked for, by cause: gap (a live message named one not received), dropped (the NATS client dropped live messages), resync (the stream was checked after a reconnect or replaced), ack (a send of this replica not back live in time), hint (another replica delivered further)."},
		[]string{"cause"})
	for _, c := range repairCauses {
		m.repairs[c] = repairs.WithLabelValues(string(c))
	}
	if reg == nil {
		return m
	}
	reg.MustRegister(m.publishDuration, m.publishErrors, m.gaps, m.conflicts, m.liveGaps, m.drops, repairs, m.repaired, m.repairDuration,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Name: "backplane_up",
			Help: "1 while this replica is connected to NATS, the stream is in place and JetStream answers within the health timeout (the readiness condition)."}, func() float64 {
			if bp.Up() {
				return 1
			}
			return 0
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Name: "backplane_repairing_rooms",
			Help: "Rooms whose live delivery waits for a repair from the stream (their live messages are held meanwhile)."}, bp.repairingRooms),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Name: "backplane_presence_sync_age_seconds",
			Help: "Age of the oldest presence information held from another replica; below the presence TTL while the backplane is up, it grows during an outage (the users are kept, not expired)."}, bp.presenceAge),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Name: "backplane_rooms",
			Help: "Rooms this replica serves (rooms with local members): one core NATS subscription each, to the room's live subject, which carries its stored messages and its presence."}, func() float64 { return float64(bp.Rooms()) }),
	)
	return m
}

func (bp *Backplane) repairingRooms() float64 {
	n := 0
	for _, r := range bp.allRooms() {
		r.mu.Lock()
		if r.rep.active && !r.rep.setup && !r.closed {
			n++
		}
		r.mu.Unlock()
	}
	return float64(n)
}

func (bp *Backplane) presenceAge() float64 {
	now := time.Now()
	var oldest time.Duration
	for _, r := range bp.allRooms() {
		r.mu.Lock()
		oldest = max(oldest, r.pres.oldest(now))
		r.mu.Unlock()
	}
	return oldest.Seconds()
}
