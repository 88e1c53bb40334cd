package dashboards

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/prometheus/client_golang/prometheus"
	"gopkg.in/yaml.v3"

	"github.com/chatgate/chatgate/gateway/cluster"
	"github.com/chatgate/chatgate/metrics"
)

// ---- a small PromQL lexer, enough to find selectors, ranges and comparisons ----

type tokKind int

const (
	tokIdent  tokKind = iota // metric, label, function or keyword name
	tokString                // "…", '…' or `…` (text keeps the quotes)
	tokNumber                // a number or a duration outside brackets
	tokVar                   // a Grafana variable: $name or ${name}
	tokRange                 // […] as one token; text is what is inside
	tokPunct                 // ( ) { } , and operators
)

type token struct {
	kind       tokKind
	text       string
	start, end int // byte offsets in the expression
}

// lexPromQL splits expr into tokens. Grafana variables are tokens of their
// own, so dashboard expressions lex before substitution.
func lexPromQL(expr string) ([]token, error) {
	var toks []token
	isIdentStart := func(c byte) bool { return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
	isIdent := func(c byte) bool { return isIdentStart(c) || c >= '0' && c <= '9' }
	for i := 0; i < len(expr); {
		c := expr[i]
		start := i
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
			continue
		case c == '#': // comment to the end of the line
			for i < len(expr) && expr[i] != '\n' {
				i++
			}
			continue
		case c == '"' || c == '\'' || c == '`':
			i++
			for i < len(expr) && expr[i] != c {
				if expr[i] == '\\' && c != '`' {
					i++
				}
				i++
			}
			if i >= len(expr) {
				return nil, fmt.Errorf("unterminated string at %d", start)
			}
			i++
			toks = append(toks, token{tokString, expr[start:i], start, i})
		case c == '$':
			i++
			if i < len(expr) && expr[i] == '{' {
				end := strings.IndexByte(expr[i:], '}')
				if end < 0 {
					return nil, fmt.Errorf("unterminated ${ at %d", start)
				}
				i += end + 1
			} else {
				for i < len(expr) && isIdent(expr[i]) {
					i++
				}
			}
			toks = append(toks, token{tokVar, expr[start:i], start, i})
		case c == '[':
			end := strings.IndexByte(expr[i:], ']')
			if end < 0 {
				return nil, fmt.Errorf("unterminated [ at %d", start)
			}
			i += end + 1
			toks = append(toks, token{tokRange, strings.TrimSpace(expr[start+1 : i-1]), start, i})
		case c >= '0' && c <= '9' || c == '.' && i+1 < len(expr) && expr[i+1] >= '0' && expr[i+1] <= '9':
			for i < len(expr) && (isIdent(expr[i]) && expr[i] != ':' || expr[i] == '.') {
				if (expr[i] == 'e' || expr[i] == 'E') && i+1 < len(expr) && (expr[i+1] == '+' || expr[i+1] == '-') {
					i++
				}
				i++
			}
			toks = append(toks, token{tokNumber, expr[start:i], start, i})
		case isIdentStart(c):
			for i < len(expr) && isIdent(expr[i]) {
				i++
			}
			toks = append(toks, token{tokIdent, expr[start:i], start, i})
		default:
			op := ""
			for _, o := range []string{"==", "!=", ">=", "<=", "=~", "!~", "(", ")", "{", "}", ",", "=", ">", "<", "+", "-", "*", "/", "%", "^", "@"} {
				if strings.HasPrefix(expr[i:], o) {
					op = o
					break
				}
			}
			if op == "" {
				return nil, fmt.Errorf("unexpected %q at %d", c, start)
			}
			i += len(op)
			toks = append(toks, token{tokPunct, op, start, i})
		}
	}
	return toks, nil
}

type matcher struct{ label, op, value string }

type selector struct {
	metric   string
	matchers []matcher
}

// has reports whether the selector has a matcher label op value.
func (s selector) has(label, op, value string) bool {
	return slices.Contains(s.matchers, matcher{label, op, value})
}

