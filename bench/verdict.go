package bench

import (
	"fmt"
	"strings"
	"time"
)

// evaluate checks the thresholds of cfg against r. A run that measured
// nothing to judge them on fails them too: nobody, or fewer members than
// --min-checked, checked for loss; no message delivered; sends rejected.
// Without thresholds those findings are warnings.
func (r *Result) evaluate(cfg *Config) {
	t := Thresholds{Checked: []string{}, Violations: []string{}}
	lat, what := r.Latency, "delivery"
	if r.Scenario == ScenarioConnect {
		lat, what = r.Connections.ConnectLatency, "connect"
	}
	checkLat := func(name string, slo time.Duration, got int64) {
		if slo <= 0 {
			return
		}
		t.Checked = append(t.Checked, name)
		switch {
		case lat.Count == 0:
			t.Violations = append(t.Violations, fmt.Sprintf("%s: no %s latencies were measured", name, what))
		case time.Duration(got)*time.Microsecond > slo:
			t.Violations = append(t.Violations, fmt.Sprintf("%s: %s %s is %v, above %v", name, what, name[4:], time.Duration(got)*time.Microsecond, slo))
		}
	}
	checkLat("slo-p99", cfg.SLOP99, lat.P99Us)
	checkLat("slo-p999", cfg.SLOP999, lat.P999Us)
	if cfg.MaxLoss.Given {
		t.Checked = append(t.Checked, "max-loss")
		c := r.Correctness
		if cfg.MaxLoss.IsRatio && c.LossRatio > cfg.MaxLoss.Ratio || !cfg.MaxLoss.IsRatio && c.Lost > cfg.MaxLoss.Count {
			t.Violations = append(t.Violations, fmt.Sprintf("max-loss: %d lost of %d (%.4f%%), above %s", c.Lost, c.Expected, c.LossRatio*100, cfg.MaxLoss.String()))
		}
	}
	checkCount := func(name string, limit, got int64) {
		if limit < 0 {
			return
		}
		t.Checked = append(t.Checked, name)
		if got > limit {
			t.Violations = append(t.Violations, fmt.Sprintf("%s: %d, above %d", name, got, limit))
		}
	}
	checkCount("max-dup", cfg.MaxDup, r.Correctness.Duplicated)
	checkCount("max-out-of-order", cfg.MaxOutOfOrder, r.Correctness.OutOfOrder)
	checkCount("max-connect-errors", cfg.MaxConnectErrors, r.Connections.Failed)

	problems := r.evidence(cfg)
	if len(t.Checked) > 0 || cfg.MinChecked >= 0 {
		if r.Scenario != ScenarioConnect {
			t.Checked = append(t.Checked, "min-checked")
		}
		t.Checked = append(t.Checked, "evidence")
		for _, p := range problems {
			t.Violations = append(t.Violations, p.check+": "+p.text)
		}
	} else {
		for _, p := range problems {
			r.Warnings = append(r.Warnings, p.text)
		}
	}
	t.Passed = len(t.Violations) == 0
	r.Thresholds = t
}

// warn adds the warnings that explain a run's results: what went wrong
// and, where chatbench can tell, what to change.
func (r *Result) warn(cfg *Config) {
	add := func(format string, args ...any) { r.Warnings = append(r.Warnings, fmt.Sprintf(format, args...)) }
	if n := r.Connections.FailuresByStatus["401"]; n > 0 && cfg.creds == nil {
		add("%d handshakes were refused with 401: the gateway wants a token (run with --jwt-secret-file or --token-file)", n)
	}
	if d := r.Drain; d != nil && d.NoReplica > 0 {
		add("there was no other replica to reconnect to: --url names one gateway, so the %d members the drain closed could not come back (%s); they are counted apart (drain.no_replica), not as loss. Give every replica's URL (--url ws://a/ws,ws://b/ws) to check that members resume on another one",
			d.NoReplica, reconnectErrors(r.Errors))
	}
}

// reconnectErrors lists the reconnect_* errors.
func reconnectErrors(errs map[string]int64) string {
	m := map[string]int64{}
	for k, v := range errs {
		if strings.HasPrefix(k, "reconnect_") {
			m[k] = v
		}
	}
	if len(m) == 0 {
		return "they were still trying when the run ended"
	}
	return "errors: " + countList(m)
}

// problem is one reason a run gave too little to judge.
type problem struct {
	check string // min-checked or evidence
	text  string
}

// evidence says what the run failed to measure.
func (r *Result) evidence(cfg *Config) []problem {
	if r.Scenario == ScenarioConnect {
		if r.Connections.Established == 0 {
			return []problem{{"evidence", fmt.Sprintf("no connection was established (%d attempted)", r.Connections.Attempted)}}
		}
		return nil
	}
	var out []problem
	c := r.Correctness
	why := ""
	if c.MembersExcluded > 0 {
		why = " (excluded: " + countList(c.ExcludedBy)
		if len(r.Messages.ErrorCodes) > 0 {
			why += "; error frames: " + countList(r.Messages.ErrorCodes)
		}
		why += ")"
	}
	floor, source := cfg.MinChecked, fmt.Sprintf("--min-checked %d", cfg.MinChecked)
	if floor < 0 {
		// Every member that can be checked: slow listeners cannot by
		// design, nor can drained members with nowhere to reconnect.
		floor = r.Params.Conns - int(c.ExcludedBy["slow"]+c.ExcludedBy["no_replica"])
		source = "every member that can be"
	}
	switch {
	case c.MembersChecked == 0:
		out = append(out, problem{"min-checked", fmt.Sprintf("no member was checked for loss, 0 of %d%s", r.Params.Conns, why)})
	case c.MembersChecked < floor:
		out = append(out, problem{"min-checked", fmt.Sprintf("%d of %d members were checked for loss, fewer than %d (%s)%s", c.MembersChecked, r.Params.Conns, floor, source, why)})
	}
	if r.Messages.Deliveries == 0 {
		out = append(out, problem{"evidence", fmt.Sprintf("no message was delivered (%d sent)", r.Messages.Sent)})
	}
	if n := r.Messages.Rejected; n > 0 {
		out = append(out, problem{"evidence", fmt.Sprintf("%d of %d sends were rejected (error frames: %s)", n, r.Messages.Sent, countList(r.Messages.ErrorCodes))})
	}
	return out
}
