package bench

import (
	"fmt"
	"html/template"
	"io"
	"math"
	"strings"
)

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