type rangeUse struct {
	fn    string // innermost enclosing function call, "" if none
	rng   string // the text inside [ ]
	whole string // the expression, for messages
}

type exprInfo struct {
	selectors []selector
	ranges    []rangeUse
}

var promKeywords = map[string]bool{
	"and": true, "or": true, "unless": true, "bool": true, "offset": true,
	"inf": true, "nan": true, "start": true, "end": true,
}

var groupingKeywords = map[string]bool{
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
}

var aggregations = map[string]bool{
	"sum": true, "min": true, "max": true, "avg": true, "group": true, "stddev": true, "stdvar": true,
	"count": true, "count_values": true, "bottomk": true, "topk": true, "quantile": true,
}

// analyse finds every vector selector, with its matchers, and every range
// with the function it is passed to.
func analyse(expr string) (exprInfo, error) {
	toks, err := lexPromQL(expr)
	if err != nil {
		return exprInfo{}, err
	}
	var info exprInfo
	var calls []string // open parentheses: the function each belongs to ("" for grouping)
	pendingAgg := ""   // an aggregation whose ( comes after its by/without clause
	parseMatchers := func(i int) (int, []matcher, error) {
		// toks[i] is "{"; returns the index after the matching "}".
		var ms []matcher
		for i++; i < len(toks); i++ {
			if toks[i].text == "}" {
				return i + 1, ms, nil
			}
			if toks[i].text == "," {
				continue
			}
			if i+2 >= len(toks) || toks[i].kind != tokIdent || toks[i+1].kind != tokPunct || toks[i+2].kind != tokString {
				return 0, nil, fmt.Errorf("bad label matcher near %q", expr[toks[i].start:])
			}
			v := toks[i+2].text
			ms = append(ms, matcher{toks[i].text, toks[i+1].text, v[1 : len(v)-1]})
			i += 2
		}
		return 0, nil, fmt.Errorf("unterminated { in %q", expr)
	}
	for i := 0; i < len(toks); i++ {
		tk := toks[i]
		next := ""
		if i+1 < len(toks) {
			next = toks[i+1].text
		}
		switch {
		case tk.kind == tokIdent && groupingKeywords[tk.text]:
			if next == "(" { // a label list, not an expression
				j := i + 1
				for j < len(toks) && toks[j].text != ")" {
					j++
				}
				if j == len(toks) {
					return info, fmt.Errorf("unterminated label list after %s", tk.text)
				}
				i = j
			}
		case tk.kind == tokIdent && promKeywords[strings.ToLower(tk.text)]:
		case tk.kind == tokIdent && next == "(":
			calls = append(calls, tk.text)
			i++
		case tk.kind == tokIdent && aggregations[tk.text] && (next == "by" || next == "without"):
			pendingAgg = tk.text
		case tk.kind == tokIdent:
			s := selector{metric: tk.text}
			if next == "{" {
				j, ms, err := parseMatchers(i + 1)
				if err != nil {
					return info, err
				}
				s.matchers = ms
				i = j - 1
			}
			info.selectors = append(info.selectors, s)
		case tk.text == "{":
			j, ms, err := parseMatchers(i)
			if err != nil {
				return info, err
			}
			s := selector{matchers: ms}
			for _, m := range ms {
				if m.label == "__name__" && m.op == "=" {
					s.metric = m.value
				}
			}
			info.selectors = append(info.selectors, s)
			i = j - 1
		case tk.text == "(":
			calls = append(calls, pendingAgg)
			pendingAgg = ""
		case tk.text == ")":
			if len(calls) == 0 {
				return info, fmt.Errorf("unbalanced ) in %q", expr)
			}
			calls = calls[:len(calls)-1]
		case tk.kind == tokRange:
			fn := ""
			if len(calls) > 0 {
				fn = calls[len(calls)-1]
			}
			info.ranges = append(info.ranges, rangeUse{fn: fn, rng: tk.text, whole: expr})
		}
	}
	if len(calls) != 0 {
		return info, fmt.Errorf("unbalanced ( in %q", expr)
	}
	return info, nil
}

