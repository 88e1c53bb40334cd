package compare

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
)

func TestFlags(t *testing.T) {
	tmp := t.TempDir()
	cases := []struct {
		name string
		args []string
		code int
		out  string
	}{
		{"help", []string{"--help"}, ExitOK, "Usage: chatbench compare [flags]"},
		{"unknown scenario", []string{"--scenarios", "idle,warp"}, ExitUsage, "chatbench compare: --scenarios: unknown scenario \"warp\""},
		{"same CPU", []string{"--server-cpu", "1"}, ExitUsage, "--server-cpu and --bench-cpu must differ"},
		{"no reps", []string{"--reps", "0"}, ExitUsage, "--reps must be 1-100, got 0\nRun 'chatbench compare --help' for the flags.\n"},
		{"bad scale", []string{"--scale", "2"}, ExitUsage, "--scale and --time-scale must be above 0 and at most 1"},
		{"stray argument", []string{"idle"}, ExitUsage, "unexpected arguments: idle"},
		{"missing binary", []string{"--chatgate-bin", "/nonexistent/chatgate", "--allow-busy", "--out", tmp}, ExitFailed, "chatbench compare: /nonexistent/chatgate is not an executable file (for ./cmd/chatgate)"},
		{"dry run", []string{"--dry-run", "--scenarios", "fanout1m", "--reps", "2"}, ExitOK,
			"chatbench compare: 1 scenario × 2 repetitions: 4 runs, interleaved gorilla, chatgate\n  estimated duration: about "},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := Main(context.Background(), tc.args, &stdout, &stderr)
			all := stdout.String() + stderr.String()
			if code != tc.code || !strings.Contains(all, tc.out) {
				t.Fatalf("exit %d (want %d), output:\n%s\nwant %q", code, tc.code, all, tc.out)
			}
		})
	}
}

// TestDryRunPrintsThePlan: the plan says what runs, how long it takes and
// the flags chatgate gets, and nothing is run.
func TestDryRunPrintsThePlan(t *testing.T) {
	var stdout, stderr bytes.Buffer
	out := filepath.Join(t.TempDir(), "never")
	if code := Main(context.Background(), []string{"--dry-run", "--out", out}, &stdout, &stderr); code != ExitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	for _, want := range []string{
		"6 scenarios × 3 repetitions: 33 runs",
		"estimated duration: about 9m",
		"fanout1m     6 runs",
		"rooms10k     3 runs",
		"chatgate flags: --log-format json --log-level warn " + strings.Join(RaisedLimits, " "),
		"server on CPU 0, chatbench on CPU 1 (taskset)",
		"a busy run is retried up to 2 times",
	} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("plan lacks %q:\n%s", want, stderr.String())
		}
	}
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a dry run made %s", out)
	}
}

// TestDocsRaiseTheSameLimits: docs/benchmarks.md starts chatgate for load
// with the limits the harness raises, no more.
func TestDocsRaiseTheSameLimits(t *testing.T) {
	root, err := repoRoot("")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile(filepath.Join(root, "docs", "benchmarks.md"))
	if err != nil {
		t.Fatal(err)
	}
	quick := strings.Join(strings.Fields(string(doc)), " ")
	for i := 0; i < len(RaisedLimits); i += 2 {
		if !strings.Contains(quick, RaisedLimits[i]+" "+RaisedLimits[i+1]) {
			t.Errorf("docs/benchmarks.md never raises %s %s", RaisedLimits[i], RaisedLimits[i+1])
		}
	}
}

