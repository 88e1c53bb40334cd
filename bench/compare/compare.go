// Package compare is `chatbench compare`: it builds chatgate, chatbench
// and the gorilla examples/chat server (from the module in go.mod), runs
// issue 16's scenarios against both servers, interleaved and repeated, each
// server pinned to one CPU and chatbench to another, only while the machine
// is quiet, and reports medians, spreads and chatgate/gorilla ratios as a
// markdown table and a JSON file with every run. See docs/benchmarks.md,
// "Comparing with the gorilla example".
package compare

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/chatgate/chatgate/internal/cli"
	"github.com/chatgate/chatgate/internal/ctxsleep"
)

// Exit statuses of Main.
const (
	ExitOK         = 0 // every planned run completed on a quiet machine
	ExitIncomplete = 1 // some run failed or was busy (or counted though busy with --allow-busy): the report says which
	ExitUsage      = 2 // bad flags
	ExitFailed     = 3 // nothing measured: a build failed, taskset or a CPU is missing, the machine never became quiet
)

// Config is a comparison. Every field has a flag.
type Config struct {
	Scenarios string // comma-separated names, or all
	Reps      int
	Out       string // output directory
	Src       string // the repository to build from

	// Prebuilt binaries; empty ones are built.
	ChatgateBin, GorillaBin, ChatbenchBin string

	ServerCPU, BenchCPU int

	Quiet     QuietRule
	QuietWait time.Duration // how long to wait for a quiet machine before a run
	Probe     time.Duration // the quiet probe before each run
	Retries   int           // extra attempts of a run found busy
	AllowBusy bool

	Scales
	DryRun bool
}

// Scales shrink the scenarios for a smoke run (--scale, --time-scale); the
// report echoes them in its settings.
type Scales struct {
	ConnScale float64 `json:"conn_scale"`
	TimeScale float64 `json:"time_scale"`
}

// Scaled says the scenarios are shrunk: the targets are not judged.
func (s Scales) Scaled() bool { return s.ConnScale != 1 || s.TimeScale != 1 }

// DefaultConfig is the full comparison.
func DefaultConfig() Config {
	return Config{
		Scenarios: "all",
		Reps:      3,
		ServerCPU: 0,
		BenchCPU:  1,
		Quiet:     QuietRule{MaxOtherCores: 0.15, MaxLoad: 1},
		QuietWait: 3 * time.Minute,
		Probe:     time.Second,
		Retries:   2,
		Scales:    Scales{ConnScale: 1, TimeScale: 1},
	}
}

func (c *Config) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.Scenarios, "scenarios", c.Scenarios, "comma-separated scenarios to run, or all: "+strings.Join(scenarioNames(), ", "))
	fs.IntVar(&c.Reps, "reps", c.Reps, "repetitions of each scenario on each server")
	fs.StringVar(&c.Out, "out", c.Out, "output `directory` for compare.md, compare.json, the binaries and every run's files (default compare-out/<UTC time>)")
	fs.StringVar(&c.Src, "src", c.Src, "the chatgate repository to build from (default: the one holding the working directory)")
	fs.StringVar(&c.ChatgateBin, "chatgate-bin", c.ChatgateBin, "use this chatgate binary instead of building ./cmd/chatgate")
	fs.StringVar(&c.GorillaBin, "gorilla-bin", c.GorillaBin, "use this gorilla examples/chat binary instead of building it from the module cache")
	fs.StringVar(&c.ChatbenchBin, "chatbench-bin", c.ChatbenchBin, "use this chatbench binary as the load generator instead of building ./cmd/chatbench")
	fs.IntVar(&c.ServerCPU, "server-cpu", c.ServerCPU, "CPU the server is pinned to (taskset -c)")
	fs.IntVar(&c.BenchCPU, "bench-cpu", c.BenchCPU, "CPU chatbench is pinned to (taskset -c)")
	fs.Float64Var(&c.Quiet.MaxOtherCores, "max-other-cpu", c.Quiet.MaxOtherCores, "a run is busy when other processes (not the server, chatbench, the harness or kernel threads), or the hypervisor's steal, used more than this many cores on average, over the run or the probe before it")
	fs.Float64Var(&c.Quiet.MaxLoad, "max-load", c.Quiet.MaxLoad, "the suite starts only once the 1-minute load average is at most this")
	fs.DurationVar(&c.QuietWait, "quiet-wait", c.QuietWait, "how long to wait for a quiet machine (before the suite and before each run) before giving up")
	fs.DurationVar(&c.Probe, "probe", c.Probe, "length of the quiet probe before each run (nothing of ours running)")
	fs.IntVar(&c.Retries, "retries", c.Retries, "extra attempts of a run that was busy")
	fs.BoolVar(&c.AllowBusy, "allow-busy", c.AllowBusy, "count busy runs instead of retrying them, and report them marked NOT QUIET (for a smoke run; the numbers cannot be compared)")
	fs.Float64Var(&c.ConnScale, "scale", c.ConnScale, "shrink connections and rooms by this factor, for a smoke run (targets are then not judged)")
	fs.Float64Var(&c.TimeScale, "time-scale", c.TimeScale, "shrink every window, hold and connection storm by this factor, for a smoke run")
	fs.BoolVar(&c.DryRun, "dry-run", c.DryRun, "print the plan and its estimated duration, and exit")
}

