package bench

import (
	"fmt"
	"html/template"
	"math"
	"strings"
)

// The report's charts: inline SVG, drawn here so the page needs no script.

// chart geometry
const (
	chartW, chartH = 900, 260
	padL, padR     = 64, 16
	padT, padB     = 30, 30
)

// chartSeries is one line. Series are drawn in order, so the one that
// matters most comes last and lies on top; NaN values leave a gap (an
// interval with nothing to show).
type chartSeries struct {
	name  string
	color string
	width float64
	dash  string // stroke-dasharray; "" for a solid line
	ys    []float64
}

// chartMark is a moment marked with a vertical line across the chart.
type chartMark struct {
	x     float64
	label string
	color string
}

// lineChart draws series against xs, and marks. With logY the y axis is
// log10 (values below 1 are drawn at 1).
func lineChart(xs []float64, series []chartSeries, marks []chartMark, logY bool, yFmt func(float64) string) template.HTML {
	if len(xs) == 0 {
		return template.HTML(`<p><em>No samples.</em></p>`)
	}
	minX, maxX := xs[0], xs[len(xs)-1]
	for _, m := range marks {
		minX, maxX = math.Min(minX, m.x), math.Max(maxX, m.x)
	}
	if maxX <= minX {
		maxX = minX + 1
	}
	maxY := 1.0
	for _, s := range series {
		for _, y := range s.ys {
			if !math.IsNaN(y) {
				maxY = math.Max(maxY, y)
			}
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
	// marks, under the lines; labels staggered, and left of the line near
	// the right edge
	for i, m := range marks {
		x := px(m.x)
		fmt.Fprintf(&b, `<line class="mark" x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="%s" stroke-width="1.2" stroke-dasharray="5 3"><title>%s</title></line>`,
			x, x, padT, chartH-padB, m.color, template.HTMLEscapeString(m.label))
		lx, anchor := x+3, "start"
		if x > chartW-padR-140 {
			lx, anchor = x-3, "end"
		}
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="%s" style="fill:%s">%s</text>`, lx, padT+10+12*(i%3), anchor, m.color, template.HTMLEscapeString(m.label))
	}
	legendX := padL + 10
	for _, s := range series {
		attrs := fmt.Sprintf(`fill="none" stroke="%s" stroke-width="%.1f"`, s.color, s.width)
		if s.dash != "" {
			attrs += fmt.Sprintf(` stroke-dasharray="%s"`, s.dash)
		}
		for _, seg := range segments(xs, s.ys) {
			var pts strings.Builder
			for _, i := range seg {
				fmt.Fprintf(&pts, "%.1f,%.1f ", px(xs[i]), py(s.ys[i]))
			}
			fmt.Fprintf(&b, `<polyline data-series="%s" %s points="%s"/>`, template.HTMLEscapeString(s.name), attrs, strings.TrimSpace(pts.String()))
			if len(seg) == 1 { // a lone point: a dot
				fmt.Fprintf(&b, `<circle data-series="%s" cx="%.1f" cy="%.1f" r="%.1f" fill="%s"/>`, template.HTMLEscapeString(s.name), px(xs[seg[0]]), py(s.ys[seg[0]]), s.width, s.color)
			}
		}
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="10" height="10" fill="%s"/><text x="%d" y="%d">%s</text>`,
			legendX, 4, s.color, legendX+14, 13, template.HTMLEscapeString(s.name))
		legendX += 30 + 7*len([]rune(s.name))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// segments splits the indexes of ys into runs without NaN.
func segments(xs, ys []float64) [][]int {
	var out [][]int
	var cur []int
	for i, y := range ys {
		if i >= len(xs) {
			break
		}
		if math.IsNaN(y) {
			if len(cur) > 0 {
				out = append(out, cur)
			}
			cur = nil
			continue
		}
		cur = append(cur, i)
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
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

// eventMarks turns the run's events into chart marks.
func eventMarks(evs []Event) []chartMark {
	var out []chartMark
	for _, ev := range evs {
		switch ev.Kind {
		case EventDrain:
			out = append(out, chartMark{ev.TS, fmt.Sprintf("drain at %.1fs", ev.TS), "#6b4fbb"})
		case EventEvicted:
			out = append(out, chartMark{ev.TS, fmt.Sprintf("%d evicted (4008)", ev.Count), "#b3261e"})
		case EventShed:
			out = append(out, chartMark{ev.TS, fmt.Sprintf("%d shed (1013)", ev.Count), "#9a6700"})
		}
	}
	return out
}

// latencyChart draws max, p50, the slow listeners' p99 and, on top and
// widest, p99; an interval without deliveries is a gap.
func latencyChart(tl []TimelinePoint, evs []Event, slow bool) template.HTML {
	xs := make([]float64, len(tl))
	p50, p99, mx, sp99 := make([]float64, len(tl)), make([]float64, len(tl)), make([]float64, len(tl)), make([]float64, len(tl))
	orGap := func(us int64) float64 {
		if us <= 0 {
			return math.NaN()
		}
		return float64(us)
	}
	for i, p := range tl {
		xs[i], p50[i], p99[i], mx[i], sp99[i] = p.TS, orGap(p.P50Us), orGap(p.P99Us), orGap(p.MaxUs), orGap(p.SlowP99Us)
	}
	series := []chartSeries{
		{"max", "#e8a09a", 1.2, "4 3", mx},
		{"p50", "#2f6fde", 1.6, "", p50},
	}
	if slow {
		series = append(series, chartSeries{"slow listeners p99", "#8e44ad", 1.6, "2 2", sp99})
	}
	series = append(series, chartSeries{"p99", "#e07b00", 2.6, "", p99})
	return lineChart(xs, series, eventMarks(evs), true, func(v float64) string { return fmtUs(int64(v)) })
}

func rateChart(tl []TimelinePoint, evs []Event, slow bool) template.HTML {
	xs := make([]float64, len(tl))
	d, sd := make([]float64, len(tl)), make([]float64, len(tl))
	for i, p := range tl {
		xs[i], d[i], sd[i] = p.TS, p.DeliveriesPerS, p.SlowDeliveriesPerS
	}
	series := []chartSeries{{"deliveries/s (healthy members)", "#176b2c", 1.8, "", d}}
	if slow {
		series = append(series, chartSeries{"deliveries/s (slow listeners)", "#8e44ad", 1.6, "2 2", sd})
	}
	return lineChart(xs, series, eventMarks(evs), false, humanCount)
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