// boolComparisons rewrites every comparison outside label matchers to its
// bool form (a > 0.25 → a > bool 0.25), so an alert expression returns its
// series with 0 or 1 instead of filtering them out: the query then has
// series exactly when the data the alert looks at exists.
func boolComparisons(expr string) (string, error) {
	toks, err := lexPromQL(expr)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	last, depth := 0, 0
	for i, tk := range toks {
		switch tk.text {
		case "{":
			depth++
		case "}":
			depth--
		case "==", "!=", ">=", "<=", ">", "<":
			if depth > 0 || tk.kind != tokPunct {
				continue
			}
			if i+1 < len(toks) && toks[i+1].kind == tokIdent && toks[i+1].text == "bool" {
				continue
			}
			b.WriteString(expr[last:tk.end])
			b.WriteString(" bool")
			last = tk.end
		}
	}
	b.WriteString(expr[last:])
	return b.String(), nil
}

// ---- the metrics the gateway exposes ----

// exposedMetrics returns every series name the gateway's registry exposes
// in cluster mode (so a single replica's families and the
// chatgate_backplane_* ones): each family, plus _bucket/_sum/_count for
// histograms and _sum/_count for summaries.
func exposedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	names, err := exposedNames()
	if err != nil {
		t.Fatal(err)
	}
	return maps.Clone(names)
}

// exposedNames registers the metrics the way cmd/chatgate does in cluster
// mode: the gateway's, then the backplane's, which only a real
// cluster.Backplane registers. That backplane connects to a throwaway
// embedded NATS server (no JetStream: only the registration matters) and
// both are closed before returning. Done once per test binary.
var exposedNames = sync.OnceValues(func() (map[string]bool, error) {
	reg := prometheus.NewRegistry()
	metrics.New(reg, metrics.BuildInfo{Version: "lint", Revision: "lint"}, func() float64 { return 0 })
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true})
	if err != nil {
		return nil, fmt.Errorf("embedded NATS server: %w", err)
	}
	go ns.Start()
	defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
	if !ns.ReadyForConnections(10 * time.Second) {
		return nil, errors.New("embedded NATS server did not start")
	}
	bp, err := cluster.New(cluster.Config{URL: ns.ClientURL(), NodeID: "lint", Registry: reg})
	if err != nil {
		return nil, err
	}
	defer bp.Close()
	mfs, err := reg.Gather()
	if err != nil {
		return nil, err
	}
	names := map[string]bool{}
	for _, mf := range mfs {
		n := mf.GetName()
		names[n] = true
		switch mf.GetType().String() {
		case "HISTOGRAM", "GAUGE_HISTOGRAM":
			names[n+"_bucket"], names[n+"_sum"], names[n+"_count"] = true, true, true
		case "SUMMARY":
			names[n+"_sum"], names[n+"_count"] = true, true
		}
	}
	return names, nil
})

// familyOf maps a series name back to its family for coverage checks.
func familyOf(name string, exposed map[string]bool) string {
	for _, suf := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suf); ok && exposed[base] {
			return base
		}
	}
	return name
}

// ---- the dashboard model ----

type dsRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

func (d *dsRef) String() string {
	if d == nil {
		return "none"
	}
	return fmt.Sprintf("{type %q, uid %q}", d.Type, d.UID)
}

type target struct {
	Datasource *dsRef `json:"datasource"`
	Expr       string `json:"expr"`
	RefID      string `json:"refId"`
	Format     string `json:"format"`
}

type gridPos struct{ H, W, X, Y int }

func (g gridPos) overlaps(o gridPos) bool {
	return g.X < o.X+o.W && o.X < g.X+g.W && g.Y < o.Y+o.H && o.Y < g.Y+g.H
}

