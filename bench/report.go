package bench

import (
	"fmt"
	"html/template"
	"io"
	"math"
	"strings"
)

// WriteTable prints the human summary.
func WriteTable(w io.Writer, r *Result) {
	p := r.Params
	fmt.Fprintf(w, "chatbench %s · %s · %s · bench %s\n", r.Scenario, r.Proto, strings.Join(r.Target, ","), r.BenchID)
	switch r.Scenario {
	case ScenarioConnect:
		fmt.Fprintf(w, "  %d connections at %g/s\n\n", p.Conns, p.ConnectRate)
	default:
		fmt.Fprintf(w, "  %d members in %d room(s), %d sender(s) per room at %g msg/s, %d-byte texts, window %.1fs (target %s deliveries/s)\n\n",
			p.Conns, p.Rooms, p.SendersPerRoom, p.RatePerSender, p.SizeBytes, r.WindowS, humanCount(p.TargetDeliveriesPerS))
	}
	row := func(k, format string, args ...any) { fmt.Fprintf(w, "  %-13s %s\n", k, fmt.Sprintf(format, args...)) }
	c := r.Connections
	row("connections", "%d/%d up, %d failed%s · connect p50 %s p99 %s max %s · %s/s",
		c.Established, c.Attempted, c.Failed, statusList(c.FailuresByStatus),
		pctl(c.ConnectLatency, c.ConnectLatency.P50Us), pctl(c.ConnectLatency, c.ConnectLatency.P99Us), pctl(c.ConnectLatency, c.ConnectLatency.MaxUs), humanCount(c.HandshakesPerS))
	if r.Scenario != ScenarioConnect {
		m := r.Messages
		row("messages", "sent %d (%s/s), acked %d, rejected %d, write failures %d, unconfirmed %d",
			m.Sent, humanCount(m.SentPerS), m.Acked, m.Rejected, m.WriteFailed, r.Correctness.Unconfirmed)
		row("deliveries", "%d (%s/s of %s/s target)", m.Deliveries, humanCount(m.DeliveriesPerS), humanCount(p.TargetDeliveriesPerS))
		row("latency", "%s", latLine(r.Latency))
		if r.ClientCPUCores > 0 {
			row("bench cpu", "%.2f cores", r.ClientCPUCores)
		}
		if m.SenderMaxLagUs > 0 {
			row("sender lag", "max %s behind schedule, %d sends late (included in the latency)", fmtUs(m.SenderMaxLagUs), m.SendsLate)
		}
		k := r.Correctness
		row("correctness", "%d members checked (%d excluded): expected %d, received %d, lost %d (%.4f%%; %d of them not arrived by the end), duplicated %d, out of order %d",
			k.MembersChecked, k.MembersExcluded, k.Expected, k.Received, k.Lost, k.LossRatio*100, k.MissingAtEnd, k.Duplicated, k.OutOfOrder)
		if k.Rejoins > 0 || r.Drain != nil {
			row("resume", "%d rejoins with since: %d recovered, %d not; %d messages healed by replay", k.Rejoins, k.RecoveredJoins, k.UnrecoveredJoins, k.HealedByReplay)
		}
		if len(m.ErrorCodes) > 0 {
			row("error frames", "%s", countList(m.ErrorCodes))
		}
	}
	if s := r.Slow; s != nil {
		if s.Members == 0 {
			row("slow", "no slow listener")
		} else {
			row("slow", "%d slow listeners: %d evicted with 4008; ends %s; %d deliveries, latency %s",
				s.Members, s.Evicted, countList(s.CloseCodes), s.Deliveries, latLine(deref(r.SlowLatency)))
		}
		if p := s.Plan; p != nil && p.QueueBytes > 0 {
			line := fmt.Sprintf("stalls of %.1fs, %s/s to each listener: the gateway's queue (%s) and the kernel's buffers (about %s) fill in %.1fs",
				p.StallS, fmtBytes(p.BytesPerS), fmtBytes(float64(p.QueueBytes)), fmtBytes(float64(p.KernelBytes)), p.OverflowS)
			if p.StallUntilBlocked {
				held := ""
				if p.KernelBytes > 0 {
					held = fmt.Sprintf(" (its socket then held up to %s)", fmtBytes(float64(p.KernelBytes)))
				}
				line = fmt.Sprintf("stalls until the gateway's writes block%s and %.1fs more; %s/s to each listener fills the gateway's queue (%s) in %.1fs",
					held, p.StallS, fmtBytes(p.BytesPerS), fmtBytes(float64(p.QueueBytes)), p.OverflowS)
			}
			if len(p.Sized) > 0 {
				line += " (sized from welcome.limits: --" + strings.Join(p.Sized, " --") + ")"
			}
			row("", "%s", line)
		}
	}
	if ch := r.Churn; ch != nil {
		row("churn", "%d arrivals, %d joined, %d failed · join p50 %s p99 %s · %s presence frames/s at stable members",
			ch.Arrivals, ch.Joined, ch.Failed, pctl(ch.JoinLatency, ch.JoinLatency.P50Us), pctl(ch.JoinLatency, ch.JoinLatency.P99Us), humanCount(ch.PresenceFramesPerS))
	}
	if d := r.Drain; d != nil {
		line := fmt.Sprintf("at %.1fs: %d reconnects, %d failed attempts, %d members could not resume", d.RanAtS, d.Reconnects, d.ReconnectFailures, d.ResumeFailed)
		if d.NoReplica > 0 {
			line += fmt.Sprintf(" (%d with no other replica to go to: counted apart, not as loss)", d.NoReplica)
		}
		if d.Error != "" {
			line += " · failed: " + d.Error
		}
		row("drain", "%s", line)
	}
	if s := r.Server; s != nil {
		line := fmt.Sprintf("cpu %.2fs (%.2f cores)", s.CPUSeconds, s.CPUCores)
		if s.CPUUsPerDelivery > 0 {
			line += fmt.Sprintf(", %.2f µs/delivery", s.CPUUsPerDelivery)
		}
		if s.CPUUsPerConnection > 0 {
			line += fmt.Sprintf(", %.1f µs/connection", s.CPUUsPerConnection)
		}
		perConn := fmtBytes(s.MemBytesPerConn) + "/connection"
		if s.MemPerConnNoisy {
			perConn = "memory per connection: sample too noisy"
		}
		line += fmt.Sprintf(" · rss %s → %s (peak %s), %s", fmtBytes(float64(s.RSSBeforeBytes)), fmtBytes(float64(s.RSSConnectedBytes)), fmtBytes(float64(s.RSSPeakBytes)), perConn)
		row("server", "%s [%s]", line, s.Source)
		for _, e := range s.Errors {
			row("", "sampling error: %s", e)
		}
	}
	if len(r.CloseCodes) > 0 {
		row("closes", "%s", countList(r.CloseCodes))
	}
	if len(r.Errors) > 0 {
		row("errors", "%s", countList(r.Errors))
	}
	for _, wn := range r.Warnings {
		row("warning", "%s", wn)
	}
	if r.Error != "" {
		row("FAILED", "%s", r.Error)
	}
	t := r.Thresholds
	switch {
	case len(t.Checked) == 0:
	case t.Passed:
		row("thresholds", "PASS (%s)", strings.Join(t.Checked, ", "))
	default:
		row("thresholds", "FAIL: %s", strings.Join(t.Violations, "; "))
	}
}

