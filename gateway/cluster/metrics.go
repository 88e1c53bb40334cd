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
			Help: "Sends that could not be stored in the stream (answered with unavailable)."}),
		conflicts: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "backplane_publish_conflicts_total",
			Help: "Publish attempts refused because another replica had just stored a message in the same room (each is retried)."}),
		gaps: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "backplane_delivery_gaps_total",
			Help: "Times a room lost messages before this replica delivered them: removed from the stream first (trimmed or aged out), or lost with the stream itself (a NATS server restarted without its store)."}),
	}
	if reg == nil {
		return m
	}
	reg.MustRegister(m.publishDuration, m.publishErrors, m.gaps, m.conflicts,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Name: "backplane_up",
			Help: "1 while this replica is connected to NATS, the stream is in place and JetStream answers within the health timeout (the readiness condition)."}, func() float64 {
			if bp.Up() {
				return 1
			}
			return 0
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Name: "backplane_consumer_lag",
			Help: "Messages stored but not yet delivered by this replica's room consumers, summed over rooms (sampled at each delivery)."}, bp.consumerLag),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Name: "backplane_presence_sync_age_seconds",
			Help: "Age of the oldest presence information held from another replica; below the presence TTL while the backplane is up, it grows during an outage (the users are kept, not expired)."}, bp.presenceAge),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Name: "backplane_rooms",
			Help: "Rooms this replica holds a consumer for (rooms with local members)."}, func() float64 { return float64(bp.Rooms()) }),
	)
	return m
}

func (bp *Backplane) consumerLag() float64 {
	var n uint64
	for _, r := range bp.allRooms() {
		r.mu.Lock()
		n += r.pending
		r.mu.Unlock()
	}
	return float64(n)
}

func (bp *Backplane) presenceAge() float64 {
	now := time.Now()
	var oldest time.Duration
	for _, r := range bp.allRooms() {
		r.mu.Lock()
		for _, rv := range r.remote {
			oldest = max(oldest, now.Sub(rv.lastSeen))
		}
		r.mu.Unlock()
	}
	return oldest.Seconds()
}
