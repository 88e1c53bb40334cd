package compare

import (
	"encoding/json"
	"testing"

	"github.com/chatgate/chatgate/bench"
)

// A traffic result as chatbench --json writes it (the fields the harness
// reads, under their JSON names).
const trafficJSON = `{
  "schema": "chatbench/v1", "scenario": "fanout", "proto": "chatgate",
  "window_s": 15,
  "connections": {"attempted": 1024, "established": 1024, "failed": 0,
    "connect_latency": {"count": 1000, "p99_us": 4100}, "handshakes_per_s": 1980.5},
  "messages": {"sent": 1500, "deliveries": 1499000, "deliveries_per_s": 99933.3},
  "latency": {"count": 1499000, "p50_us": 900, "p99_us": 12345, "max_us": 40000},
  "correctness": {"members_checked": 990, "members_excluded": 10, "expected": 1485000, "received": 1484703, "lost": 297},
  "server": {"source": "pid+metrics", "cpu_seconds": 13.5, "cpu_us_per_delivery": 9.006,
    "rss_before_bytes": 10485760, "rss_connected_bytes": 20971520, "rss_end_bytes": 25165824,
    "rss_peak_bytes": 31457280},
  "client_cpu_cores": 0.42
}`

const connectJSON = `{
  "schema": "chatbench/v1", "scenario": "connect", "proto": "raw",
  "window_s": 2.01,
  "connections": {"attempted": 10000, "established": 9990, "failed": 10,
    "connect_latency": {"count": 9990, "p99_us": 18500}, "handshakes_per_s": 4970.1},
  "server": {"source": "pid", "cpu_seconds": 2.2, "cpu_us_per_connection": 220.2,
    "rss_before_bytes": 8388608, "rss_connected_bytes": 100000000, "rss_end_bytes": 90000000, "rss_peak_bytes": 100000000}
}`

func TestExtract(t *testing.T) {
	parse := func(s string) *bench.Result {
		var r bench.Result
		if err := json.Unmarshal([]byte(s), &r); err != nil {
			t.Fatal(err)
		}
		return &r
	}
	traffic, connect := parse(trafficJSON), parse(connectJSON)
	sc := func(figs ...string) *Scenario { return &Scenario{Figures: figs} }
	cases := []struct {
		name string
		res  *bench.Result
		sc   *Scenario
		want map[string]float64
	}{
		{"traffic", traffic, sc(FigDeliveries, FigP99, FigLoss, FigNotChecked, FigCPUPerDelivery, FigMemLoad, FigBenchCPU), map[string]float64{
			FigDeliveries:     99933.3,
			FigP99:            12.345,
			FigLoss:           297 * 100 / 1485000.0,
			FigNotChecked:     10,
			FigCPUPerDelivery: 9.006,
			FigMemLoad:        20, // (30 MiB − 10 MiB) / 1024 connections
			FigBenchCPU:       0.42,
		}},
		{"idle", traffic, sc(FigMemIdle, FigConnsUp), map[string]float64{
			FigMemIdle: 14, // (24 MiB − 10 MiB) / 1024, at the end of the hold
			FigConnsUp: 1024,
		}},
		{"handshakes", connect, sc(FigHandshakes, FigConnectP99, FigConnectFailed, FigCPUPerConn), map[string]float64{
			FigHandshakes:    4970.1,
			FigConnectP99:    18.5,
			FigConnectFailed: 10,
			FigCPUPerConn:    220.2,
		}},
		// A connect run measures no delivery: those figures are absent,
		// not zero.
		{"nothing delivered", connect, sc(FigP99, FigLoss, FigCPUPerDelivery, FigDeliveries, FigBenchCPU), map[string]float64{
			FigDeliveries: 0, FigBenchCPU: 0,
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := extract(tc.sc, tc.res)
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for k, v := range tc.want {
				if g, ok := got[k]; !ok || g < v-1e-9 || g > v+1e-9 {
					t.Fatalf("%s = %v, want %v (all: %v)", k, got[k], v, got)
				}
			}
		})
	}
}

// TestMemoryFigureNeedsGrowth: an RSS that did not grow, or a missing
// sample, gives no memory figure rather than zero or a negative one.
func TestMemoryFigureNeedsGrowth(t *testing.T) {
	cases := []struct {
		name                string
		before, after, conn int64
		ok                  bool
	}{
		{"grew", 1 << 20, 2 << 20, 1024, true},
		{"shrank", 2 << 20, 1 << 20, 1024, false},
		{"same", 1 << 20, 1 << 20, 1024, false},
		{"no sample before", -1, 1 << 20, 1024, false},
		{"no connection", 1 << 20, 2 << 20, 0, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v, ok := perConnKiB(tc.before, tc.after, tc.conn)
			if ok != tc.ok || ok && v != 1 {
				t.Fatalf("perConnKiB = %v, %v", v, ok)
			}
		})
	}
}
