package compare

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testRuns: idle and rooms10k, three repetitions; one gorilla idle run
// failed and one chatgate idle attempt was busy (retried), so neither
// counts.
func testRuns() ([]Scenario, []RunRecord) {
	scs, _ := SelectScenarios("idle,rooms10k")
	rec := func(idx, attempt int, sc, srv string, rep int, figs map[string]float64) RunRecord {
		return RunRecord{Index: idx, Attempt: attempt, Scenario: sc, Server: srv, Rep: rep, Valid: true, Figures: figs,
			LoadAvg: [3]float64{0.2, 0.3, 0.4}, Usage: &Usage{OtherCores: 0.01}}
	}
	runs := []RunRecord{
		rec(0, 1, "idle", Gorilla, 1, map[string]float64{FigMemIdle: 17.1, FigConnsUp: 15000}),
		rec(1, 1, "idle", Chatgate, 1, map[string]float64{FigMemIdle: 3.5, FigConnsUp: 15000}),
		rec(2, 1, "idle", Gorilla, 2, map[string]float64{FigMemIdle: 17.6, FigConnsUp: 15000}),
		rec(3, 1, "idle", Chatgate, 2, map[string]float64{FigMemIdle: 99, FigConnsUp: 15000}),
		rec(3, 2, "idle", Chatgate, 2, map[string]float64{FigMemIdle: 4.5, FigConnsUp: 15000}),
		rec(4, 1, "idle", Gorilla, 3, nil),
		rec(5, 1, "idle", Chatgate, 3, map[string]float64{FigMemIdle: 3.9, FigConnsUp: 15000}),
		rec(6, 1, "rooms10k", Chatgate, 1, map[string]float64{FigP99: 8, FigLoss: 0, FigNotChecked: 0}),
		rec(7, 1, "rooms10k", Chatgate, 2, map[string]float64{FigP99: 12, FigLoss: 0, FigNotChecked: 0}),
		rec(8, 1, "rooms10k", Chatgate, 3, map[string]float64{FigP99: 9, FigLoss: 0.5, FigNotChecked: 0}),
	}
	runs[3].Valid, runs[3].Busy = false, "during the run: other processes used 0.90 cores (limit 0.15)"
	runs[5].Valid, runs[5].Error = false, "the gorilla server exited during the run"
	return scs, runs
}

func TestSummarizeRuns(t *testing.T) {
	scs, runs := testRuns()
	rows := summarizeRuns(scs, runs, false)
	get := func(sc, fig string) FigureSummary {
		for _, r := range rows {
			if r.Scenario == sc && r.Figure == fig {
				return r
			}
		}
		t.Fatalf("no row %s/%s in %+v", sc, fig, rows)
		return FigureSummary{}
	}
	mem := get("idle", FigMemIdle)
	if g := *mem.Gorilla; g.N != 2 || math.Abs(g.Median-17.35) > 1e-9 || g.Min != 17.1 || g.Max != 17.6 {
		t.Fatalf("gorilla memory %+v: the failed run must not count", *mem.Gorilla)
	}
	if *mem.Chatgate != (Spread{N: 3, Median: 3.9, Min: 3.5, Max: 4.5}) {
		t.Fatalf("chatgate memory %+v: the busy attempt must not count", *mem.Chatgate)
	}
	if mem.Ratio == nil || math.Abs(*mem.Ratio-3.9/17.35) > 1e-9 || mem.Met == nil || !*mem.Met {
		t.Fatalf("ratio %v met %v", mem.Ratio, mem.Met)
	}
	p99 := get("rooms10k", FigP99)
	if p99.Gorilla != nil || p99.Ratio != nil || p99.Chatgate.Median != 9 || !*p99.Met {
		t.Fatalf("rooms p99 %+v", p99)
	}
	if loss := get("rooms10k", FigLoss); loss.Met == nil || *loss.Met {
		t.Fatalf("one run lost messages: the 0-loss target is missed, got %+v", loss)
	}
	for _, r := range summarizeRuns(scs, runs, true) {
		if r.Met != nil {
			t.Fatalf("a scaled run judged %s/%s", r.Scenario, r.Figure)
		}
	}
}