func deref(l *LatencySummary) LatencySummary {
	if l == nil {
		return LatencySummary{}
	}
	return *l
}

func latLine(l LatencySummary) string {
	if l.Count == 0 {
		return "none measured"
	}
	return fmt.Sprintf("p50 %s  p90 %s  p99 %s  p99.9 %s  max %s  (n=%d)",
		fmtUs(l.P50Us), fmtUs(l.P90Us), fmtUs(l.P99Us), fmtUs(l.P999Us), fmtUs(l.MaxUs), l.Count)
}

// pctl prints one value of l, or "-" when l measured nothing.
func pctl(l LatencySummary, us int64) string {
	if l.Count == 0 {
		return "-"
	}
	return fmtUs(us)
}

// countList prints counts by name as "a=1 b=2", in name order.
func countList(m map[string]int64) string {
	var parts []string
	for _, k := range sortedKeys(m) {
		parts = append(parts, fmt.Sprintf("%s=%d", k, m[k]))
	}
	return strings.Join(parts, " ")
}

func statusList(m map[string]int64) string {
	if len(m) == 0 {
		return ""
	}
	return " (HTTP " + countList(m) + ")"
}

func fmtBytes(b float64) string {
	switch {
	case math.Abs(b) >= 1<<30:
		return fmt.Sprintf("%.2f GiB", b/(1<<30))
	case math.Abs(b) >= 1<<20:
		return fmt.Sprintf("%.1f MiB", b/(1<<20))
	case math.Abs(b) >= 1<<10:
		return fmt.Sprintf("%.1f KiB", b/(1<<10))
	}
	return fmt.Sprintf("%.0f B", b)
}

