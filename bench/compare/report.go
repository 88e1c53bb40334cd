package compare

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/procfs"
)

// ReportSchema names compare.json's layout.
const ReportSchema = "chatbench-compare/v1"

// Report is compare.json: the settings, every attempt of every run, and the
// summary the markdown table shows.
type Report struct {
	Schema     string    `json:"schema"`
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at"`
	Machine    Machine   `json:"machine"`
	// ChatgateCommit is the repository's HEAD, "+dirty" with uncommitted
	// changes to tracked files.
	ChatgateCommit string   `json:"chatgate_commit"`
	ChatgateFlags  []string `json:"chatgate_flags"`
	// GorillaModule is the module and version the example was built from.
	GorillaModule string   `json:"gorilla_module"`
	GoVersion     string   `json:"go_version"`
	Settings      Settings `json:"settings"`
	// Complete says every planned run has a quiet, completed attempt.
	Complete bool `json:"complete"`
	// Aborted says why the suite stopped early.
	Aborted string          `json:"aborted,omitempty"`
	Runs    []RunRecord     `json:"runs"`
	Summary []FigureSummary `json:"summary"`
}

// Machine is where the comparison ran.
type Machine struct {
	CPUModel string `json:"cpu_model"`
	CPUs     int    `json:"cpus"`
	Kernel   string `json:"kernel"`
}

// Settings echo the configuration.
type Settings struct {
	Reps      int       `json:"reps"`
	ServerCPU int       `json:"server_cpu"`
	BenchCPU  int       `json:"bench_cpu"`
	Quiet     QuietRule `json:"quiet"`
	ProbeS    float64   `json:"probe_s"`
	Retries   int       `json:"retries"`
	AllowBusy bool      `json:"allow_busy"`
	Scales
	Scenarios []Scenario `json:"scenarios"`
}

// FigureSummary is one row of the table.
type FigureSummary struct {
	Scenario string  `json:"scenario"`
	Figure   string  `json:"figure"`
	Label    string  `json:"label"`
	Unit     string  `json:"unit"`
	Gorilla  *Spread `json:"gorilla,omitempty"`
	Chatgate *Spread `json:"chatgate,omitempty"`
	// Ratio is chatgate's median / gorilla's.
	Ratio  *float64 `json:"ratio,omitempty"`
	Target *Target  `json:"target,omitempty"`
	// Met is absent when the target is not judged (a scaled run, or no
	// figure to judge it on).
	Met *bool `json:"met,omitempty"`
}

func newReport(cfg *Config, scs []Scenario) *Report {
	return &Report{
		Schema:        ReportSchema,
		StartedAt:     time.Now().UTC().Truncate(time.Second),
		ChatgateFlags: chatgateArgs("", "")[4:],
		Machine:       Machine{CPUs: runtime.NumCPU()},
		Settings: Settings{
			Reps: cfg.Reps, ServerCPU: cfg.ServerCPU, BenchCPU: cfg.BenchCPU, Quiet: cfg.Quiet,
			ProbeS: cfg.Probe.Seconds(), Retries: cfg.Retries, AllowBusy: cfg.AllowBusy,
			Scales: cfg.Scales, Scenarios: scs,
		},
		Runs:    []RunRecord{},
		Summary: []FigureSummary{},
	}
}