type panel struct {
	ID          int      `json:"id"`
	Type        string   `json:"type"`
	Title       string   `json:"title"`
	Description string   `json:"description"`
	Datasource  *dsRef   `json:"datasource"`
	GridPos     *gridPos `json:"gridPos"`
	FieldConfig struct {
		Defaults struct {
			Unit       string `json:"unit"`
			Thresholds *struct {
				Mode  string `json:"mode"`
				Steps []struct {
					Color string   `json:"color"`
					Value *float64 `json:"value"` // null: the base step
				} `json:"steps"`
			} `json:"thresholds"`
		} `json:"defaults"`
	} `json:"fieldConfig"`
	Targets []target `json:"targets"`
	Panels  []panel  `json:"panels"` // a collapsed row's panels
}

type variable struct {
	Name       string          `json:"name"`
	Type       string          `json:"type"`
	Query      json.RawMessage `json:"query"`
	Datasource *dsRef          `json:"datasource"`
	IncludeAll bool            `json:"includeAll"`
	Multi      bool            `json:"multi"`
}

type dashboard struct {
	UID           string  `json:"uid"`
	Title         string  `json:"title"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []variable `json:"list"`
	} `json:"templating"`
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	var d dashboard
	if err := json.Unmarshal(Dashboard, &d); err != nil {
		t.Fatalf("chatgate.json: %v", err)
	}
	return d
}

// dataPanels returns every panel that is not a row, rows' nested panels
// included, in order.
func dataPanels(d dashboard) []panel {
	var out []panel
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			if p.Type == "row" {
				walk(p.Panels)
				continue
			}
			out = append(out, p)
		}
	}
	walk(d.Panels)
	return out
}

// thresholdColor is the color Grafana gives v under p's absolute
// thresholds: the last step whose value is at or below v (null is the base).
func thresholdColor(p panel, v float64) string {
	th := p.FieldConfig.Defaults.Thresholds
	if th == nil || th.Mode != "absolute" {
		return ""
	}
	color := ""
	for _, st := range th.Steps {
		if st.Value == nil || *st.Value <= v {
			color = st.Color
		}
	}
	return color
}

// The Overview's "Ready pods" stat turns red when no pod is ready (also
// when no pod reports at all), and is green with one or more.
func TestReadyPodsPanelRedAtZero(t *testing.T) {
	var ready *panel
	for _, p := range dataPanels(loadDashboard(t)) {
		if p.Title == "Ready pods" {
			ready = &p
		}
	}
	if ready == nil {
		t.Fatal("no Ready pods panel")
	}
	for _, c := range []struct {
		v    float64
		want string
	}{{0, "red"}, {1, "green"}, {5, "green"}} {
		if got := thresholdColor(*ready, c.v); got != c.want {
			t.Errorf("Ready pods at %v is %q; want %q", c.v, got, c.want)
		}
	}
	if expr := ready.Targets[0].Expr; !strings.HasSuffix(expr, "or vector(0)") {
		t.Errorf("Ready pods query %q shows no data (not a red 0) when no pod reports; want a fallback to vector(0)", expr)
	}
}

// variableQuery returns a query variable's query string, whether Grafana
// stored it as a string or as {"query": …}.
func variableQuery(v variable) string {
	var s string
	if json.Unmarshal(v.Query, &s) == nil {
		return s
	}
	var o struct {
		Query string `json:"query"`
	}
	_ = json.Unmarshal(v.Query, &o)
	return o.Query
}

// grafanaUnits are the Grafana unit ids the dashboard may use; a typo shows
// as a raw number in Grafana, so the lint rejects anything else.
var grafanaUnits = map[string]bool{
	"short": true, "none": true, "s": true, "ms": true, "bytes": true, "binBps": true, "Bps": true,
	"cps": true, "ops": true, "reqps": true, "percentunit": true, "percent": true,
	"bool_yes_no": true, "bool": true,
}

var wantDatasource = &dsRef{Type: "prometheus", UID: "${datasource}"}

var wantRows = []string{"Overview", "Traffic", "Errors & evictions", "Latency", "Rooms & presence", "Drain", "Backplane", "Server API", "Runtime"}

func TestDashboardTopLevel(t *testing.T) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(Dashboard, &raw); err != nil {
		t.Fatalf("chatgate.json is not JSON: %v", err)
	}
	d := loadDashboard(t)
	checks := []struct {
		name string
		ok   bool
		msg  string
	}{
		{"uid is stable", d.UID == DashboardUID, fmt.Sprintf("uid = %q; want %q", d.UID, DashboardUID)},
		{"uid is a valid Grafana uid", regexp.MustCompile(`^[A-Za-z0-9_-]{1,40}$`).MatchString(d.UID), fmt.Sprintf("uid %q", d.UID)},
		{"id is null", string(raw["id"]) == "null", fmt.Sprintf("id = %s; want null (present and null, so imports never overwrite another dashboard)", raw["id"])},
		{"has a title", d.Title != "", "empty title"},
		{"schemaVersion is current", d.SchemaVersion >= 36, fmt.Sprintf("schemaVersion %d", d.SchemaVersion)},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			if !c.ok {
				t.Error(c.msg)
			}
		})
	}
	var rows []string
	for _, p := range d.Panels {
		if p.Type == "row" {
			rows = append(rows, p.Title)
			if len(p.Targets) > 0 {
				t.Errorf("row %q has targets", p.Title)
			}
		}
	}
	if !slices.Equal(rows, wantRows) {
		t.Errorf("rows = %q; want %q", rows, wantRows)
	}
	// Panels fit the 24-column grid without overlapping.
	var placed []panel
	for _, p := range d.Panels {
		if p.GridPos == nil {
			t.Errorf("panel %q has no gridPos", p.Title)
			continue
		}
		g := *p.GridPos
		if g.W <= 0 || g.H <= 0 || g.X < 0 || g.Y < 0 || g.X+g.W > 24 {
			t.Errorf("panel %q: gridPos %+v does not fit the 24-column grid", p.Title, g)
		}
		for _, q := range placed {
			if g.overlaps(*q.GridPos) {
				t.Errorf("panel %q overlaps %q", p.Title, q.Title)
			}
		}
		placed = append(placed, p)
	}
}

func TestDashboardVariables(t *testing.T) {
	d := loadDashboard(t)
	vars := map[string]variable{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v
	}
	ds, ok := vars["datasource"]
	if !ok {
		t.Fatal("no datasource variable")
	}
	if ds.Type != "datasource" || variableQuery(ds) != "prometheus" {
		t.Errorf("datasource variable: type %q query %q; want datasource/prometheus", ds.Type, variableQuery(ds))
	}
	exposed := exposedMetrics(t)
	labelValues := regexp.MustCompile(`^label_values\(([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s*,\s*([a-zA-Z_][a-zA-Z0-9_]*)\)$`)
	for _, tc := range []struct{ name, label, filter string }{
		{"namespace", "namespace", ""},
		{"pod", "pod", `{namespace=~"$namespace"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, ok := vars[tc.name]
			if !ok {
				t.Fatalf("no %s variable", tc.name)
			}
			if v.Type != "query" || v.Datasource == nil || *v.Datasource != *wantDatasource {
				t.Errorf("type %q datasource %v; want a query on %v", v.Type, v.Datasource, wantDatasource)
			}
			if !v.IncludeAll || !v.Multi {
				t.Errorf("includeAll=%v multi=%v; want both", v.IncludeAll, v.Multi)
			}
			m := labelValues.FindStringSubmatch(variableQuery(v))
			if m == nil {
				t.Fatalf("query %q is not label_values(metric, label)", variableQuery(v))
			}
			if m[1] != "chatgate_build_info" || !exposed[m[1]] || m[2] != tc.filter || m[3] != tc.label {
				t.Errorf("query %q; want label_values(chatgate_build_info%s, %s)", variableQuery(v), tc.filter, tc.label)
			}
		})
	}
}