func scenarioNames() []string {
	var n []string
	for _, s := range Suite() {
		n = append(n, s.Name)
	}
	return n
}

// validate checks c and returns the scenarios to run, scaled.
func (c *Config) validate() ([]Scenario, error) {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	scs, err := SelectScenarios(c.Scenarios)
	if err != nil {
		bad("--scenarios: %v", err)
	}
	if c.Reps < 1 || c.Reps > 100 {
		bad("--reps must be 1-100, got %d", c.Reps)
	}
	if c.ServerCPU < 0 || c.BenchCPU < 0 {
		bad("--server-cpu and --bench-cpu must not be negative")
	} else if c.ServerCPU == c.BenchCPU {
		bad("--server-cpu and --bench-cpu must differ: each side gets a CPU of its own")
	}
	if !(c.Quiet.MaxOtherCores >= 0) || !(c.Quiet.MaxLoad >= 0) {
		bad("--max-other-cpu and --max-load must not be negative")
	}
	if c.QuietWait < 0 || c.Probe < 100*time.Millisecond || c.Probe > time.Minute {
		bad("--quiet-wait must not be negative and --probe must be 100ms-1m")
	}
	if c.Retries < 0 || c.Retries > 10 {
		bad("--retries must be 0-10, got %d", c.Retries)
	}
	if !(c.ConnScale > 0 && c.ConnScale <= 1) || !(c.TimeScale > 0 && c.TimeScale <= 1) {
		bad("--scale and --time-scale must be above 0 and at most 1")
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	for i := range scs {
		scs[i] = scs[i].Scale(c.ConnScale, c.TimeScale)
	}
	return scs, nil
}

// Main is `chatbench compare ARGS`; it returns the exit status. The table
// goes to stdout, progress to stderr.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg := DefaultConfig()
	fs := flag.NewFlagSet("chatbench compare", flag.ContinueOnError)
	cfg.flags(fs)
	err := cli.Parse(fs, args, func() { usage(fs, stdout) })
	if errors.Is(err, flag.ErrHelp) {
		return ExitOK
	}
	if err == nil && fs.NArg() > 0 {
		err = fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	var scs []Scenario
	if err == nil {
		scs, err = cfg.validate()
	}
	if err != nil {
		cli.Report(stderr, "chatbench compare", err)
		return ExitUsage
	}
	return run(ctx, &cfg, scs, stdout, stderr)
}

func usage(fs *flag.FlagSet, out io.Writer) {
	fmt.Fprint(out, `Usage: chatbench compare [flags]

Builds chatgate, chatbench and the gorilla examples/chat server (from the
github.com/gorilla/websocket version in go.mod), then runs each scenario
against both servers, interleaved, --reps times, the server pinned to
--server-cpu and chatbench to --bench-cpu, and prints medians, spreads and
chatgate/gorilla ratios as a markdown table. Runs count only on a quiet
machine. docs/benchmarks.md ("Comparing with the gorilla example") has the
details.

Exit status: 0 every run completed on a quiet machine, 1 some run failed or
was busy (the report says which), 2 bad flags, 3 nothing could be measured.

Flags:
`)
	fs.VisitAll(func(f *flag.Flag) { cli.PrintFlag(out, f, false) })
}

// run is the comparison once the flags are good.
func run(ctx context.Context, cfg *Config, scs []Scenario, stdout, stderr io.Writer) int {
	fail := func(format string, args ...any) int {
		fmt.Fprintf(stderr, "chatbench compare: "+format+"\n", args...)
		return ExitFailed
	}
	plan := BuildPlan(scs, cfg.Reps)
	if cfg.Out == "" {
		cfg.Out = filepath.Join("compare-out", time.Now().UTC().Format("20060102T150405Z"))
	}
	printPlan(stderr, cfg, scs, plan)
	if cfg.DryRun {
		return ExitOK
	}

	if _, err := exec.LookPath("taskset"); err != nil {
		return fail("taskset (util-linux) is needed to pin the server and chatbench to their CPUs: %v", err)
	}
	if n := runtime.NumCPU(); cfg.ServerCPU >= n || cfg.BenchCPU >= n {
		return fail("this process may use %d CPUs; --server-cpu %d and --bench-cpu %d need more", n, cfg.ServerCPU, cfg.BenchCPU)
	}
	snap, err := newSnapshotter()
	if err != nil {
		return fail("%v", err)
	}
	out, err := filepath.Abs(cfg.Out)
	if err == nil {
		err = os.MkdirAll(filepath.Join(out, "runs"), 0o755)
	}
	if err != nil {
		return fail("output directory: %v", err)
	}
	h := &harness{cfg: cfg, out: out, snap: snap, stderr: stderr}
	// The load average is judged before the builds, which are ours.
	if err := h.waitStart(ctx); err != nil {
		return fail("%v", err)
	}
	rep := newReport(cfg, scs)
	if h.bins, err = prepare(ctx, cfg, out, rep, stderr); err != nil {
		return fail("%v", err)
	}

	code := ExitOK
	for i := range plan {
		if err := h.runPlanned(ctx, &plan[i], len(plan), rep); err != nil {
			rep.Aborted = err.Error()
			code = ExitFailed
			fmt.Fprintf(stderr, "chatbench compare: %v\n", err)
			break
		}
	}
	rep.finish(plan)
	if code == ExitOK && !rep.Complete {
		code = ExitIncomplete
	}
	md := rep.Markdown()
	if len(rep.Runs) > 0 {
		fmt.Fprint(stdout, md)
	}
	if err := rep.write(out, md); err != nil {
		fmt.Fprintf(stderr, "chatbench compare: writing the report: %v\n", err)
		return ExitFailed
	}
	fmt.Fprintf(stderr, "chatbench compare: wrote %s and %s\n", filepath.Join(cfg.Out, "compare.md"), filepath.Join(cfg.Out, "compare.json"))
	return code
}

// printPlan says what will run, with what, and for about how long.
func printPlan(w io.Writer, cfg *Config, scs []Scenario, plan []Run) {
	typical, worst := EstimatePlan(plan, cfg.Probe)
	fmt.Fprintf(w, "chatbench compare: %s × %s: %s, interleaved %s\n", plural(len(scs), "scenario"), plural(cfg.Reps, "repetition"), plural(len(plan), "run"), strings.Join(both, ", "))
	fmt.Fprintf(w, "  estimated duration: about %v (up to %v if the servers fall behind; more if runs are retried), plus the builds\n", typical.Round(10*time.Second), worst.Round(10*time.Second))
	for i := range scs {
		var n int
		var d time.Duration
		for j := range plan {
			if plan[j].Scenario.Name == scs[i].Name {
				t, _ := plan[j].Estimate(cfg.Probe)
				d += t
				n++
			}
		}
		fmt.Fprintf(w, "  %-11s %2d runs  ~%-7v %s\n", scs[i].Name, n, d.Round(time.Second), scs[i].Title)
	}
	fmt.Fprintf(w, "  server on CPU %d, chatbench on CPU %d (taskset); a fresh server for every run\n", cfg.ServerCPU, cfg.BenchCPU)
	fmt.Fprintf(w, "  chatgate flags: %s (and --addr, --admin-addr on free loopback ports)\n", strings.Join(chatgateArgs("", "")[4:], " "))
	fmt.Fprintf(w, "  quiet: 1-minute load average ≤ %.2f before the builds; other processes ≤ %.2f cores in a %v probe before each run and over each run", cfg.Quiet.MaxLoad, cfg.Quiet.MaxOtherCores, cfg.Probe)
	if cfg.AllowBusy {
		fmt.Fprintf(w, "; --allow-busy: busy runs count, marked NOT QUIET\n")
	} else {
		fmt.Fprintf(w, "; a busy run is retried up to %d times\n", cfg.Retries)
	}
	if cfg.Scaled() {
		fmt.Fprintf(w, "  scaled (--scale %g, --time-scale %g): a smoke run; targets are not judged\n", cfg.ConnScale, cfg.TimeScale)
	}
	fmt.Fprintf(w, "  output: %s\n", cfg.Out)
}

// waitStart waits, up to --quiet-wait, for the load average to fall to
// --max-load before the builds and the first run.
func (h *harness) waitStart(ctx context.Context) error {
	deadline := time.Now().Add(h.cfg.QuietWait)
	said := false
	for {
		load, err := h.snap.loadAvg()
		if err != nil {
			return err
		}
		why := h.cfg.Quiet.busyLoad(load[0])
		if why == "" {
			return nil
		}
		if h.cfg.AllowBusy {
			fmt.Fprintf(h.stderr, "  NOT QUIET: %s; going on (--allow-busy)\n", why)
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("refusing to measure: %s after waiting %v; stop other work on this machine and run again", why, h.cfg.QuietWait)
		}
		if !said {
			fmt.Fprintf(h.stderr, "  waiting up to %v for a quiet machine: %s\n", h.cfg.QuietWait, why)
			said = true
		}
		if !ctxsleep.Sleep(ctx, 5*time.Second) {
			return ctx.Err()
		}
	}
}

// waitQuiet probes until the machine is quiet, for at most --quiet-wait.
// It returns the last probe and why it was busy ("" when quiet).
func (h *harness) waitQuiet(ctx context.Context) (Usage, string, error) {
	deadline := time.Now().Add(h.cfg.QuietWait)
	said := false
	for {
		u, err := h.snap.probe(ctx, h.cfg.Probe)
		if err != nil {
			return u, "", err
		}
		why := h.cfg.Quiet.busy(u)
		if why == "" || h.cfg.AllowBusy || time.Now().After(deadline) {
			return u, why, nil
		}
		if !said {
			fmt.Fprintf(h.stderr, "        waiting up to %v for a quiet machine: %s\n", h.cfg.QuietWait, why)
			said = true
		}
	}
}

// runPlanned runs one planned run, retrying it while it is busy. An error
// stops the suite.
func (h *harness) runPlanned(ctx context.Context, run *Run, total int, rep *Report) error {
	for attempt := 1; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("interrupted: %w", err)
		}
		rec := RunRecord{Index: run.Index, Attempt: attempt, Scenario: run.Scenario.Name, Server: run.Server, Rep: run.Rep, Figures: map[string]float64{}}
		probe, why, err := h.waitQuiet(ctx)
		if err != nil {
			return err
		}
		rec.Probe = probe
		if rec.LoadAvg, err = h.snap.loadAvg(); err != nil {
			return err
		}
		label := fmt.Sprintf("[%2d/%d] %-10s %-8s rep %d/%d", run.Index+1, total, run.Scenario.Name, run.Server, run.Rep, h.cfg.Reps)
		if attempt > 1 {
			label += fmt.Sprintf(" (attempt %d)", attempt)
		}
		fmt.Fprintf(h.stderr, "%s: load %.2f %.2f %.2f, probe: other %.2f cores\n", label, rec.LoadAvg[0], rec.LoadAvg[1], rec.LoadAvg[2], probe.OtherCores)
		if why != "" && !h.cfg.AllowBusy {
			rec.Busy = "before the run: " + why
			rep.add(rec)
			return fmt.Errorf("the machine did not become quiet within %v before run %d (%s); stopping", h.cfg.QuietWait, run.Index+1, why)
		}
		if why != "" {
			rec.Busy = "before the run: " + why
		}
		rec.StartedAt = time.Now().UTC().Truncate(time.Millisecond)
		began := time.Now()
		h.runOnce(ctx, run, attempt, &rec)
		rec.Valid = rec.Error == "" && (rec.Busy == "" || h.cfg.AllowBusy)
		rep.add(rec)
		fmt.Fprintf(h.stderr, "        %v: %s\n", time.Since(began).Round(100*time.Millisecond), runLine(run.Scenario, &rec))
		if rec.Error != "" && strings.Contains(rec.Error, "a harness bug") {
			return errors.New(rec.Error)
		}
		if rec.Busy == "" || h.cfg.AllowBusy || attempt > h.cfg.Retries || rec.Error != "" {
			return nil
		}
	}
}

// runLine is a run's result in one line of progress.
func runLine(sc *Scenario, rec *RunRecord) string {
	var parts []string
	for _, key := range sc.Figures {
		if v, ok := rec.Figures[key]; ok {
			parts = append(parts, figures[key].Short+" "+formatValue(v, figures[key].Unit))
		}
	}
	s := strings.Join(parts, ", ")
	if rec.Error != "" {
		s = "FAILED: " + rec.Error
	}
	if rec.Usage != nil {
		s += fmt.Sprintf("; other CPU %.2f cores", rec.Usage.OtherCores)
	}
	switch {
	case rec.Busy != "" && rec.Valid:
		s += "; NOT QUIET (" + rec.Busy + "), counted (--allow-busy)"
	case rec.Busy != "":
		s += "; BUSY (" + rec.Busy + "), not counted"
	case rec.Error == "":
		s += "; quiet"
	}
	return s
}
