package k8s_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"text/template"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	"sigs.k8s.io/yaml"

	"github.com/chatgate/chatgate/metrics"
)

// adapterRule is one rule of Prometheus Adapter's configuration, with the
// field names the adapter reads; decoding strictly catches a misspelt one.
type adapterRule struct {
	SeriesQuery string `json:"seriesQuery"`
	Resources   struct {
		Overrides map[string]struct {
			Group    string `json:"group,omitempty"`
			Resource string `json:"resource"`
		} `json:"overrides"`
	} `json:"resources"`
	Name struct {
		Matches string `json:"matches"`
		As      string `json:"as"`
	} `json:"name"`
	MetricsQuery string `json:"metricsQuery"`
}

// adapterValues is the part of the prometheus-adapter chart's values that
// components/autoscaling/prometheus-adapter-values.yaml sets.
type adapterValues struct {
	Prometheus struct {
		URL  string `json:"url"`
		Port int    `json:"port"`
	} `json:"prometheus"`
	Rules struct {
		Default bool          `json:"default"`
		Custom  []adapterRule `json:"custom"`
	} `json:"rules"`
}

func loadAdapterValues(t *testing.T) adapterValues {
	t.Helper()
	b, err := os.ReadFile("components/autoscaling/prometheus-adapter-values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var v adapterValues
	if err := yaml.UnmarshalStrict(b, &v); err != nil {
		t.Fatalf("prometheus-adapter-values.yaml: %v", err)
	}
	return v
}

// gatewayMetricNames lists the metric families the gateway registers.
func gatewayMetricNames(t *testing.T) map[string]bool {
	t.Helper()
	reg := prometheus.NewRegistry()
	metrics.New(reg, metrics.BuildInfo{}, func() float64 { return 0 })
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	return names
}

// TestAutoscaling renders k8s/overlays/production and checks the HPA against
// the Deployment, the drain budget, the gateway's admission limit and the
// Prometheus Adapter rule that serves its custom metric.
func TestAutoscaling(t *testing.T) {
	r := render(t, "overlays/production")
	dep, ok := r.deployments["chatgate"]
	if !ok {
		t.Fatal("no Deployment chatgate")
	}
	if dep.Spec.Replicas != nil {
		t.Errorf("Deployment sets replicas %d; with an HPA every kubectl apply would reset the scale", *dep.Spec.Replicas)
	}
	if len(r.hpas) != 1 {
		t.Fatalf("want one HorizontalPodAutoscaler, got %d", len(r.hpas))
	}
	hpa := r.hpas[0]
	ref := hpa.Spec.ScaleTargetRef
	if ref.APIVersion != "apps/v1" || ref.Kind != "Deployment" || ref.Name != dep.Name {
		t.Errorf("HPA targets %s %s/%s, want apps/v1 Deployment/%s", ref.APIVersion, ref.Kind, ref.Name, dep.Name)
	}
	// The PDB lets one pod drain at a time; at least two must stay serving.
	if hpa.Spec.MinReplicas == nil || *hpa.Spec.MinReplicas < 3 {
		t.Errorf("HPA minReplicas = %v, want at least 3", hpa.Spec.MinReplicas)
	}
	if min := hpa.Spec.MinReplicas; min != nil && hpa.Spec.MaxReplicas <= *min {
		t.Errorf("HPA maxReplicas %d must exceed minReplicas %d", hpa.Spec.MaxReplicas, *min)
	}

	cm := r.configMaps["chatgate"]
	maxConns, err := strconv.ParseInt(cm.Data["CHATGATE_MAX_CONNS"], 10, 64)
	if err != nil {
		t.Fatalf("CHATGATE_MAX_CONNS: %v", err)
	}
	var connMetric string
	cpu := false
	for _, m := range hpa.Spec.Metrics {
		switch m.Type {
		case autoscalingv2.PodsMetricSourceType:
			connMetric = m.Pods.Metric.Name
			tg := m.Pods.Target
			if tg.Type != autoscalingv2.AverageValueMetricType || tg.AverageValue == nil {
				t.Errorf("connections target must be an AverageValue, got %+v", tg)
				continue
			}
			// Connections never move to new pods, so the target must leave
			// the existing pods headroom below their admission limit.
			if v := tg.AverageValue.Value(); v <= 0 || v > maxConns*3/4 {
				t.Errorf("connections per pod target %d must be positive and at most 75%% of CHATGATE_MAX_CONNS (%d)", v, maxConns)
			}
		case autoscalingv2.ResourceMetricSourceType:
			cpu = m.Resource.Name == "cpu"
		}
	}
	if connMetric == "" {
		t.Fatal("HPA has no Pods metric for connections")
	}
	if req := gatewayContainer(t, dep).Resources.Requests; cpu && req.Cpu().IsZero() {
		t.Error("a CPU utilization target needs a CPU request")
	}

	b := hpa.Spec.Behavior
	if b == nil || b.ScaleDown == nil || b.ScaleUp == nil {
		t.Fatal("HPA needs an explicit scaleUp and scaleDown behavior")
	}
	down := b.ScaleDown
	if down.StabilizationWindowSeconds == nil || *down.StabilizationWindowSeconds < 600 {
		t.Errorf("scale-down stabilization %v s, want at least 600 so daily dips do not flap", down.StabilizationWindowSeconds)
	}
	if down.SelectPolicy != nil && *down.SelectPolicy == autoscalingv2.DisabledPolicySelect {
		t.Error("scale-down is disabled")
	}
	grace := time.Duration(*dep.Spec.Template.Spec.TerminationGracePeriodSeconds) * time.Second
	if len(down.Policies) == 0 {
		t.Error("scale-down needs a policy limiting its rate")
	}
	for _, p := range down.Policies {
		// Remove one pod at a time, and only once the previous one has
		// finished draining (its grace period) with time to spare.
		period := time.Duration(p.PeriodSeconds) * time.Second
		if p.Type != autoscalingv2.PodsScalingPolicy || p.Value != 1 || period < 5*time.Minute || period < grace {
			t.Errorf("scale-down policy %+v: want 1 pod per period of at least 5 minutes and the %v grace period", p, grace)
		}
	}
	up := b.ScaleUp
	if up.StabilizationWindowSeconds == nil || *up.StabilizationWindowSeconds > 60 {
		t.Errorf("scale-up stabilization %v s, want at most 60: reconnect storms need capacity fast", up.StabilizationWindowSeconds)
	}
	fast := false
	for _, p := range up.Policies {
		if p.PeriodSeconds <= 60 && (p.Type == autoscalingv2.PodsScalingPolicy && p.Value >= 2 || p.Type == autoscalingv2.PercentScalingPolicy && p.Value >= 50) {
			fast = true
		}
	}
	if !fast {
		t.Errorf("scale-up policies %+v: want at least 2 pods or 50%% per minute", up.Policies)
	}

	// The adapter rule must serve exactly the metric the HPA asks for, from
	// a series the gateway exports, mapped onto namespace and pod by the
	// labels the ServiceMonitor's targets carry.
	v := loadAdapterValues(t)
	var rule *adapterRule
	for i, ru := range v.Rules.Custom {
		as := ru.Name.As
		if as == "" {
			as = strings.SplitN(ru.SeriesQuery, "{", 2)[0]
		}
		if as == connMetric {
			rule = &v.Rules.Custom[i]
		}
	}
	if rule == nil {
		t.Fatalf("prometheus-adapter-values.yaml has no rule serving %s", connMetric)
	}
	series := strings.SplitN(rule.SeriesQuery, "{", 2)[0]
	if !gatewayMetricNames(t)[series] {
		t.Errorf("the adapter rule reads %s, which the gateway does not export", series)
	}
	if re, err := regexp.Compile(rule.Name.Matches); err != nil || !re.MatchString(series) {
		t.Errorf("name.matches %q does not match %s (%v)", rule.Name.Matches, series, err)
	}
	for label, res := range map[string]string{"namespace": "namespace", "pod": "pod"} {
		if o, ok := rule.Resources.Overrides[label]; !ok || o.Resource != res || o.Group != "" {
			t.Errorf("adapter rule must map the %s label to the %s resource, got %+v", label, res, o)
		}
	}
	if len(r.serviceMonitors) != 1 {
		t.Fatalf("want one ServiceMonitor, got %d", len(r.serviceMonitors))
	}
	for _, ep := range r.serviceMonitors[0].Spec.Endpoints {
		for _, rc := range ep.RelabelConfigs {
			if rc.TargetLabel == "pod" || rc.TargetLabel == "namespace" {
				t.Errorf("ServiceMonitor relabels %s, which the adapter maps to pods", rc.TargetLabel)
			}
		}
	}
	if !strings.Contains(v.Prometheus.URL, ".monitoring.svc") || v.Prometheus.Port == 0 {
		t.Errorf("adapter Prometheus %s:%d is not the Prometheus in namespace monitoring", v.Prometheus.URL, v.Prometheus.Port)
	}
	checkAdapterQuery(t, rule.MetricsQuery, series)
}

// checkAdapterQuery expands metricsQuery the way Prometheus Adapter does
// (a Go template with << >> delimiters) and has promtool parse the result.
func checkAdapterQuery(t *testing.T, metricsQuery, series string) {
	t.Helper()
	tmpl, err := template.New("q").Delims("<<", ">>").Option("missingkey=error").Parse(metricsQuery)
	if err != nil {
		t.Fatalf("metricsQuery: %v", err)
	}
	var q bytes.Buffer
	data := map[string]string{
		"Series":        series,
		"LabelMatchers": `namespace="chatgate",pod=~"chatgate-a|chatgate-b"`,
		"GroupBy":       "pod",
	}
	if err := tmpl.Execute(&q, data); err != nil {
		t.Fatalf("metricsQuery: %v", err)
	}
	expr := q.String()
	if !strings.Contains(expr, series+"{") || !strings.Contains(expr, "by (pod)") {
		t.Errorf("metricsQuery expands to %q: want the series filtered by the matchers and grouped by pod", expr)
	}
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CHATGATE_E2E") == "1" {
			t.Fatalf("CHATGATE_E2E=1 but promtool is missing (apt-get install prometheus): %v", err)
		}
		t.Logf("promtool not found: the expanded adapter query %q is not parsed (install prometheus, or set CHATGATE_E2E=1 to require it)", expr)
		return
	}
	rules := map[string]any{"groups": []any{map[string]any{
		"name":  "adapter",
		"rules": []any{map[string]any{"record": "adapter:" + series, "expr": expr}},
	}}}
	y, err := yaml.Marshal(rules)
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "adapter-query.yaml")
	if err := os.WriteFile(f, y, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "check", "rules", f).CombinedOutput(); err != nil {
		t.Errorf("the adapter's metricsQuery expands to %q, which is not valid PromQL: %v\n%s", expr, err, out)
	}
}
