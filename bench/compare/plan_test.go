package compare

import (
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chatgate/chatgate/bench"
)

func TestSelectScenarios(t *testing.T) {
	names := func(scs []Scenario) string {
		var n []string
		for _, s := range scs {
			n = append(n, s.Name)
		}
		return strings.Join(n, ",")
	}
	cases := []struct {
		in, want, err string
	}{
		{"all", "idle,fanout100k,fanout600k,fanout1m,rooms10k,handshake", ""},
		{"", "idle,fanout100k,fanout600k,fanout1m,rooms10k,handshake", ""},
		{"handshake, idle", "idle,handshake", ""}, // the suite's order
		{"fanout100k,fanout100k", "fanout100k", ""},
		{"idle,nope", "", `unknown scenario "nope"`},
		{",", "", "no scenario given"},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			scs, err := SelectScenarios(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || names(scs) != tc.want {
				t.Fatalf("got %q, %v; want %q", names(scs), err, tc.want)
			}
		})
	}
}

// TestBuildPlanInterleaves: each repetition runs gorilla then chatgate;
// a chatgate-only scenario runs chatgate alone; every run gets its own
// source addresses.
func TestBuildPlanInterleaves(t *testing.T) {
	scs, err := SelectScenarios("fanout100k,rooms10k")
	if err != nil {
		t.Fatal(err)
	}
	plan := BuildPlan(scs, 3)
	var got []string
	nets := map[int]bool{}
	for i, r := range plan {
		if r.Index != i {
			t.Fatalf("run %d has index %d", i, r.Index)
		}
		got = append(got, r.Scenario.Name+"/"+r.Server+"/"+string(rune('0'+r.Rep)))
		nets[r.Net] = true
	}
	want := []string{
		"fanout100k/gorilla/1", "fanout100k/chatgate/1",
		"fanout100k/gorilla/2", "fanout100k/chatgate/2",
		"fanout100k/gorilla/3", "fanout100k/chatgate/3",
		"rooms10k/chatgate/1", "rooms10k/chatgate/2", "rooms10k/chatgate/3",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("plan\n got %v\nwant %v", got, want)
	}
	if len(nets) != len(plan) {
		t.Fatalf("%d runs share %d source networks", len(plan), len(nets))
	}
	if ips := plan[2].SourceIPs(); ips != "127.0.3.1-127.0.3.4" {
		t.Fatalf("run 3's source addresses %q", ips)
	}
}

// TestBenchArgsParse: every run's chatbench command line is one chatbench
// accepts, and says what the scenario means.
func TestBenchArgsParse(t *testing.T) {
	for _, scale := range []float64{1, 0.01} {
		var scs []Scenario
		for _, s := range Suite() {
			scs = append(scs, s.Scale(scale, scale))
		}
		for _, r := range BuildPlan(scs, 1) {
			t.Run(r.Scenario.Name+"/"+r.Server, func(t *testing.T) {
				metrics := ""
				if r.Server == Chatgate {
					metrics = "http://127.0.0.1:9/metrics"
				}
				args := r.BenchArgs("ws://127.0.0.1:8/ws", 4242, metrics, "/tmp/x.html")
				cfg, err := bench.ParseArgs(args, io.Discard)
				if err != nil {
					t.Fatalf("chatbench refuses %q: %v", args, err)
				}
				s := r.Scenario
				if cfg.Scenario != s.Bench || cfg.Conns != s.Conns || cfg.ServerPID != 4242 || !cfg.JSON || cfg.Progress != "off" || len(cfg.SourceIPs) != 4 {
					t.Fatalf("%q parsed as %+v", args, cfg)
				}
				if wantProto := map[string]string{Gorilla: bench.ProtoRaw, Chatgate: bench.ProtoChatgate}[r.Server]; cfg.Proto != wantProto || cfg.ServerMetrics != metrics {
					t.Fatalf("%s: proto %q, metrics %q", r.Server, cfg.Proto, cfg.ServerMetrics)
				}
				switch s.Bench {
				case bench.ScenarioConnect:
					if cfg.ConnectRate != s.ConnectRate || cfg.Hold != s.Hold || cfg.DialConcurrency != s.DialConcurrency {
						t.Fatalf("connect parsed as %+v", cfg)
					}
				default:
					if cfg.Senders != s.Senders || cfg.Rate != s.Rate || cfg.Size != s.Size || cfg.Duration != s.Duration || cfg.Rooms != s.Rooms || cfg.ConnectRate != s.ConnectRate {
						t.Fatalf("traffic parsed as %+v", cfg)
					}
				}
			})
		}
	}
}

