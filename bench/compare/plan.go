package compare

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/chatgate/chatgate/bench"
)

// Servers compared.
const (
	Gorilla  = "gorilla"  // github.com/gorilla/websocket/examples/chat, from the module in go.mod
	Chatgate = "chatgate" // ./cmd/chatgate
)

// Target is one of issue 16's targets, judged on chatgate's figure.
type Target struct {
	Kind  string  `json:"kind"` // at_most, at_least (chatgate's median), ratio_at_most (chatgate/gorilla medians), zero (every run)
	Value float64 `json:"value"`
	Text  string  `json:"text"`
}

// Target kinds.
const (
	AtMost      = "at_most"
	AtLeast     = "at_least"
	RatioAtMost = "ratio_at_most"
	Zero        = "zero"
)

// judge says whether the target is met; ok is false when the runs cannot
// tell (no valid chatgate run, or no gorilla figure for a ratio).
func (t Target) judge(chatgate, gorilla *Spread) (met, ok bool) {
	if chatgate == nil {
		return false, false
	}
	switch t.Kind {
	case AtMost:
		return chatgate.Median <= t.Value, true
	case AtLeast:
		return chatgate.Median >= t.Value, true
	case Zero:
		return chatgate.Max == 0, true
	case RatioAtMost:
		r, ok := ratio(chatgate, gorilla)
		return ok && r <= t.Value, ok
	}
	return false, false
}

// Scenario is one comparison: the chatbench run both servers get.
type Scenario struct {
	Name  string `json:"name"`
	Title string `json:"title"`
	// Bench is the chatbench scenario (fanout, rooms, connect).
	Bench           string        `json:"bench"`
	Conns           int           `json:"conns"`
	Rooms           int           `json:"rooms"`
	Senders         int           `json:"senders_per_room"`
	Rate            float64       `json:"rate_per_sender"`
	Size            int           `json:"size_bytes"`
	Duration        time.Duration `json:"duration_ns"` // the window (traffic; with no senders, the idle hold)
	Hold            time.Duration `json:"hold_ns"`     // connect only
	ConnectRate     float64       `json:"connect_rate"`
	DialConcurrency int           `json:"dial_concurrency"`
	Servers         []string      `json:"servers"`
	// Note is printed under the table (why a server is left out).
	Note    string            `json:"note,omitempty"`
	Figures []string          `json:"figures"`
	Targets map[string]Target `json:"targets,omitempty"`
}

// both lists the servers in the order every repetition runs them.
var both = []string{Gorilla, Chatgate}

var trafficFigures = []string{FigDeliveries, FigP99, FigLoss, FigNotChecked, FigCPUPerDelivery, FigMemLoad, FigBenchCPU}

// lossTargets: "0 loss" means nothing lost and nobody dropped.
func lossTargets(m map[string]Target) map[string]Target {
	m[FigLoss] = Target{Kind: Zero, Text: "0 in every run"}
	m[FigNotChecked] = Target{Kind: Zero, Text: "0 in every run"}
	return m
}

