package bench

import (
	"fmt"
	"io"
	"math"
	"strings"
)

// WriteTable prints the human summary.
func WriteTable(w io.Writer, r *Result) {
	p := r.Params
	fmt.Fprintf(w, "chatbench %s · %s · %s · bench %s\n", r.Scenario, r.Proto, strings.Join(r.Target, ","), r.BenchID)
	switch r.Scenario {
	case ScenarioConnect:
		fmt.Fprintf(w, "  %d connections at %g/s\n\n", p.Conns, p.ConnectRate)
	default:
		fmt.Fprintf(w, "  %d members in %d room(s), %d sender(s) per room at %g msg/s, %d-byte texts, window %.1fs (target %s deliveries/s)\n\n",
			p.Conns, p.Rooms, p.SendersPerRoom, p.RatePerSender, p.SizeBytes, r.WindowS, humanCount(p.TargetDeliveriesPerS))
	}
	row := func(k, format string, args ...any) { fmt.Fprintf(w, "  %-13s %s\n", k, fmt.Sprintf(format, args...)) }
	c := r.Connections
	row("connections", "%d/%d up, %d failed%s · connect p50 %s p99 %s max %s · %s/s",
		c.Established, c.Attempted, c.Failed, statusList(c.FailuresByStatus),
		pctl(c.ConnectLatency, c.ConnectLatency.P50Us), pctl(c.ConnectLatency, c.ConnectLatency.P99Us), pctl(c.ConnectLatency, c.ConnectLatency.MaxUs), humanCount(c.HandshakesPerS))
	if r.Scenario != ScenarioConnect {
		m := r.Messages
		row("messages", "sent %d (%s/s), acked %d, rejected %d, write failures %d, unconfirmed %d",
			m.Sent, humanCount(m.SentPerS), m.Acked, m.Rejected, m.WriteFailed, r.Correctness.Unconfirmed)
		row("deliveries", "%d (%s/s of %s/s target)", m.Deliveries, humanCount(m.DeliveriesPerS), humanCount(p.TargetDeliveriesPerS))
		row("latency", "%s", latLine(r.Latency))
		if r.ClientCPUCores > 0 {
			row("bench cpu", "%.2f cores", r.ClientCPUCores)
		}
		if m.SenderMaxLagUs > 0 {
			row("sender lag", "max %s behind schedule, %d sends late (included in the latency)", fmtUs(m.SenderMaxLagUs), m.SendsLate)
		}
		k := r.Correctness
		row("correctness", "%d members checked (%d excluded): expected %d, received %d, lost %d (%.4f%%; %d of them not arrived by the end), duplicated %d, out of order %d",
			k.MembersChecked, k.MembersExcluded, k.Expected, k.Received, k.Lost, k.LossRatio*100, k.MissingAtEnd, k.Duplicated, k.OutOfOrder)
		if k.Rejoins > 0 || r.Drain != nil {
			row("resume", "%d rejoins with since: %d recovered, %d not; %d messages healed by replay", k.Rejoins, k.RecoveredJoins, k.UnrecoveredJoins, k.HealedByReplay)
		}
		if len(m.ErrorCodes) > 0 {
			row("error frames", "%s", countList(m.ErrorCodes))
		}
	}
	if s := r.Slow; s != nil {
		if s.Members == 0 {
			row("slow", "no slow listener")
		} else {
			row("slow", "%d slow listeners: %d evicted with 4008; ends %s; %d deliveries, latency %s",
				s.Members, s.Evicted, countList(s.CloseCodes), s.Deliveries, latLine(deref(r.SlowLatency)))
		}
		if p := s.Plan; p != nil && p.QueueBytes > 0 {
			line := fmt.Sprintf("stalls of %.1fs, %s/s to each listener: the gateway's queue (%s) and the kernel's buffers (about %s) fill in %.1fs",
				p.StallS, fmtBytes(p.BytesPerS), fmtBytes(float64(p.QueueBytes)), fmtBytes(float64(p.KernelBytes)), p.OverflowS)
			if p.StallUntilBlocked {
				held := ""
				if p.KernelBytes > 0 {
					held = fmt.Sprintf(" (its socket holding up to %s)", fmtBytes(float64(p.KernelBytes)))
				}
				line = fmt.Sprintf("stalls until the gateway's writes have been blocked%s for %.1fs; %s/s to each listener fills the gateway's queue (%s) in %.1fs",
					held, p.StallS, fmtBytes(p.BytesPerS), fmtBytes(float64(p.QueueBytes)), p.OverflowS)
			}
			if len(p.Sized) > 0 {
				line += " (sized from welcome.limits: --" + strings.Join(p.Sized, " --") + ")"
			}
			row("", "%s", line)
		}
	}
	if ch := r.Churn; ch != nil {
		row("churn", "%d arrivals, %d joined, %d failed · join p50 %s p99 %s · %s presence frames/s at stable members",
			ch.Arrivals, ch.Joined, ch.Failed, pctl(ch.JoinLatency, ch.JoinLatency.P50Us), pctl(ch.JoinLatency, ch.JoinLatency.P99Us), humanCount(ch.PresenceFramesPerS))
	}
	if d := r.Drain; d != nil {
		line := fmt.Sprintf("at %.1fs: %d reconnects, %d failed attempts, %d members could not resume", d.RanAtS, d.Reconnects, d.ReconnectFailures, d.ResumeFailed)
		if d.NoReplica > 0 {
			line += fmt.Sprintf(" (%d with no other replica to go to: counted apart, not as loss)", d.NoReplica)
		}
		if d.Error != "" {
			line += " · failed: " + d.Error
		}
		row("drain", "%s", line)
	}
	if s := r.Server; s != nil {
		line := fmt.Sprintf("cpu %.2fs (%.2f cores)", s.CPUSeconds, s.CPUCores)
		if s.CPUUsPerDelivery > 0 {
			line += fmt.Sprintf(", %.2f µs/delivery", s.CPUUsPerDelivery)
		}
		if s.CPUUsPerConnection > 0 {
			line += fmt.Sprintf(", %.1f µs/connection", s.CPUUsPerConnection)
		}
		perConn := fmtBytes(s.MemBytesPerConn) + "/connection"
		if s.MemPerConnNoisy {
			perConn = "memory per connection: sample too noisy"
		}
		line += fmt.Sprintf(" · rss %s → %s (peak %s), %s", fmtBytes(float64(s.RSSBeforeBytes)), fmtBytes(float64(s.RSSConnectedBytes)), fmtBytes(float64(s.RSSPeakBytes)), perConn)
		row("server", "%s [%s]", line, s.Source)
		for _, e := range s.Errors {
			row("", "sampling error: %s", e)
		}
	}
	if len(r.CloseCodes) > 0 {
		row("closes", "%s", countList(r.CloseCodes))
	}
	if len(r.Errors) > 0 {
		row("errors", "%s", countList(r.Errors))
	}
	for _, wn := range r.Warnings {
		row("warning", "%s", wn)
	}
	if r.Error != "" {
		row("FAILED", "%s", r.Error)
	}
	t := r.Thresholds
	switch {
	case len(t.Checked) == 0:
	case t.Passed:
		row("thresholds", "PASS (%s)", strings.Join(t.Checked, ", "))
	default:
		row("thresholds", "FAIL: %s", strings.Join(t.Violations, "; "))
	}
}