// TestSmoke runs the whole harness at a tiny scale: it builds the three
// binaries, runs one repetition of four scenarios against real servers
// pinned with taskset, and writes the table and compare.json.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("builds three binaries and runs servers: not with -short")
	}
	need := func(why string) {
		if os.Getenv("CHATGATE_E2E") == "1" {
			t.Fatalf("%s (CHATGATE_E2E=1)", why)
		}
		t.Skip(why)
	}
	if _, err := exec.LookPath("taskset"); err != nil {
		need("taskset (util-linux) is not installed")
	}
	if runtime.NumCPU() < 2 {
		need("the harness pins the server and chatbench to two CPUs; this process has one")
	}
	if _, err := exec.LookPath("go"); err != nil {
		need("no go command to build with")
	}
	out := t.TempDir()
	var stdout, stderr bytes.Buffer
	args := []string{"--scenarios", "idle,fanout100k,rooms10k,handshake", "--reps", "1",
		"--scale", "0.01", "--time-scale", "0.1", "--allow-busy", "--probe", "200ms", "--out", out}
	code := Main(context.Background(), args, &stdout, &stderr)
	t.Logf("stderr:\n%s", stderr.String())
	if code != ExitOK && code != ExitIncomplete {
		t.Fatalf("exit %d", code)
	}
	b, err := os.ReadFile(filepath.Join(out, "compare.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rep Report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, r := range rep.Runs {
		order = append(order, r.Scenario+"/"+r.Server)
		if r.Error != "" || !r.Valid || r.Usage == nil {
			t.Errorf("run %d (%s/%s): error %q, valid %v, usage %v", r.Index+1, r.Scenario, r.Server, r.Error, r.Valid, r.Usage)
		}
		if !slices.Equal(r.ServerCmd[:3], []string{"taskset", "-c", "0"}) || !slices.Equal(r.BenchCmd[:3], []string{"taskset", "-c", "1"}) {
			t.Errorf("run %d not pinned: %q / %q", r.Index+1, r.ServerCmd, r.BenchCmd)
		}
		if err := syscall.Kill(r.ServerPID, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("run %d's server %d is still there (%v)", r.Index+1, r.ServerPID, err)
		}
		var res struct{ Scenario string }
		if err := json.Unmarshal(r.Result, &res); err != nil || res.Scenario == "" {
			t.Errorf("run %d keeps no chatbench result: %v", r.Index+1, err)
		}
		for _, f := range []string{r.ResultFile, r.ReportFile, r.ServerLog, r.BenchStderr} {
			if _, err := os.Stat(filepath.Join(out, f)); err != nil {
				t.Errorf("run %d: %v", r.Index+1, err)
			}
		}
		want := map[string]map[string]float64{
			"idle":       {FigConnsUp: 150},
			"fanout100k": {FigLoss: 0, FigNotChecked: 0},
			"rooms10k":   {FigLoss: 0, FigNotChecked: 0},
			"handshake":  {FigConnectFailed: 0},
		}[r.Scenario]
		for k, v := range want {
			if got, ok := r.Figures[k]; !ok || got != v {
				t.Errorf("run %d (%s/%s): %s = %v (present %v), want %v", r.Index+1, r.Scenario, r.Server, k, got, ok, v)
			}
		}
		if _, ok := r.Figures[FigBenchCPU]; !ok && r.Scenario != "idle" {
			t.Errorf("run %d (%s/%s): no chatbench CPU", r.Index+1, r.Scenario, r.Server)
		}
		for _, k := range map[string][]string{"fanout100k": {FigDeliveries, FigP99}, "rooms10k": {FigP99}, "handshake": {FigHandshakes, FigConnectP99}}[r.Scenario] {
			if r.Figures[k] <= 0 {
				t.Errorf("run %d (%s/%s): no %s: %v", r.Index+1, r.Scenario, r.Server, k, r.Figures)
			}
		}
	}
	wantOrder := []string{"idle/gorilla", "idle/chatgate", "fanout100k/gorilla", "fanout100k/chatgate", "rooms10k/chatgate", "handshake/gorilla", "handshake/chatgate"}
	if !slices.Equal(order, wantOrder) {
		t.Fatalf("runs %v, want %v", order, wantOrder)
	}
	md, err := os.ReadFile(filepath.Join(out, "compare.md"))
	if err != nil {
		t.Fatal(err)
	}
	if string(md) != stdout.String() {
		t.Fatal("compare.md is not what was printed")
	}
	for _, want := range []string{"**Scaled smoke run", "| Scenario | Figure | gorilla | chatgate | chatgate/gorilla | Target | Met |", "#### Runs", "the gorilla example from `github.com/gorilla/websocket v"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("the table lacks %q:\n%s", want, stdout.String())
		}
	}
	t.Logf("table:\n%s", stdout.String())
}

// TestRefusesWhenBusy: with another process spinning, the probe before
// the first run finds the machine busy; with no time to wait for it to
// calm down, the harness stops, measures nothing and says why.
func TestRefusesWhenBusy(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc: not Linux")
	}
	if _, err := exec.LookPath("taskset"); err != nil || runtime.NumCPU() < 2 {
		if os.Getenv("CHATGATE_E2E") == "1" {
			t.Fatal("needs taskset and two CPUs (CHATGATE_E2E=1)")
		}
		t.Skip("needs taskset and two CPUs")
	}
	spin := exec.Command("sh", "-c", "while :; do :; done")
	if err := spin.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = spin.Process.Kill()
		_ = spin.Wait()
	}()
	out := t.TempDir()
	never, err := exec.LookPath("false") // no server may start, and none does
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	code := Main(context.Background(), []string{"--scenarios", "handshake", "--reps", "1", "--scale", "0.01", "--time-scale", "0.1",
		"--max-load", "1000", "--max-other-cpu", "0.05", "--quiet-wait", "0s", "--probe", "300ms",
		"--chatgate-bin", never, "--gorilla-bin", never, "--chatbench-bin", never, "--out", out}, &stdout, &stderr)
	if code != ExitFailed {
		t.Fatalf("exit %d, want %d; stderr:\n%s", code, ExitFailed, stderr.String())
	}
	if !strings.Contains(stderr.String(), "the machine did not become quiet within 0s before run 1 (other processes used") {
		t.Fatalf("stderr:\n%s", stderr.String())
	}
	if !strings.Contains(stdout.String(), "**Incomplete: stopped early: the machine did not become quiet") {
		t.Fatalf("stdout:\n%s", stdout.String())
	}
	b, err := os.ReadFile(filepath.Join(out, "compare.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rep Report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Complete || rep.Aborted == "" || len(rep.Runs) != 1 || rep.Runs[0].Valid || !strings.HasPrefix(rep.Runs[0].Busy, "before the run: other processes used") || rep.Runs[0].ServerPID != 0 {
		t.Fatalf("compare.json: complete %v, aborted %q, runs %+v", rep.Complete, rep.Aborted, rep.Runs)
	}
	for _, s := range rep.Summary {
		if s.Gorilla != nil || s.Chatgate != nil {
			t.Fatalf("a figure from no run: %+v", s)
		}
	}
}