// Suite is issue 16's targets as scenarios, in the order they run.
func Suite() []Scenario {
	suite := []Scenario{
		{
			Name:  "idle",
			Bench: bench.ScenarioFanout, Conns: 15000, Rooms: 1, Senders: 0, Size: 64,
			Duration: 5 * time.Second, ConnectRate: 3000, Servers: both,
			Note:    "every connection joins the room (chatgate, which sends the room presence updates, at most 4 a second, while they join) or the hub (gorilla, which has one room) before the hold",
			Figures: []string{FigMemIdle, FigConnsUp},
			Targets: map[string]Target{FigMemIdle: {Kind: AtMost, Value: 4, Text: "≤ 4 KiB"}},
		},
		{
			Name:  "fanout100k",
			Bench: bench.ScenarioFanout, Conns: 1000, Rooms: 1, Senders: 10, Rate: 10, Size: 64,
			Duration: 15 * time.Second, Servers: both, Figures: trafficFigures,
			Targets: lossTargets(map[string]Target{
				FigMemLoad:        {Kind: AtMost, Value: 8, Text: "≤ 8 KiB"},
				FigCPUPerDelivery: {Kind: RatioAtMost, Value: 0.5, Text: "≤ 0.5× gorilla"},
				FigP99:            {Kind: RatioAtMost, Value: 0.5, Text: "≤ 0.5× gorilla"},
			}),
		},
		{
			Name:  "fanout600k",
			Bench: bench.ScenarioFanout, Conns: 1000, Rooms: 1, Senders: 10, Rate: 60, Size: 64,
			Duration: 15 * time.Second, Servers: both, Figures: trafficFigures,
			Targets: lossTargets(map[string]Target{
				FigP99: {Kind: RatioAtMost, Value: 0.5, Text: "≤ 0.5× gorilla"},
			}),
		},
		{
			Name:  "fanout1m",
			Bench: bench.ScenarioFanout, Conns: 1000, Rooms: 1, Senders: 10, Rate: 100, Size: 64,
			Duration: 30 * time.Second, Servers: both, Figures: trafficFigures,
			Targets: lossTargets(map[string]Target{
				FigP99: {Kind: AtMost, Value: 50, Text: "≤ 50 ms"},
			}),
		},
		{
			Name:  "rooms10k",
			Bench: bench.ScenarioRooms, Conns: 10000, Rooms: 100, Senders: 1, Rate: 10, Size: 64,
			Duration: 15 * time.Second, Servers: []string{Chatgate}, Figures: trafficFigures,
			Note: "chatgate only: the gorilla example has no rooms (every message goes to every connection)",
			Targets: lossTargets(map[string]Target{
				FigP99: {Kind: AtMost, Value: 10, Text: "≤ 10 ms"},
			}),
		},
		{
			Name:  "handshake",
			Bench: bench.ScenarioConnect, Conns: 10000, Rooms: 1, Size: 64,
			Hold: time.Second, ConnectRate: 5000, DialConcurrency: 256, Servers: both,
			Note:    "achieved is connections / (last 101 − first scheduled start): a server that keeps the schedule shows a little under the offered rate, so the target counts 99% of it",
			Figures: []string{FigHandshakes, FigConnectP99, FigConnectFailed, FigCPUPerConn, FigBenchCPU},
			Targets: map[string]Target{
				FigHandshakes:    {Kind: AtLeast, Value: 4950, Text: "≥ 5,000/s (≥ 99% of the offered 5,000/s)"},
				FigConnectP99:    {Kind: AtMost, Value: 20, Text: "≤ 20 ms"},
				FigConnectFailed: {Kind: Zero, Text: "0 in every run"},
			},
		},
	}
	for i := range suite {
		suite[i].Title = suite[i].describe()
	}
	return suite
}

// describe is the scenario in words, from its parameters.
func (s *Scenario) describe() string {
	n := thousands(int64(s.Conns))
	switch {
	case s.Bench == bench.ScenarioConnect:
		return fmt.Sprintf("handshakes: %s connections opened at %s/s", n, thousands(int64(s.ConnectRate)))
	case s.Senders == 0:
		return fmt.Sprintf("idle: %s connections in one room, held %v", n, s.Duration)
	}
	load := fmt.Sprintf("%d B texts, %s deliveries/s for %v", s.Size, thousands(int64(s.TargetDeliveries())), s.Duration)
	if s.Bench == bench.ScenarioRooms {
		return fmt.Sprintf("rooms: %s connections over %s, %s × %g/s in each, %s", n, plural(s.Rooms, "room"), plural(s.Senders, "sender"), s.Rate, load)
	}
	return fmt.Sprintf("fan-out: 1 room × %s, %s × %g/s, %s", n, plural(s.Senders, "sender"), s.Rate, load)
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return thousands(int64(n)) + " " + word + "s"
}