func TestMarkdown(t *testing.T) {
	scs, runs := testRuns()
	cfg := DefaultConfig()
	r := newReport(&cfg, scs)
	r.StartedAt = time.Date(2026, 12, 7, 11, 41, 0, 0, time.UTC)
	r.Machine = Machine{CPUModel: "AMD EPYC 7B13", CPUs: 2, Kernel: "6.1.0"}
	r.ChatgateCommit, r.GorillaModule, r.GoVersion = "abc1234", "github.com/gorilla/websocket v1.5.3", "go1.26.8"
	for _, rec := range runs {
		r.add(rec)
	}
	r.finish(BuildPlan(scs, 3))
	if r.Complete {
		t.Fatal("the gorilla run 5 failed: the report is not complete")
	}
	md := r.Markdown()
	for _, want := range []string{
		"on 2 × AMD EPYC 7B13, Linux 6.1.0, go1.26.8; chatgate abc1234, the gorilla example from `github.com/gorilla/websocket v1.5.3`",
		"Server pinned to CPU 0, chatbench to CPU 1, a fresh server per run; 3 repetitions, interleaved (gorilla, chatgate)",
		"`--log-format json --log-level warn --max-conns-per-ip 100000 --handshake-rate 100000 --handshake-burst 100000 --send-rate 100000 --send-burst 100000`",
		"**Incomplete: some planned runs have no quiet, completed attempt (see Runs).**",
		"| Scenario | Figure | gorilla | chatgate | chatgate/gorilla | Target | Met |",
		"| idle: 15,000 connections in one room, held 5s | memory per connection (RSS growth / connections, after the hold) | 17.4 KiB (17.1–17.6) [2 of 3 runs] | 3.9 KiB (3.5–4.5) | 0.22 | ≤ 4 KiB | met |",
		"|  | connections up | 15,000 (15,000–15,000) [2 of 3 runs] | 15,000 (15,000–15,000) | 1.00 |  |  |",
		"| delivery p99 | n/a | 9.00 ms (8.00–12.0) | – | ≤ 10 ms | met |",
		"| lost, of the deliveries expected by the members checked | n/a | 0% (0–0.5) | – | 0 in every run | **missed** |",
		"- rooms10k: chatgate only: the gorilla example has no rooms",
		"- 1 attempts were busy and retried, 1 failed; they are not counted.",
		"| 4 | idle | chatgate | 2 | 0.20, 0.30, 0.40 | 0.00 / 0.01 | 0.00 | busy, not counted: during the run: other processes used 0.90 cores (limit 0.15) |",
		"| 4 (attempt 2) | idle | chatgate | 2 | 0.20, 0.30, 0.40 | 0.00 / 0.01 | 0.00 | quiet |",
		"| 5 | idle | gorilla | 3 | 0.20, 0.30, 0.40 | 0.00 / 0.01 | 0.00 | failed: the gorilla server exited during the run |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks\n%s\n--- in ---\n%s", want, md)
		}
	}
	if strings.Contains(md, "NOT QUIET") {
		t.Error("no busy run was counted, yet the report says NOT QUIET")
	}

	// A busy run counted with --allow-busy makes the report say so.
	r.Runs[3].Valid = true
	r.Settings.AllowBusy = true
	if md := r.Markdown(); !strings.Contains(md, "**NOT QUIET: 1 runs were busy and counted anyway (`--allow-busy`). These numbers cannot be compared with others.**") {
		t.Errorf("no NOT QUIET banner:\n%s", md)
	}

	// compare.json holds every attempt and the summary.
	dir := t.TempDir()
	if err := r.write(dir, md); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "compare.json"))
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.Schema != ReportSchema || len(back.Runs) != len(runs) || len(back.Summary) != len(r.Summary) || back.Runs[0].LoadAvg != [3]float64{0.2, 0.3, 0.4} {
		t.Fatalf("compare.json read back as %+v", back)
	}
}

func TestFormat(t *testing.T) {
	cases := []struct {
		s    *Spread
		unit string
		reps int
		want string
	}{
		{&Spread{N: 3, Median: 17.44, Min: 17.1, Max: 17.6}, unitKiB, 3, "17.4 KiB (17.1–17.6)"},
		{&Spread{N: 1, Median: 9.7}, unitUs, 1, "9.70 µs"},
		{&Spread{N: 3, Median: 2450, Min: 980, Max: 5030}, unitMs, 3, "2.45 s (0.98–5.03)"},
		{&Spread{N: 3, Median: 33.04, Min: 11, Max: 40}, unitMs, 3, "33.0 ms (11.0–40.0)"},
		{&Spread{N: 2, Median: 99564.4, Min: 99000, Max: 100128.8}, unitPerS, 3, "99,564/s (99,000–100,129) [2 of 3 runs]"},
		{&Spread{N: 1, Median: 0.0123}, unitPct, 1, "0.0123%"},
		{&Spread{N: 1, Median: 1234567}, unitCount, 1, "1,234,567"},
		{nil, unitMs, 3, "no figure"},
	}
	for _, tc := range cases {
		if got := formatSpread(tc.s, tc.unit, tc.reps); got != tc.want {
			t.Errorf("formatSpread(%+v, %q) = %q, want %q", tc.s, tc.unit, got, tc.want)
		}
	}
}
