package compare

import (
	"github.com/chatgate/chatgate/bench"
)

// Figure keys: what the harness reads from one chatbench result.
const (
	FigMemIdle        = "mem_idle_kib"
	FigMemLoad        = "mem_load_kib"
	FigConnsUp        = "conns_up"
	FigDeliveries     = "deliveries_per_s"
	FigCPUPerDelivery = "cpu_us_per_delivery"
	FigP99            = "p99_ms"
	FigLoss           = "loss_pct"
	FigNotChecked     = "not_checked"
	FigBenchCPU       = "bench_cpu_cores"
	FigHandshakes     = "handshakes_per_s"
	FigConnectP99     = "connect_p99_ms"
	FigConnectFailed  = "connect_failed"
	FigCPUPerConn     = "cpu_us_per_conn"
)

// Units of the figures (how the table prints them).
const (
	unitKiB   = "KiB"
	unitUs    = "µs"
	unitMs    = "ms"
	unitS     = "s" // milliseconds from a second up, when printed
	unitPerS  = "/s"
	unitPct   = "%"
	unitCount = ""
	unitCores = "cores"
)

// figure is one number per run, computed from chatbench's JSON result.
type figure struct {
	Label string
	Short string // in progress lines
	Unit  string
	// get returns the figure, or false when the run did not measure it (no
	// connection up, no delivery, an RSS that did not grow).
	get func(r *bench.Result) (float64, bool)
}

var figures = map[string]figure{
	FigMemIdle: {"memory per connection (RSS growth / connections, after the hold)", "mem/conn", unitKiB, func(r *bench.Result) (float64, bool) {
		if r.Server == nil {
			return 0, false
		}
		return perConnKiB(r.Server.RSSBeforeBytes, r.Server.RSSEndBytes, r.Connections.Established)
	}},
	FigMemLoad: {"memory per connection under load (peak RSS growth / connections)", "mem/conn", unitKiB, func(r *bench.Result) (float64, bool) {
		if r.Server == nil {
			return 0, false
		}
		return perConnKiB(r.Server.RSSBeforeBytes, r.Server.RSSPeakBytes, r.Connections.Established)
	}},
	FigConnsUp: {"connections up", "up", unitCount, func(r *bench.Result) (float64, bool) {
		return float64(r.Connections.Established), true
	}},
	FigDeliveries: {"deliveries per second achieved", "delivered", unitPerS, func(r *bench.Result) (float64, bool) {
		return r.Messages.DeliveriesPerS, r.WindowS > 0
	}},
	FigCPUPerDelivery: {"server CPU per delivery", "cpu/delivery", unitUs, func(r *bench.Result) (float64, bool) {
		if r.Server == nil || r.Server.CPUUsPerDelivery <= 0 {
			return 0, false
		}
		return r.Server.CPUUsPerDelivery, true
	}},
	FigP99: {"delivery p99", "p99", unitMs, func(r *bench.Result) (float64, bool) {
		return float64(r.Latency.P99Us) / 1000, r.Latency.Count > 0
	}},
	FigLoss: {"lost, of the deliveries expected by the members checked", "lost", unitPct, func(r *bench.Result) (float64, bool) {
		c := r.Correctness
		if c.Expected <= 0 {
			return 0, false
		}
		return float64(c.Lost) * 100 / float64(c.Expected), true
	}},
	FigNotChecked: {"members closed by the server or never joined (not checked for loss)", "not checked", unitCount, func(r *bench.Result) (float64, bool) {
		return float64(r.Correctness.MembersExcluded), true
	}},
	FigBenchCPU: {"chatbench's own CPU over the window or the storm (1 = its core was saturated)", "bench cpu", unitCores, func(r *bench.Result) (float64, bool) {
		return r.ClientCPUCores, r.WindowS > 0
	}},
	FigHandshakes: {"handshakes per second achieved", "handshakes", unitPerS, func(r *bench.Result) (float64, bool) {
		return r.Connections.HandshakesPerS, r.Connections.Established > 0
	}},
	FigConnectP99: {"handshake p99 (from the scheduled start to the 101)", "p99", unitMs, func(r *bench.Result) (float64, bool) {
		l := r.Connections.ConnectLatency
		return float64(l.P99Us) / 1000, l.Count > 0
	}},
	FigConnectFailed: {"failed handshakes", "failed", unitCount, func(r *bench.Result) (float64, bool) {
		return float64(r.Connections.Failed), r.Connections.Attempted > 0
	}},
	FigCPUPerConn: {"server CPU per handshake", "cpu/handshake", unitUs, func(r *bench.Result) (float64, bool) {
		if r.Server == nil || r.Server.CPUUsPerConnection <= 0 {
			return 0, false
		}
		return r.Server.CPUUsPerConnection, true
	}},
}

// perConnKiB is (after − before) / conns in KiB; false when a sample is
// missing or the RSS did not grow (the runtime returned memory meanwhile:
// the sample says nothing).
func perConnKiB(before, after, conns int64) (float64, bool) {
	if before <= 0 || after <= 0 || conns <= 0 || after <= before {
		return 0, false
	}
	return float64(after-before) / float64(conns) / 1024, true
}

// extract computes the figures of sc from one result.
func extract(sc *Scenario, r *bench.Result) map[string]float64 {
	out := make(map[string]float64, len(sc.Figures))
	for _, key := range sc.Figures {
		if v, ok := figures[key].get(r); ok {
			out[key] = v
		}
	}
	return out
}