// SelectScenarios picks scenarios by name (a comma-separated list, or
// "all"), in the suite's order.
func SelectScenarios(list string) ([]Scenario, error) {
	suite := Suite()
	list = strings.TrimSpace(list)
	if list == "" || list == "all" {
		return suite, nil
	}
	names := scenarioNames()
	want := map[string]bool{}
	for _, n := range strings.Split(list, ",") {
		n = strings.TrimSpace(n)
		if n == "" {
			continue
		}
		if !slices.Contains(names, n) {
			return nil, fmt.Errorf("unknown scenario %q (want some of %s, or all)", n, strings.Join(names, ", "))
		}
		want[n] = true
	}
	var out []Scenario
	for _, s := range suite {
		if want[s.Name] {
			out = append(out, s)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no scenario given")
	}
	return out, nil
}

// Scale shrinks a scenario for a smoke run: connections and rooms by
// connScale (at least 10 connections), every duration (windows, holds and
// connection storms) by timeScale (at least 100 ms). Rates per sender stay,
// so deliveries per second shrink with the rooms.
func (s Scenario) Scale(connScale, timeScale float64) Scenario {
	if connScale == 1 && timeScale == 1 {
		return s
	}
	s.Rooms = max(1, int(math.Round(float64(s.Rooms)*connScale)))
	s.Conns = max(10, s.Rooms, int(math.Round(float64(s.Conns)*connScale)))
	s.Senders = min(s.Senders, s.Conns/s.Rooms)
	s.Duration = scaleDuration(s.Duration, timeScale)
	s.Hold = scaleDuration(s.Hold, timeScale)
	if s.ConnectRate > 0 {
		// The storm keeps its share of the (shrunk) time.
		s.ConnectRate = max(1, math.Round(s.ConnectRate*connScale/timeScale))
	}
	s.Title = s.describe()
	return s
}

func scaleDuration(d time.Duration, f float64) time.Duration {
	if d == 0 {
		return 0
	}
	return max(100*time.Millisecond, time.Duration(float64(d)*f).Round(time.Millisecond))
}

// TargetDeliveries is what the schedule asks for per second: each sender
// reaches every member of its room, itself included.
func (s *Scenario) TargetDeliveries() float64 {
	return float64(s.Senders*s.Rooms) * s.Rate * float64(s.Conns/s.Rooms)
}

// Run is one repetition of one scenario against one server.
type Run struct {
	Index    int // from 0, in the order runs happen
	Scenario *Scenario
	Server   string
	Rep      int // from 1
	// Net is the third octet of the run's source addresses 127.0.Net.1-4:
	// each run gets fresh ones, so no socket of an earlier run (TIME_WAIT)
	// takes a port it needs.
	Net int
}

// SourceIPs is the run's --source-ips.
func (r *Run) SourceIPs() string {
	return fmt.Sprintf("127.0.%d.1-127.0.%d.4", r.Net, r.Net)
}

// BuildPlan interleaves the runs: for each scenario, each repetition runs
// every server in turn (gorilla, chatgate, gorilla, chatgate, ...).
func BuildPlan(scenarios []Scenario, reps int) []Run {
	var runs []Run
	for i := range scenarios {
		sc := &scenarios[i]
		for rep := 1; rep <= reps; rep++ {
			for _, srv := range sc.Servers {
				n := len(runs)
				runs = append(runs, Run{Index: n, Scenario: sc, Server: srv, Rep: rep, Net: 1 + n%250})
			}
		}
	}
	return runs
}

// BenchArgs is the chatbench command line of a run (after the binary).
// metricsURL is empty for gorilla, which has no metrics.
func (r *Run) BenchArgs(wsURL string, serverPID int, metricsURL, reportPath string) []string {
	s := r.Scenario
	args := []string{s.Bench,
		"--url", wsURL,
		"--conns", strconv.Itoa(s.Conns),
		"--source-ips", r.SourceIPs(),
		"--server-pid", strconv.Itoa(serverPID),
		"--json", "--progress", "off",
	}
	if r.Server == Gorilla {
		args = append(args, "--proto", bench.ProtoRaw)
	} else if metricsURL != "" {
		args = append(args, "--server-metrics", metricsURL)
	}
	if s.Bench == bench.ScenarioConnect {
		args = append(args, "--connect-rate", fmtFloat(s.ConnectRate), "--hold", s.Hold.String())
	} else {
		args = append(args,
			"--senders", strconv.Itoa(s.Senders),
			"--rate", fmtFloat(s.Rate),
			"--size", strconv.Itoa(s.Size),
			"--duration", s.Duration.String())
		if s.Bench == bench.ScenarioRooms {
			args = append(args, "--rooms", strconv.Itoa(s.Rooms))
		}
		if s.ConnectRate > 0 {
			args = append(args, "--connect-rate", fmtFloat(s.ConnectRate))
		}
	}
	if s.DialConcurrency > 0 {
		args = append(args, "--dial-concurrency", strconv.Itoa(s.DialConcurrency))
	}
	if reportPath != "" {
		args = append(args, "--report", reportPath)
	}
	return args
}

func fmtFloat(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

// Estimate is roughly how long a run takes, from the quiet probe to the
// server's exit; worst adds what a server that falls behind can add
// (chatbench's full settle wait, slow closes).
func (r *Run) Estimate(probe time.Duration) (typical, worst time.Duration) {
	s := r.Scenario
	const start = 300 * time.Millisecond // the server starting and answering
	setupRate := s.ConnectRate
	if setupRate == 0 {
		setupRate = 2000 // about what 64 handshakes in flight do on loopback
	}
	setup := time.Duration(float64(s.Conns) / setupRate * float64(time.Second))
	closing := 200*time.Millisecond + time.Duration(s.Conns)*100*time.Microsecond
	typical = probe + start + setup + closing
	if s.Bench == bench.ScenarioConnect {
		typical += s.Hold
		return typical, typical + 3*time.Second // closes that take chatbench's full 3 s
	}
	typical += s.Duration + 300*time.Millisecond // the window, then a short settle
	return typical, typical + 5*time.Second + 3*time.Second
}

// EstimatePlan sums the runs' estimates.
func EstimatePlan(runs []Run, probe time.Duration) (typical, worst time.Duration) {
	for i := range runs {
		t, w := runs[i].Estimate(probe)
		typical += t
		worst += w
	}
	return typical, worst
}
