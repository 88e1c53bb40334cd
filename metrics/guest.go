package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/chatgate/chatgate/gateway/observe"
)

// guestSessions registers chatgate_guest_sessions_total with a child for
// every outcome.
func guestSessions(f factory) map[observe.GuestOutcome]prometheus.Counter {
	v := f.counterVec("guest_sessions_total",
		"Anonymous connections by what became of their guest identity: new (no credential offered), resumed (the same user again), or a new guest because the credential offered was expired, signed by an unknown key or invalid.", "outcome")
	out := make(map[observe.GuestOutcome]prometheus.Counter, len(observe.GuestOutcomes))
	for _, o := range observe.GuestOutcomes {
		out[o] = v.WithLabelValues(string(o))
	}
	return out
}

// GuestSession implements observe.GuestObserver.
func (m *Metrics) GuestSession(o observe.GuestOutcome) {
	if c, ok := m.guestSessions[o]; ok {
		c.Inc()
	}
}