func TestSuiteMatchesTheIssue(t *testing.T) {
	byName := map[string]Scenario{}
	for _, s := range Suite() {
		byName[s.Name] = s
	}
	cases := []struct {
		name       string
		deliveries float64
		conns      int
		servers    []string
	}{
		{"idle", 0, 15000, both},
		{"fanout100k", 100000, 1000, both},
		{"fanout600k", 600000, 1000, both},
		{"fanout1m", 1000000, 1000, both},
		{"rooms10k", 100000, 10000, []string{Chatgate}},
		{"handshake", 0, 10000, both},
	}
	for _, tc := range cases {
		s := byName[tc.name]
		if s.TargetDeliveries() != tc.deliveries || s.Conns != tc.conns || !slices.Equal(s.Servers, tc.servers) {
			t.Errorf("%s: %v deliveries/s, %d conns, servers %v", tc.name, s.TargetDeliveries(), s.Conns, s.Servers)
		}
		for key := range s.Targets {
			if !slices.Contains(s.Figures, key) {
				t.Errorf("%s: target on %s, which it does not report", tc.name, key)
			}
		}
		for _, key := range s.Figures {
			if _, ok := figures[key]; !ok {
				t.Errorf("%s: unknown figure %s", tc.name, key)
			}
		}
	}
	if s := byName["fanout1m"]; s.Duration != 30*time.Second {
		t.Errorf("1M deliveries/s must be sustained 30 s, got %v", s.Duration)
	}
	if s := byName["idle"]; s.Duration != 5*time.Second || s.Senders != 0 {
		t.Errorf("idle must hold 5 s with no sender: %+v", s)
	}
}

func TestScale(t *testing.T) {
	var rooms, idle, hs Scenario
	for _, s := range Suite() {
		switch s.Name {
		case "rooms10k":
			rooms = s.Scale(0.01, 0.1)
		case "idle":
			idle = s.Scale(0.01, 0.1)
		case "handshake":
			hs = s.Scale(0.01, 0.1)
		}
	}
	if rooms.Conns != 100 || rooms.Rooms != 1 || rooms.Senders != 1 || rooms.Duration != 1500*time.Millisecond {
		t.Fatalf("rooms scaled to %+v", rooms)
	}
	if idle.Conns != 150 || idle.Duration != 500*time.Millisecond || idle.ConnectRate != 300 || idle.Title != "idle: 150 connections in one room, held 500ms" {
		t.Fatalf("idle scaled to %+v", idle)
	}
	// The storm keeps its share of the shrunk time: 100 at 500/s.
	if hs.Conns != 100 || hs.ConnectRate != 500 || hs.Hold != 100*time.Millisecond {
		t.Fatalf("handshake scaled to %+v", hs)
	}
	if s := Suite()[1]; s.Scale(1, 1).Title != s.Title {
		t.Fatal("scale 1 changed the scenario")
	}
}

// TestEstimate: the whole suite at 3 repetitions is planned to take about
// 10 minutes, at most 20 even when every server falls behind.
func TestEstimate(t *testing.T) {
	plan := BuildPlan(Suite(), 3)
	typical, worst := EstimatePlan(plan, time.Second)
	var windows time.Duration
	for _, r := range plan {
		windows += r.Scenario.Duration + r.Scenario.Hold
	}
	if typical < windows || typical > 15*time.Minute || worst > 20*time.Minute || worst <= typical {
		t.Fatalf("estimate %v (worst %v) for %v of windows", typical, worst, windows)
	}
}
