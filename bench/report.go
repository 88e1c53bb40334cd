package bench

import (
	"fmt"
	"html/template"
	"io"
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
		LatChart:  latencyChart(r.Timeline, r.Events, r.Slow != nil),
		RateChart: rateChart(r.Timeline, r.Events, r.Slow != nil),
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
<p>Per --interval, of deliveries to healthy members{{if .R.Slow}} (and the slow listeners' p99 apart){{end}}. Dashed vertical lines mark the drain and the evictions (4008) and sheds (1013) of the run.</p>
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
