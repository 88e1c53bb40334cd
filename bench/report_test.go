package bench

import (
	"bytes"
	"context"
	"encoding/xml"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestTableReadsLikeText: maps print as k=v, and what was not measured
// prints "-", never Go syntax or a 0µs that looks like a measurement.
func TestTableReadsLikeText(t *testing.T) {
	r := &Result{
		Scenario: ScenarioFanout, Proto: ProtoChatgate, Target: []string{"ws://127.0.0.1:1/ws"},
		Params:      Params{Conns: 100, Rooms: 1, SendersPerRoom: 1},
		Connections: ConnStats{Attempted: 100, Failed: 100, FailuresByStatus: map[string]int64{"429": 100}},
		Errors:      map[string]int64{"connect_http_429": 100, "join_timeout": 2},
		CloseCodes:  map[string]int64{"4008": 3, "1001": 1},
		Messages:    MsgStats{ErrorCodes: map[string]int64{"forbidden": 5}},
		Churn:       &ChurnStats{},
	}
	var b bytes.Buffer
	WriteTable(&b, r)
	out := b.String()
	for _, want := range []string{
		"(HTTP 429=100)", "connect p50 - p99 - max -", "join p50 - p99 -",
		"connect_http_429=100 join_timeout=2", "1001=1 4008=3", "forbidden=5", "latency       none measured",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	for _, banned := range []string{"map[", "0µs", "×"} {
		if strings.Contains(out, banned) {
			t.Errorf("table has %q:\n%s", banned, out)
		}
	}
	b.Reset()
	if err := WriteHTML(&b, r); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), "0µs") || strings.Contains(b.String(), "map[") {
		t.Errorf("HTML report prints an empty latency as 0µs or a Go map")
	}
}

// TestProgressEndsFull: the live bar ends on screen at 100%, however the
// last tick of the window fell.
func TestProgressEndsFull(t *testing.T) {
	f := newFakeServer(t, false, nil)
	cfg := testConfig(f.url())
	cfg.Conns, cfg.Senders, cfg.Rate = 3, 1, 20
	cfg.Duration, cfg.Settle, cfg.Interval = 1300*time.Millisecond, time.Second, 500*time.Millisecond
	cfg.Progress = "on"
	var stderr bytes.Buffer
	if _, code := Run(context.Background(), cfg, Options{Stderr: &stderr}); code != ExitOK {
		t.Fatalf("exit %d:\n%s", code, stderr.String())
	}
	frames := strings.Split(strings.TrimRight(stderr.String(), "\n"), "\r")
	last := frames[len(frames)-1]
	if !strings.Contains(last, "100%") {
		t.Fatalf("the bar ends at %q, not 100%%; whole output %q", last, stderr.String())
	}
}

// svgElem is one drawn element of a chart, in drawing order.
type svgElem struct {
	name   string // polyline, circle, line
	series string // data-series
	width  float64
	class  string
	title  string
}

// charts returns the elements of each <svg> of page, in order.
func charts(t *testing.T, page string) [][]svgElem {
	t.Helper()
	var out [][]svgElem
	for rest := page; ; {
		i := strings.Index(rest, "<svg")
		if i < 0 {
			return out
		}
		j := strings.Index(rest[i:], "</svg>")
		if j < 0 {
			t.Fatal("unclosed <svg>")
		}
		doc := rest[i : i+j+len("</svg>")]
		rest = rest[i+j:]
		var elems []svgElem
		d := xml.NewDecoder(strings.NewReader(doc))
		var open *svgElem
		for {
			tok, err := d.Token()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("chart is not well-formed: %v\n%s", err, doc)
			}
			switch tk := tok.(type) {
			case xml.StartElement:
				e := svgElem{name: tk.Name.Local}
				for _, a := range tk.Attr {
					switch a.Name.Local {
					case "data-series":
						e.series = a.Value
					case "stroke-width":
						e.width, _ = strconv.ParseFloat(a.Value, 64)
					case "class":
						e.class = a.Value
					}
				}
				if e.name == "title" && open != nil {
					continue
				}
				elems = append(elems, e)
				open = &elems[len(elems)-1]
			case xml.CharData:
				if open != nil && open.class == "mark" {
					open.title += string(tk)
				}
			case xml.EndElement:
				if tk.Name.Local != "title" {
					open = nil
				}
			}
		}
		out = append(out, elems)
	}
}

