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
	r.Warnings = append(r.Warnings, r.refusalHints(cfg)...)
	if s := r.Server; s != nil && s.MemPerConnNoisy {
		add("memory per connection is not reported: the server's RSS went from %s to %s while %d connections opened (the runtime returned memory meanwhile), so the sample was too noisy; open more connections or hold them longer (--hold) before the sample",
			fmtBytes(float64(s.RSSBeforeBytes)), fmtBytes(float64(s.RSSConnectedBytes)), r.Connections.Established)
	}
	if s := r.Slow; s != nil && s.Plan != nil && s.Plan.Problem != "" {
		add("the slow listeners cannot be expected to overflow the gateway's queue: %s", s.Plan.Problem)
	}
	if s := r.Slow; s != nil && r.Proto == ProtoChatgate && s.Evicted < s.Members {
		add("%d of %d slow listeners were not evicted with 4008 (their ends: %s): open means their backlog never exceeded the gateway's queue; 1006 that the gateway's write timeout ran out before it did (a stall longer than welcome.limits.write_timeout_ms)",
			s.Members-s.Evicted, s.Members, countList(s.CloseCodes))
	}
	if d := r.Drain; d != nil && d.NoReplica > 0 {
		add("there was no other replica to reconnect to: --url names one gateway, so the %d members the drain closed could not come back (%s); they are counted apart (drain.no_replica), not as loss. Give every replica's URL (--url ws://a/ws,ws://b/ws) to check that members resume on another one",
			d.NoReplica, reconnectErrors(r.Errors))
	}
}

// refusalHints explain refused handshakes whose cause chatbench can name.
func (r *Result) refusalHints(cfg *Config) []string {
	c := r.Connections
	var perIP, perUser, other429, capacity int64
	for reason, n := range c.FailuresByReason {
		switch {
		case strings.HasPrefix(reason, "429 too many connections from this address"):
			perIP += n
		case strings.HasPrefix(reason, "429 too many connections for this user"):
			perUser += n
		case strings.HasPrefix(reason, "429"):
			other429 += n
		case strings.HasPrefix(reason, "503 at capacity"):
			capacity += n
		}
	}
	var out []string
	if perIP > 0 {
		sources := max(len(cfg.SourceIPs), 1)
		hint := "spread the connections over more source addresses with --source-ips (every 127.0.0.0/8 address is local on Linux)"
		if each := c.Established / int64(sources); each > 0 {
			need := int((c.Attempted + each - 1) / each)
			hint = fmt.Sprintf("the gateway let in about %d from each of the %d source address(es) used: spread them over at least %d with --source-ips 127.0.0.1-127.0.0.%d (every 127.0.0.0/8 address is local on Linux)", each, sources, need, min(need, 255))
		}
		out = append(out, fmt.Sprintf("%d handshakes were refused with HTTP 429 (too many connections from this address): the gateway's per-IP limit (--max-conns-per-ip, 200 by default) refused them; %s, or raise --max-conns-per-ip", perIP, hint))
	}
	if perUser > 0 {
		out = append(out, fmt.Sprintf("%d handshakes were refused with HTTP 429 (too many connections for this user): the gateway's per-user limit (--max-conns-per-user, 20 by default) refused them; with --token or --token-file every connection is the same user: use --jwt-secret-file (a user per connection) or raise --max-conns-per-user", perUser))
	}
	if other429 > 0 {
		out = append(out, fmt.Sprintf("%d handshakes were refused with HTTP 429 Too Many Requests: the server limits connections per client; spread the source addresses with --source-ips or raise its limit", other429))
	}
	if capacity > 0 {
		out = append(out, fmt.Sprintf("%d handshakes were refused with HTTP 503 (at capacity): the gateway's handshake rate (--handshake-rate, --handshake-burst) or its --max-conns refused them; lower --connect-rate or raise those", capacity))
	}
	return out
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
