// Package dashboards ships chatgate's Grafana dashboard and Prometheus
// alerting rules as embedded files, so tools and tests can use exactly what
// operators import.
//
//   - chatgate.json: the Grafana dashboard (uid "chatgate-overview"); import
//     it unchanged and pick a Prometheus data source.
//   - alerts.yaml: Prometheus alerting rules (group "chatgate"); load it with
//     rule_files. alerts_test.yaml holds its promtool unit tests.
//
// lint_test.go checks both against the metrics the gateway exposes, and
// e2e_test.go runs every query against a real Prometheus scraping a real
// gateway.
package dashboards

import _ "embed"

// Dashboard is the Grafana dashboard JSON (chatgate.json).
//
//go:embed chatgate.json
var Dashboard []byte

// AlertRules is the Prometheus alerting rules file (alerts.yaml).
//
//go:embed alerts.yaml
var AlertRules []byte

// DashboardUID is the dashboard's stable Grafana uid.
const DashboardUID = "chatgate-overview"