// TestReportShowsEverything: p99 is drawn last (on top) and widest, an
// interval without deliveries is a gap, the slow listeners have series of
// their own, and the drain and the evictions are marked on both charts.
func TestReportShowsEverything(t *testing.T) {
	r := &Result{
		Scenario: ScenarioSlow, Proto: ProtoChatgate,
		Timeline: []TimelinePoint{
			{TS: 1, P50Us: 800, P99Us: 3000, MaxUs: 3000, DeliveriesPerS: 900, SlowDeliveriesPerS: 90, SlowP99Us: 5000},
			{TS: 2, P50Us: 900, P99Us: 4000, MaxUs: 4000, DeliveriesPerS: 950},
			{TS: 3, DeliveriesPerS: 0},
			{TS: 4, P50Us: 700, P99Us: 2000, MaxUs: 9000, DeliveriesPerS: 980, SlowDeliveriesPerS: 400, SlowP99Us: 2_000_000},
		},
		Events:    []Event{{TS: 2, Kind: EventDrain, Count: 1}, {TS: 3.5, Kind: EventEvicted, Count: 3}},
		Slow:      &SlowStats{Members: 3, Evicted: 3},
		Histogram: []Bucket{{LeUs: 1024, Count: 5}},
	}
	var b bytes.Buffer
	if err := WriteHTML(&b, r); err != nil {
		t.Fatal(err)
	}
	cs := charts(t, b.String())
	if len(cs) != 3 {
		t.Fatalf("%d charts, want latency, rate and histogram", len(cs))
	}
	lat, rate := cs[0], cs[1]
	var order []string
	widths := map[string]float64{}
	segs := map[string]int{}
	for _, e := range lat {
		if e.name == "polyline" {
			order = append(order, e.series)
			widths[e.series] = e.width
			segs[e.series]++
		}
	}
	if last := order[len(order)-1]; last != "p99" || segs["p99"] != 2 || widths["p99"] <= widths["max"] || widths["p99"] <= widths["p50"] {
		t.Fatalf("latency chart draws %v (widths %v, segments %v): p99 must come last, widest, with a gap", order, widths, segs)
	}
	for _, want := range []string{"max", "p50", "slow listeners p99"} {
		if segs[want] == 0 {
			t.Errorf("latency chart lacks %q: %v", want, order)
		}
	}
	hasSeries := false
	for _, e := range rate {
		hasSeries = hasSeries || e.series == "deliveries/s (slow listeners)"
	}
	if !hasSeries {
		t.Error("rate chart lacks the slow listeners' series")
	}
	for i, c := range [][]svgElem{lat, rate} {
		var marks []string
		for _, e := range c {
			if e.class == "mark" {
				marks = append(marks, e.title)
			}
		}
		if strings.Join(marks, "|") != "drain at 2.0s|3 evicted (4008)" {
			t.Errorf("chart %d marks %q", i, marks)
		}
	}
}

// reportMarks reads a written report's latency chart: its marks and the
// series it draws.
func reportMarks(t *testing.T, path string) (marks []string, series map[string]bool) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cs := charts(t, string(b))
	if len(cs) == 0 {
		t.Fatal("the report has no chart")
	}
	series = map[string]bool{}
	for _, e := range cs[0] {
		if e.class == "mark" {
			marks = append(marks, e.title)
		}
		if e.series != "" {
			series[e.series] = true
		}
	}
	return marks, series
}