// describe fills in the machine, the commit and the versions.
func (r *Report) describe(ctx context.Context, root string) {
	output := func(name string, args ...string) string {
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Dir = root
		b, err := cmd.Output()
		if err != nil {
			return ""
		}
		return strings.TrimSpace(string(b))
	}
	r.ChatgateCommit = output("git", "rev-parse", "--short", "HEAD")
	if r.ChatgateCommit == "" {
		r.ChatgateCommit = "unknown"
	} else if output("git", "status", "--porcelain", "--untracked-files=no") != "" {
		r.ChatgateCommit += "+dirty"
	}
	r.GorillaModule = output("go", "list", "-m", "-f", "{{.Path}} {{.Version}}", gorillaModule)
	r.GoVersion = output("go", "env", "GOVERSION")
	if info, err := procfs.NewDefaultFS(); err == nil {
		if cpus, err := info.CPUInfo(); err == nil && len(cpus) > 0 {
			r.Machine.CPUModel = cpus[0].ModelName
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		r.Machine.Kernel = strings.TrimSpace(string(b))
	}
}

func (r *Report) add(rec RunRecord) { r.Runs = append(r.Runs, rec) }

// finish computes the summary over the valid runs and whether the plan
// was done in full on a quiet machine.
func (r *Report) finish(plan []Run) {
	r.FinishedAt = time.Now().UTC().Truncate(time.Second)
	r.Complete = r.Aborted == ""
	for i := range plan {
		quiet := false
		for _, rec := range r.Runs {
			if rec.Index == plan[i].Index && rec.Valid && rec.Busy == "" {
				quiet = true
			}
		}
		r.Complete = r.Complete && quiet
	}
	r.Summary = summarizeRuns(r.Settings.Scenarios, r.Runs, r.Settings.Scaled())
}

// summarizeRuns is the table: per scenario and figure, each server's
// spread over its valid runs, the ratio, and the target's verdict (unless
// the scenarios were scaled).
func summarizeRuns(scs []Scenario, runs []RunRecord, scaled bool) []FigureSummary {
	out := []FigureSummary{}
	for i := range scs {
		sc := &scs[i]
		for _, key := range sc.Figures {
			f := figures[key]
			row := FigureSummary{Scenario: sc.Name, Figure: key, Label: f.Label, Unit: f.Unit}
			for _, srv := range sc.Servers {
				var vals []float64
				for _, rec := range runs {
					if rec.Scenario != sc.Name || rec.Server != srv || !rec.Valid {
						continue
					}
					if v, ok := rec.Figures[key]; ok {
						vals = append(vals, v)
					}
				}
				s, ok := summarize(vals)
				if !ok {
					continue
				}
				if srv == Gorilla {
					row.Gorilla = &s
				} else {
					row.Chatgate = &s
				}
			}
			if q, ok := ratio(row.Chatgate, row.Gorilla); ok {
				row.Ratio = &q
			}
			if t, ok := sc.Targets[key]; ok {
				row.Target = &t
				if met, ok := t.judge(row.Chatgate, row.Gorilla); ok && !scaled {
					row.Met = &met
				}
			}
			out = append(out, row)
		}
	}
	return out
}

// write saves compare.md and compare.json in dir.
func (r *Report) write(dir, markdown string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "compare.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "compare.md"), []byte(markdown), 0o644)
}

// Markdown is the report as docs/benchmarks.md shows it: the conditions,
// the table of figures, the notes and the table of runs.
func (r *Report) Markdown() string {
	var b strings.Builder
	st := &r.Settings
	fmt.Fprintf(&b, "### chatgate and the gorilla chat example, side by side\n\n")
	cpu := r.Machine.CPUModel
	if cpu == "" {
		cpu = "unknown CPU"
	}
	fmt.Fprintf(&b, "Measured %s by `chatbench compare` on %d × %s, Linux %s, %s; chatgate %s, the gorilla example from `%s`. ",
		r.StartedAt.Format("2006-01-02 15:04 UTC"), r.Machine.CPUs, cpu, orUnknown(r.Machine.Kernel), orUnknown(r.GoVersion), orUnknown(r.ChatgateCommit), orUnknown(r.GorillaModule))
	fmt.Fprintf(&b, "Server pinned to CPU %d, chatbench to CPU %d, a fresh server per run; %s, interleaved (%s). ",
		st.ServerCPU, st.BenchCPU, plural(st.Reps, "repetition"), strings.Join(both, ", "))
	fmt.Fprintf(&b, "chatgate ran with `%s`. ", strings.Join(r.ChatgateFlags, " "))
	fmt.Fprintf(&b, "Each cell is the median over the quiet runs, with (min–max); the ratio is chatgate's median over gorilla's.\n\n")

	var busy, failed, retried int
	for _, rec := range r.Runs {
		switch {
		case rec.Error != "":
			failed++
		case rec.Busy != "" && rec.Valid:
			busy++
		case rec.Busy != "":
			retried++
		}
	}
	if busy > 0 {
		fmt.Fprintf(&b, "**NOT QUIET: %d runs were busy and counted anyway (`--allow-busy`). These numbers cannot be compared with others.**\n\n", busy)
	}
	if st.Scaled() {
		fmt.Fprintf(&b, "**Scaled smoke run (`--scale %g --time-scale %g`): not the targets' sizes; targets are not judged.**\n\n", st.ConnScale, st.TimeScale)
	}
	if !r.Complete {
		msg := "some planned runs have no quiet, completed attempt (see Runs)"
		if r.Aborted != "" {
			msg = "stopped early: " + r.Aborted
		}
		fmt.Fprintf(&b, "**Incomplete: %s.**\n\n", msg)
	}

	b.WriteString("| Scenario | Figure | gorilla | chatgate | chatgate/gorilla | Target | Met |\n|---|---|---|---|---|---|---|\n")
	titles := map[string]string{}
	servers := map[string][]string{}
	for _, sc := range st.Scenarios {
		titles[sc.Name], servers[sc.Name] = sc.Title, sc.Servers
	}
	last := ""
	for _, row := range r.Summary {
		title := ""
		if row.Scenario != last {
			title, last = titles[row.Scenario], row.Scenario
		}
		cell := func(srv string, s *Spread) string {
			if !slices.Contains(servers[row.Scenario], srv) {
				return "n/a"
			}
			return formatSpread(s, row.Unit, st.Reps)
		}
		ratio, target, met := "–", "", ""
		if row.Ratio != nil {
			ratio = fmt.Sprintf("%.2f", *row.Ratio)
		}
		if row.Target != nil {
			target = row.Target.Text
			met = "–"
			if row.Met != nil {
				met = "met"
				if !*row.Met {
					met = "**missed**"
				}
			}
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s |\n", title, row.Label, cell(Gorilla, row.Gorilla), cell(Chatgate, row.Chatgate), ratio, target, met)
	}
	b.WriteString("\n")
	for _, sc := range st.Scenarios {
		if sc.Note != "" {
			fmt.Fprintf(&b, "- %s: %s.\n", sc.Name, sc.Note)
		}
	}
	if retried > 0 || failed > 0 {
		fmt.Fprintf(&b, "- %d attempts were busy and retried, %d failed; they are not counted.\n", retried, failed)
	}

	b.WriteString("\n#### Runs\n\n| # | Scenario | Server | Rep | Load average before (1, 5, 15 min) | Other CPU, probe / run (cores) | Steal (cores) | Run |\n|---|---|---|---|---|---|---|---|\n")
	for _, rec := range r.Runs {
		other, steal := "–", "–"
		if rec.Usage != nil {
			other = fmt.Sprintf("%.2f / %.2f", rec.Probe.OtherCores, rec.Usage.OtherCores)
			steal = fmt.Sprintf("%.2f", rec.Usage.StealCores)
		} else {
			other = fmt.Sprintf("%.2f / –", rec.Probe.OtherCores)
		}
		n := strconv.Itoa(rec.Index + 1)
		if rec.Attempt > 1 {
			n += fmt.Sprintf(" (attempt %d)", rec.Attempt)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %d | %.2f, %.2f, %.2f | %s | %s | %s |\n", n, rec.Scenario, rec.Server, rec.Rep,
			rec.LoadAvg[0], rec.LoadAvg[1], rec.LoadAvg[2], other, steal, runVerdict(&rec))
	}
	return b.String()
}

// runVerdict is a run's last column.
func runVerdict(rec *RunRecord) string {
	switch {
	case rec.Error != "":
		return "failed: " + mdEscape(rec.Error)
	case rec.Busy != "" && rec.Valid:
		return "NOT QUIET, counted: " + mdEscape(rec.Busy)
	case rec.Busy != "":
		return "busy, not counted: " + mdEscape(rec.Busy)
	}
	return "quiet"
}

func mdEscape(s string) string {
	s = strings.ReplaceAll(s, "|", `\|`)
	return strings.ReplaceAll(s, "\n", " ")
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// formatSpread is "median unit (min–max)", with [n of reps] when runs are
// missing; "no figure" when no valid run measured it. Milliseconds from a
// second up are shown in seconds.
func formatSpread(s *Spread, unit string, reps int) string {
	if s == nil {
		return "no figure"
	}
	med, lo, hi := s.Median, s.Min, s.Max
	if unit == unitMs && med >= 1000 {
		med, lo, hi, unit = med/1000, lo/1000, hi/1000, unitS
	}
	out := formatValue(med, unit)
	if s.N > 1 {
		out += " (" + formatNumber(lo, unit) + "–" + formatNumber(hi, unit) + ")"
	}
	if s.N < reps {
		out += fmt.Sprintf(" [%d of %d runs]", s.N, reps)
	}
	return out
}

// formatValue is a number with its unit.
func formatValue(v float64, unit string) string {
	if unit == unitMs && v >= 1000 {
		v, unit = v/1000, unitS
	}
	n := formatNumber(v, unit)
	switch unit {
	case unitCount:
		return n
	case unitPerS, unitPct:
		return n + unit
	}
	return n + " " + unit
}

// formatNumber is v without its unit, as precise as the unit deserves.
func formatNumber(v float64, unit string) string {
	switch unit {
	case unitKiB:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case unitUs, unitCores, unitS:
		return strconv.FormatFloat(v, 'f', 2, 64)
	case unitMs:
		if v < 10 {
			return strconv.FormatFloat(v, 'f', 2, 64)
		}
		return strconv.FormatFloat(v, 'f', 1, 64)
	case unitPct:
		if v == 0 {
			return "0"
		}
		return strconv.FormatFloat(v, 'g', 3, 64)
	}
	return thousands(int64(math.Round(v)))
}

// thousands writes n with comma separators.
func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}