func TestDashboardPanels(t *testing.T) {
	d := loadDashboard(t)
	exposed := exposedMetrics(t)
	used := map[string]bool{}
	ids := map[int]string{}
	panels := dataPanels(d)
	if len(panels) == 0 {
		t.Fatal("no panels")
	}
	for _, p := range panels {
		t.Run(p.Title, func(t *testing.T) {
			if prev, dup := ids[p.ID]; dup || p.ID == 0 {
				t.Errorf("panel id %d is missing or also used by %q", p.ID, prev)
			}
			ids[p.ID] = p.Title
			if p.GridPos == nil {
				t.Error("no gridPos")
			}
			if strings.TrimSpace(p.Description) == "" {
				t.Error("no description")
			}
			if u := p.FieldConfig.Defaults.Unit; u == "" {
				t.Error("no fieldConfig.defaults.unit")
			} else if !grafanaUnits[u] {
				t.Errorf("unit %q is not a Grafana unit id this lint knows", u)
			}
			if p.Datasource == nil || *p.Datasource != *wantDatasource {
				t.Errorf("panel datasource %v; want %v", p.Datasource, wantDatasource)
			}
			if len(p.Targets) == 0 {
				t.Error("no targets")
			}
			for _, tg := range p.Targets {
				if tg.Datasource == nil || *tg.Datasource != *wantDatasource {
					t.Errorf("target %s: datasource %v; want %v", tg.RefID, tg.Datasource, wantDatasource)
				}
				for _, problem := range lintDashboardExpr(tg.Expr, exposed, used) {
					t.Errorf("target %s: %s\n  expr: %s", tg.RefID, problem, tg.Expr)
				}
			}
		})
	}
	// Every chatgate family the gateway exposes has a panel.
	var missing []string
	for n := range exposed {
		if strings.HasPrefix(n, "chatgate_") && familyOf(n, exposed) == n && !used[n] {
			missing = append(missing, n)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("metric families with no panel: %s", strings.Join(missing, ", "))
	}
}

// lintDashboardExpr returns what is wrong with one dashboard expression and
// records the families it uses.
func lintDashboardExpr(expr string, exposed, used map[string]bool) []string {
	if strings.TrimSpace(expr) == "" {
		return []string{"empty expr"}
	}
	info, err := analyse(expr)
	if err != nil {
		return []string{err.Error()}
	}
	var problems []string
	if len(info.selectors) == 0 {
		problems = append(problems, "no metric selector")
	}
	for _, s := range info.selectors {
		switch {
		case s.metric == "":
			problems = append(problems, "selector without a metric name")
		case !exposed[s.metric]:
			problems = append(problems, fmt.Sprintf("metric %s is not exposed by the gateway", s.metric))
		default:
			used[familyOf(s.metric, exposed)] = true
		}
		if !s.has("namespace", "=~", "$namespace") || !s.has("pod", "=~", "$pod") {
			problems = append(problems, fmt.Sprintf(`selector %s does not filter on namespace=~"$namespace", pod=~"$pod"`, s.metric))
		}
	}
	for _, r := range info.ranges {
		switch r.fn {
		case "rate", "irate", "increase":
			if r.rng != "$__rate_interval" {
				problems = append(problems, fmt.Sprintf("%s over [%s]; want [$__rate_interval]", r.fn, r.rng))
			}
		default:
			if !strings.HasPrefix(r.rng, "$__") {
				problems = append(problems, fmt.Sprintf("range [%s] in %s is hard-coded; use a Grafana interval variable", r.rng, r.fn))
			}
		}
	}
	return problems
}

// ---- alert rules ----

type rule struct {
	Alert       string            `yaml:"alert"`
	Record      string            `yaml:"record"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []rule `yaml:"rules"`
	} `yaml:"groups"`
}

func loadRules(t *testing.T) ruleFile {
	t.Helper()
	var rf ruleFile
	dec := yaml.NewDecoder(strings.NewReader(string(AlertRules)))
	dec.KnownFields(true)
	if err := dec.Decode(&rf); err != nil {
		t.Fatalf("alerts.yaml: %v", err)
	}
	return rf
}

const runbookBase = "https://github.com/chatgate/chatgate/blob/main/docs/operations.md#"

var wantAlerts = []string{
	"ChatgateBroadcastLatencyHigh", "ChatgateEvictionSpike", "ChatgateRejectionSpike",
	"ChatgateDrainOverrunning", "ChatgateNoReadyReplicas", "ChatgateFdExhaustion",
	"ChatgateBackplaneDown", "ChatgateBackplaneDeliveryGaps", "ChatgateBackplaneRepairsStuck", "ChatgateBackplanePublishErrors",
	"ChatgateAPIErrors",
}

// runbookAnchor is the GitHub anchor of the heading "Alert: <name>".
func runbookAnchor(alert string) string { return "alert-" + strings.ToLower(alert) }

func TestAlertRules(t *testing.T) {
	rf := loadRules(t)
	if len(rf.Groups) != 1 || rf.Groups[0].Name != "chatgate" {
		t.Fatalf("want exactly one group named chatgate, got %d", len(rf.Groups))
	}
	exposed := exposedMetrics(t)
	var names []string
	for _, r := range rf.Groups[0].Rules {
		names = append(names, r.Alert)
		t.Run(r.Alert, func(t *testing.T) {
			if r.Record != "" || r.Alert == "" {
				t.Fatalf("rule %q/%q: only alerting rules belong here", r.Alert, r.Record)
			}
			if !strings.HasPrefix(r.Alert, "Chatgate") {
				t.Errorf("name %q lacks the Chatgate prefix", r.Alert)
			}
			if r.For == "" {
				t.Error("no for: duration; one bad scrape would page")
			}
			switch r.Labels["severity"] {
			case "critical", "warning", "info":
			default:
				t.Errorf("severity label %q; want critical, warning or info", r.Labels["severity"])
			}
			for _, a := range []string{"summary", "description", "runbook_url"} {
				if strings.TrimSpace(r.Annotations[a]) == "" {
					t.Errorf("no %s annotation", a)
				}
			}
			if want := runbookBase + runbookAnchor(r.Alert); r.Annotations["runbook_url"] != want {
				t.Errorf("runbook_url %q; want %q", r.Annotations["runbook_url"], want)
			}
			info, err := analyse(r.Expr)
			if err != nil {
				t.Fatalf("expr: %v", err)
			}
			for _, s := range info.selectors {
				if !exposed[s.metric] {
					t.Errorf("metric %q is not exposed by the gateway", s.metric)
				}
			}
			if rewritten, err := boolComparisons(r.Expr); err != nil || rewritten == r.Expr {
				t.Errorf("expr has no comparison to evaluate (err %v)", err)
			}
		})
	}
	if !slices.Equal(names, wantAlerts) {
		t.Errorf("alerts = %q; want %q", names, wantAlerts)
	}
}

// TestRunbookAnchors checks that every runbook_url lands on a heading in
// docs/operations.md once that file documents the alerts.
func TestRunbookAnchors(t *testing.T) {
	doc, err := os.ReadFile("../docs/operations.md")
	if err != nil {
		t.Skipf("docs/operations.md: %v", err)
	}
	anchors := map[string]bool{}
	for _, line := range strings.Split(string(doc), "\n") {
		if h, ok := strings.CutPrefix(strings.TrimLeft(line, "#"), " "); ok && strings.HasPrefix(line, "#") {
			anchors[githubAnchor(h)] = true
		}
	}
	mentioned := false
	for _, a := range wantAlerts {
		mentioned = mentioned || strings.Contains(string(doc), a)
	}
	if !mentioned {
		t.Skip("docs/operations.md does not document the alerts yet; runbook anchors not checked")
	}
	for _, a := range wantAlerts {
		if !anchors[runbookAnchor(a)] {
			t.Errorf("docs/operations.md has no heading %q (anchor #%s) for the runbook_url of %s", "Alert: "+a, runbookAnchor(a), a)
		}
	}
}

// githubAnchor is GitHub's heading slug: lower case, punctuation dropped,
// spaces to hyphens.
func githubAnchor(h string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(h)) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9':
			b.WriteRune(r)
		}
	}
	return b.String()
}

// TestPromQLHelpers pins the lexer-based helpers the lints and the e2e test
// rely on.
func TestPromQLHelpers(t *testing.T) {
	t.Run("analyse", func(t *testing.T) {
		cases := []struct {
			expr    string
			metrics []string
			ranges  []string // fn:range
		}{
			{`sum(rate(a_total{x="1"}[$__rate_interval]))`, []string{"a_total"}, []string{"rate:$__rate_interval"}},
			{`histogram_quantile(0.99, sum by (pod, le) (rate(h_bucket{a=~"$a", b!="x"}[5m])))`, []string{"h_bucket"}, []string{"rate:5m"}},
			{`a / on (job) group_left (version) b > bool 0.5`, []string{"a", "b"}, nil},
			{`max_over_time(x[1h:5m]) or absent(y) unless {__name__="z"}`, []string{"x", "y", "z"}, []string{"max_over_time:1h:5m"}},
			{`count by (version, revision) (build_info{p="a,b}"})`, []string{"build_info"}, nil},
			{`sum without (instance) (increase(c[$__range])) offset 5m`, []string{"c"}, []string{"increase:$__range"}},
		}
		for _, c := range cases {
			info, err := analyse(c.expr)
			if err != nil {
				t.Errorf("%s: %v", c.expr, err)
				continue
			}
			var ms, rs []string
			for _, s := range info.selectors {
				ms = append(ms, s.metric)
			}
			for _, r := range info.ranges {
				rs = append(rs, r.fn+":"+r.rng)
			}
			if !slices.Equal(ms, c.metrics) || !slices.Equal(rs, c.ranges) {
				t.Errorf("%s: metrics %q ranges %q; want %q %q", c.expr, ms, rs, c.metrics, c.ranges)
			}
		}
		for _, bad := range []string{`sum(rate(x[1m])`, `x{a="1"`, `rate(x[1m]))`, `x{a}`} {
			if _, err := analyse(bad); err == nil {
				t.Errorf("%s: no error", bad)
			}
		}
	})
	t.Run("lint catches", func(t *testing.T) {
		exposed := map[string]bool{"chatgate_x_total": true}
		f := `{namespace=~"$namespace", pod=~"$pod"}`
		cases := []struct{ expr, want string }{
			{`sum(rate(chatgate_x_total` + f + `[$__rate_interval]))`, ""},
			{`sum(rate(chatgate_x_total` + f + `[5m]))`, "want [$__rate_interval]"},
			{`sum(increase(chatgate_x_total` + f + `[$__interval]))`, "want [$__rate_interval]"},
			{`sum(rate(chatgate_nope_total` + f + `[$__rate_interval]))`, "not exposed"},
			{`sum(rate(chatgate_x_total{pod=~"$pod"}[$__rate_interval]))`, "does not filter"},
			{`max_over_time(chatgate_x_total` + f + `[10m])`, "hard-coded"},
		}
		for _, c := range cases {
			got := strings.Join(lintDashboardExpr(c.expr, exposed, map[string]bool{}), "; ")
			if c.want == "" && got != "" || !strings.Contains(got, c.want) {
				t.Errorf("%s: problems %q; want %q", c.expr, got, c.want)
			}
		}
	})
	t.Run("boolComparisons", func(t *testing.T) {
		cases := []struct{ in, want string }{
			{`x > 0.25`, `x > bool 0.25`},
			{`a{r!="d"} / b >= 1 and c == 0 or absent(d)`, `a{r!="d"} / b >= bool 1 and c == bool 0 or absent(d)`},
			{`x > bool 1`, `x > bool 1`},
			{`(a < 2) and on (job) b{x=~"<|>"}`, `(a < bool 2) and on (job) b{x=~"<|>"}`},
		}
		for _, c := range cases {
			got, err := boolComparisons(c.in)
			if err != nil || got != c.want {
				t.Errorf("%s: got %q, %v; want %q", c.in, got, err, c.want)
			}
		}
	})
}