// ---- HTML ----

// WriteHTML writes a self-contained report: inline CSS and SVG, no
// scripts, no external assets.
func WriteHTML(w io.Writer, r *Result) error {
	var tbl strings.Builder
	WriteTable(&tbl, r)
	data := struct {
		R         *Result
		Summary   string
		LatChart  template.HTML
		RateChart template.HTML
		HistChart template.HTML
	}{
		R:         r,
		Summary:   tbl.String(),
		LatChart:  latencyChart(r.Timeline),
		RateChart: rateChart(r.Timeline),
		HistChart: histogramChart(r.Histogram),
	}
	return reportTmpl.Execute(w, data)
}

var reportTmpl = template.Must(template.New("report").Funcs(template.FuncMap{
	"pctl": pctl,
	"pct":  func(f float64) string { return fmt.Sprintf("%.4f%%", f*100) },
}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>chatbench {{.R.Scenario}} · {{.R.BenchID}}</title>
<style>
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:960px;color:#1d2330;padding:0 1em}
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:2em;border-bottom:1px solid #dde}
table{border-collapse:collapse;margin:.5em 0}td,th{padding:.25em .8em;border-bottom:1px solid #eef;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}
pre{background:#f5f6fa;padding:1em;overflow:auto;font-size:12px}
.ok{color:#176b2c;font-weight:600}.bad{color:#b3261e;font-weight:600}
svg{background:#fff;border:1px solid #e3e5ee}svg text{font:11px system-ui,sans-serif;fill:#555}
</style></head><body>
<h1>chatbench {{.R.Scenario}} <small>({{.R.Proto}})</small></h1>
<p>Bench {{.R.BenchID}} against {{range $i, $t := .R.Target}}{{if $i}}, {{end}}<code>{{$t}}</code>{{end}}, started {{.R.StartedAt.Format "2006-01-02 15:04:05 UTC"}}.
{{if .R.Thresholds.Checked}}Thresholds: {{if .R.Thresholds.Passed}}<span class="ok">PASS</span>{{else}}<span class="bad">FAIL</span> — {{range .R.Thresholds.Violations}}{{.}}; {{end}}{{end}}{{end}}
{{if .R.Error}}<span class="bad">Run failed: {{.R.Error}}</span>{{end}}</p>

<h2>Latency</h2>
<table><tr><th></th><th>count</th><th>p50</th><th>p90</th><th>p99</th><th>p99.9</th><th>max</th></tr>
{{with .R.Latency}}<tr><td>delivery (healthy members)</td><td class="n">{{.Count}}</td><td class="n">{{pctl . .P50Us}}</td><td class="n">{{pctl . .P90Us}}</td><td class="n">{{pctl . .P99Us}}</td><td class="n">{{pctl . .P999Us}}</td><td class="n">{{pctl . .MaxUs}}</td></tr>{{end}}
{{with .R.SlowLatency}}<tr><td>delivery (slow members)</td><td class="n">{{.Count}}</td><td class="n">{{pctl . .P50Us}}</td><td class="n">{{pctl . .P90Us}}</td><td class="n">{{pctl . .P99Us}}</td><td class="n">{{pctl . .P999Us}}</td><td class="n">{{pctl . .MaxUs}}</td></tr>{{end}}
{{with .R.Connections.ConnectLatency}}<tr><td>connect</td><td class="n">{{.Count}}</td><td class="n">{{pctl . .P50Us}}</td><td class="n">{{pctl . .P90Us}}</td><td class="n">{{pctl . .P99Us}}</td><td class="n">{{pctl . .P999Us}}</td><td class="n">{{pctl . .MaxUs}}</td></tr>{{end}}
</table>
<p>Latency runs from each message's intended send time (its slot in the open-loop schedule) to its arrival, so a stalled sender or server shows up in full.</p>
<h3>Latency over time (log scale)</h3>
{{.LatChart}}
<h3>Deliveries per second</h3>
{{.RateChart}}
<h3>Latency histogram ({{if eq .R.Scenario "connect"}}connect{{else}}deliveries{{end}}, power-of-two buckets)</h3>
{{.HistChart}}

<h2>Correctness</h2>
{{with .R.Correctness}}<table>
<tr><td>members checked (connected for the whole window)</td><td class="n">{{.MembersChecked}}</td></tr>
<tr><td>members excluded (slow, disconnected, failed)</td><td class="n">{{.MembersExcluded}}</td></tr>
<tr><td>expected deliveries</td><td class="n">{{.Expected}}</td></tr>
<tr><td>received</td><td class="n">{{.Received}}</td></tr>
<tr><td>lost</td><td class="n">{{.Lost}} ({{pct .LossRatio}})</td></tr>
<tr><td>of which not arrived by the end (in flight, or dropped last)</td><td class="n">{{.MissingAtEnd}}</td></tr>
<tr><td>duplicated</td><td class="n">{{.Duplicated}}</td></tr>
<tr><td>out of order</td><td class="n">{{.OutOfOrder}}</td></tr>
<tr><td>rejoins with since (recovered / not)</td><td class="n">{{.Rejoins}} ({{.RecoveredJoins}} / {{.UnrecoveredJoins}})</td></tr>
<tr><td>gaps healed by replay</td><td class="n">{{.HealedByReplay}}</td></tr>
<tr><td>unconfirmed sends</td><td class="n">{{.Unconfirmed}}</td></tr>
<tr><td>foreign messages</td><td class="n">{{.Foreign}}</td></tr>
</table>{{end}}

<h2>Summary</h2>
<pre>{{.Summary}}</pre>
</body></html>
`))

// chart geometry
const (
	chartW, chartH = 900, 260
	padL, padR     = 64, 16
	padT, padB     = 14, 30
)

type chartSeries struct {
	name  string
	color string
	ys    []float64
}

// lineChart draws series against xs. With logY the y axis is log10 (values
// below 1 are drawn at 1).
func lineChart(xs []float64, series []chartSeries, logY bool, yFmt func(float64) string) template.HTML {
	if len(xs) == 0 {
		return template.HTML(`<p><em>No samples.</em></p>`)
	}
	minX, maxX := xs[0], xs[len(xs)-1]
	if maxX <= minX {
		maxX = minX + 1
	}
	maxY := 1.0
	for _, s := range series {
		for _, y := range s.ys {
			maxY = math.Max(maxY, y)
		}
	}
	ty := func(y float64) float64 { return y }
	if logY {
		ty = func(y float64) float64 { return math.Log10(math.Max(y, 1)) }
	}
	top := ty(maxY)
	if logY {
		top = math.Ceil(top)
	} else {
		top = niceCeil(maxY)
	}
	if top <= 0 {
		top = 1
	}
	px := func(x float64) float64 { return padL + (x-minX)/(maxX-minX)*(chartW-padL-padR) }
	py := func(y float64) float64 { return chartH - padB - ty(y)/top*(chartH-padT-padB) }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" role="img">`, chartW, chartH, chartW, chartH)
	// y grid
	ticks := []float64{}
	if logY {
		for e := 0.0; e <= top; e++ {
			ticks = append(ticks, math.Pow(10, e))
		}
	} else {
		for i := 0; i <= 4; i++ {
			ticks = append(ticks, top*float64(i)/4)
		}
	}
	for _, t := range ticks {
		y := py(t)
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#eee"/>`, padL, chartW-padR, y, y)
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`, padL-6, y+4, template.HTMLEscapeString(yFmt(t)))
	}
	// x labels
	for i := 0; i <= 5; i++ {
		x := minX + (maxX-minX)*float64(i)/5
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%.1fs</text>`, px(x), chartH-10, x)
	}
	for si, s := range series {
		var pts strings.Builder
		for i, y := range s.ys {
			if i < len(xs) {
				fmt.Fprintf(&pts, "%.1f,%.1f ", px(xs[i]), py(y))
			}
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.6" points="%s"/>`, s.color, strings.TrimSpace(pts.String()))
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="10" height="10" fill="%s"/><text x="%d" y="%d">%s</text>`,
			padL+10+si*110, padT, s.color, padL+24+si*110, padT+9, template.HTMLEscapeString(s.name))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

func latencyChart(tl []TimelinePoint) template.HTML {
	xs := make([]float64, len(tl))
	p50, p99, mx := make([]float64, len(tl)), make([]float64, len(tl)), make([]float64, len(tl))
	for i, p := range tl {
		xs[i], p50[i], p99[i], mx[i] = p.TS, float64(p.P50Us), float64(p.P99Us), float64(p.MaxUs)
	}
	return lineChart(xs, []chartSeries{{"p50", "#2f6fde", p50}, {"p99", "#e07b00", p99}, {"max", "#b3261e", mx}}, true,
		func(v float64) string { return fmtUs(int64(v)) })
}

func rateChart(tl []TimelinePoint) template.HTML {
	xs := make([]float64, len(tl))
	d := make([]float64, len(tl))
	for i, p := range tl {
		xs[i], d[i] = p.TS, p.DeliveriesPerS
	}
	return lineChart(xs, []chartSeries{{"deliveries/s", "#176b2c", d}}, false, humanCount)
}

// histogramChart draws one bar per bucket, heights on a log scale so the
// tail stays visible.
func histogramChart(bs []Bucket) template.HTML {
	if len(bs) == 0 {
		return template.HTML(`<p><em>No samples.</em></p>`)
	}
	var maxC int64 = 1
	for _, b := range bs {
		maxC = max(maxC, b.Count)
	}
	top := math.Ceil(math.Log10(float64(maxC) + 1))
	bw := float64(chartW-padL-padR) / float64(len(bs))
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" role="img">`, chartW, chartH, chartW, chartH)
	for e := 0.0; e <= top; e++ {
		y := chartH - padB - e/top*(chartH-padT-padB)
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#eee"/><text x="%d" y="%.1f" text-anchor="end">%s</text>`,
			padL, chartW-padR, y, y, padL-6, y+4, humanCount(math.Pow(10, e)))
	}
	for i, bk := range bs {
		h := math.Log10(float64(bk.Count)+1) / top * (chartH - padT - padB)
		x := padL + float64(i)*bw
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#2f6fde"><title>≤ %s: %d</title></rect>`,
			x+1, chartH-padB-h, math.Max(bw-2, 1), h, template.HTMLEscapeString(fmtUs(bk.LeUs)), bk.Count)
		if len(bs) <= 24 || i%2 == 0 {
			fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`, x+bw/2, chartH-10, template.HTMLEscapeString(fmtUs(bk.LeUs)))
		}
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}