func deref(l *LatencySummary) LatencySummary {
	if l == nil {
		return LatencySummary{}
	}
	return *l
}

func latLine(l LatencySummary) string {
	if l.Count == 0 {
		return "none measured"
	}
	return fmt.Sprintf("p50 %s  p90 %s  p99 %s  p99.9 %s  max %s  (n=%d)",
		fmtUs(l.P50Us), fmtUs(l.P90Us), fmtUs(l.P99Us), fmtUs(l.P999Us), fmtUs(l.MaxUs), l.Count)
}

// pctl prints one value of l, or "-" when l measured nothing.
func pctl(l LatencySummary, us int64) string {
	if l.Count == 0 {
		return "-"
	}
	return fmtUs(us)
}

// countList prints counts by name as "a=1 b=2", in name order.
func countList(m map[string]int64) string {
	var parts []string
	for _, k := range sortedKeys(m) {
		parts = append(parts, fmt.Sprintf("%s=%d", k, m[k]))
	}
	return strings.Join(parts, " ")
}

func statusList(m map[string]int64) string {
	if len(m) == 0 {
		return ""
	}
	return " (HTTP " + countList(m) + ")"
}

func fmtBytes(b float64) string {
	switch {
	case math.Abs(b) >= 1<<30:
		return fmt.Sprintf("%.2f GiB", b/(1<<30))
	case math.Abs(b) >= 1<<20:
		return fmt.Sprintf("%.1f MiB", b/(1<<20))
	case math.Abs(b) >= 1<<10:
		return fmt.Sprintf("%.1f KiB", b/(1<<10))
	}
	return fmt.Sprintf("%.0f B", b)
}
