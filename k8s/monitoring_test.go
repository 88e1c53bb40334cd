package k8s_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"reflect"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/chatgate/chatgate/dashboards"
)

var update = flag.Bool("update", false, "regenerate k8s/components/monitoring from dashboards/")

const monitoringDir = "components/monitoring"

// ruleFromAlerts builds the PrometheusRule that carries dashboards/alerts.yaml.
func ruleFromAlerts(t *testing.T) monitoringv1.PrometheusRule {
	t.Helper()
	var spec monitoringv1.PrometheusRuleSpec
	if err := yaml.UnmarshalStrict(dashboards.AlertRules, &spec); err != nil {
		t.Fatalf("dashboards/alerts.yaml as a PrometheusRule spec: %v", err)
	}
	return monitoringv1.PrometheusRule{
		TypeMeta: metav1.TypeMeta{APIVersion: "monitoring.coreos.com/v1", Kind: "PrometheusRule"},
		ObjectMeta: metav1.ObjectMeta{Name: "chatgate", Labels: map[string]string{
			"app.kubernetes.io/name": "chatgate", "app.kubernetes.io/part-of": "chatgate",
		}},
		Spec: spec,
	}
}

func TestMonitoringFilesUpToDate(t *testing.T) {
	rule := ruleFromAlerts(t)
	y, err := yaml.Marshal(rule)
	if err != nil {
		t.Fatal(err)
	}
	y = append([]byte("# Generated from dashboards/alerts.yaml by `go test ./k8s/ -run Monitoring -update`; do not edit.\n"), y...)
	files := map[string][]byte{
		monitoringDir + "/chatgate.json":       dashboards.Dashboard,
		monitoringDir + "/prometheusrule.yaml": y,
	}
	for path, want := range files {
		if *update {
			if err := os.WriteFile(path, want, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is out of date with dashboards/; run go test ./k8s/ -run Monitoring -update", path)
		}
	}
}

// TestProductionOverlay renders k8s/overlays/production and checks the
// monitoring objects against dashboards/ and the gateway's admin Service.
func TestProductionOverlay(t *testing.T) {
	r := render(t, "overlays/production")
	sms, rules := r.serviceMonitors, r.prometheusRules
	// Everything else must be the base, unchanged in kind.
	if r.kinds["Deployment"] != 1 || r.kinds["StatefulSet"] != 1 {
		t.Errorf("production kinds = %v, want the base's Deployment and NATS StatefulSet", r.kinds)
	}
	dashboard, ok := r.configMaps["chatgate-dashboard"]
	if !ok {
		t.Fatal("no chatgate-dashboard ConfigMap")
	}
	if dashboard.Labels["grafana_dashboard"] != "1" {
		t.Error(`dashboard ConfigMap needs the label grafana_dashboard: "1"`)
	}
	if got := dashboard.Data["chatgate.json"]; got != string(dashboards.Dashboard) {
		t.Error("dashboard ConfigMap differs from dashboards/chatgate.json")
	}
	if !json.Valid([]byte(dashboard.Data["chatgate.json"])) {
		t.Error("dashboard is not valid JSON")
	}
	if len(rules) != 1 {
		t.Fatalf("want one PrometheusRule, got %d", len(rules))
	}
	if want := ruleFromAlerts(t).Spec; !reflect.DeepEqual(rules[0].Spec, want) {
		t.Error("PrometheusRule differs from dashboards/alerts.yaml")
	}
	admin, ok := r.services["chatgate-admin"]
	if len(sms) != 1 || !ok {
		t.Fatalf("want one ServiceMonitor and the chatgate-admin Service, got %d, %v", len(sms), ok)
	}
	sm := sms[0]
	if !selects(t, &sm.Spec.Selector, admin.Labels) {
		t.Error("ServiceMonitor does not select the chatgate-admin Service")
	}
	portOK := false
	for _, p := range admin.Spec.Ports {
		for _, ep := range sm.Spec.Endpoints {
			if ep.Port == p.Name && ep.Path == "/metrics" {
				portOK = true
			}
		}
	}
	if !portOK {
		t.Error("ServiceMonitor must scrape /metrics on a named port of chatgate-admin")
	}
}
