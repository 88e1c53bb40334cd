package bench

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"sync"
	"time"
)

// ---- the run ----

// runTraffic runs fanout, rooms, slow and drain, and churn's stable part
// (extra runs alongside the window when not nil).
func runTraffic(ctx context.Context, cfg *Config, opts *Options, id string, res *Result, extra func(ctx context.Context, e *engine, start, end time.Time)) error {
	var plan *SlowPlan
	if cfg.Scenario == ScenarioSlow {
		plan = planSlow(ctx, cfg)
		res.Params.SendersPerRoom, res.Params.RatePerSender, res.Params.SizeBytes = cfg.Senders, cfg.Rate, cfg.Size
	}
	e := newEngine(cfg, opts, id)
	if cfg.Via == ViaAPI {
		c, err := newAPIClient(cfg)
		if err != nil {
			return err
		}
		e.api = c
	}
	if plan != nil && plan.StallUntilBlocked {
		e.sockets = new(sockQueues)
	}
	res.Params.TargetDeliveriesPerS = round3(e.targetDeliveries())
	smp := newSampler(cfg)
	var before, connected serverSample
	if smp != nil {
		before = smp.sample(ctx)
	}
	prog := newProgress(opts, cfg, "connecting")
	defer prog.close()

	e.connectAll(ctx)
	defer func() {
		e.shutdown()
	}()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if cfg.Proto == ProtoRaw {
		e.probe(ctx)
	}
	if e.established.Load() == 0 {
		e.fillConnStats(res)
		res.Errors = e.errs.snapshot()
		return fmt.Errorf("no connection could be established (errors: %s)", countList(res.Errors))
	}
	if lim := math.Float64frombits(e.sendLimit.Load()); lim > 0 && cfg.Rate > lim && cfg.Senders > 0 && e.api == nil {
		res.Warnings = append(res.Warnings, fmt.Sprintf("the server allows %g sends/s per connection (welcome.limits.send_per_sec) but --rate is %g: expect rate_limited errors; start the gateway with a higher --send-rate", lim, cfg.Rate))
	}
	if lim := math.Float64frombits(e.sharedLimit.Load()); lim > 0 && cfg.Senders > 0 && e.api == nil {
		if total, allowed, who := sharedSendCap(cfg, lim); total > allowed {
			res.Warnings = append(res.Warnings, fmt.Sprintf("the senders send %g messages/s in all, but the server lets %s send %g/s (welcome.limits.shared_send_per_sec): expect rate_limited errors; spread the senders with --source-ips or start the gateway with a higher --user-send-rate", total, who, lim))
		}
	}
	if smp != nil {
		connected = smp.sample(ctx)
	}

	// The window.
	start := time.Now().Add(50 * time.Millisecond)
	end := start.Add(cfg.Duration)
	e.sendDeadline = end.Add(cfg.Settle)
	if cfg.Scenario == ScenarioSlow {
		e.stallAt.Store(start.Add(cfg.SlowAfter).UnixNano())
	}
	var startSample serverSample
	if smp != nil {
		startSample = smp.sample(ctx)
	}
	selfStart, selfStartAt := selfCPU(), time.Now()
	tl := newTimeline(e, smp, start, prog)
	tlDone := make(chan struct{})
	tlStop := make(chan struct{})
	go func() {
		defer close(tlDone)
		tl.run(ctx, tlStop)
	}()
	prog.start(cfg.Duration)

	var wg sync.WaitGroup
	window := e.startSenders(ctx, &wg, start, end)
	var drain *DrainStats
	if cfg.Scenario == ScenarioDrain {
		drain = &DrainStats{Command: cfg.DrainCmd}
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.runDrain(ctx, start, drain)
		}()
	}
	if extra != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			extra(ctx, e, start, end)
		}()
	}
	wg.Wait()
	// The window lasts its length even when no sender fills it (--senders
	// 0 holds idle members, in their rooms, for --duration).
	_ = realClock.SleepUntil(ctx, start.Add(window))
	e.waitSettled(ctx)
	var endSample serverSample
	if smp != nil {
		endSample = smp.sample(ctx)
	}
	if secs := time.Since(selfStartAt).Seconds(); secs > 0 && selfStart >= 0 {
		res.ClientCPUCores = round3((selfCPU() - selfStart) / secs)
	}
	close(tlStop)
	<-tlDone
	e.resumeSlow()
	e.waitSlow(ctx)
	prog.finish()
	e.shutdown()

	if plan != nil && plan.StallUntilBlocked {
		plan.KernelBytes = e.kernelSeen.Load() // 0 when no write blocked
	}
	res.WindowS = round3(window.Seconds())
	e.fillResult(res, window.Seconds(), plan)
	res.Timeline = tl.points
	res.Events = e.events(start, drain)
	if smp != nil {
		res.Server = serverStats(smp, before, connected, startSample, endSample, tl.peakRSS, e.established.Load(), e.deliveries.Load()+e.slowDeliv.Load(), false)
	}
	if drain != nil {
		drain.Reconnects = e.reconnects.Load()
		drain.ReconnectFailures = e.reconnFail.Load()
		for _, m := range e.members {
			if m.resumeFailed {
				drain.ResumeFailed++
			}
			if m.noReplica {
				drain.NoReplica++
			}
		}
		res.Drain = drain
		if drain.Error != "" {
			return fmt.Errorf("the drain failed: %s", drain.Error)
		}
	}
	return nil
}

// startSenders starts every sender's schedule over [start, end) and
// returns the scheduled window: the whole --duration, or with --messages
// until the last sender's last slot (at most --duration). That is the
// window rates are computed over, however late the senders finish.
func (e *engine) startSenders(ctx context.Context, wg *sync.WaitGroup, start, end time.Time) time.Duration {
	cfg := e.cfg
	interval := IntervalFor(cfg.Rate)
	nSenders := 0
	for _, m := range e.members {
		if m.sender >= 0 {
			nSenders++
		}
	}
	window := cfg.Duration
	if cfg.Messages > 0 && interval > 0 {
		// The last sender starts almost one interval late; each sends
		// --messages, one per interval.
		last := time.Duration(int64(interval) * int64(max(nSenders-1, 0)) / int64(max(nSenders, 1)))
		window = min(window, last+time.Duration(cfg.Messages)*interval)
	}
	for _, m := range e.members {
		if m.sender < 0 || !m.connected || interval == 0 || cfg.Proto == ProtoChatgate && !m.isJoined() {
			continue // a sender out of its room would only collect not_joined errors
		}
		// Senders are spread over one interval so they do not fire together.
		offset := time.Duration(int64(interval) * int64(m.sender) / int64(max(nSenders, 1)))
		sched := Schedule{Start: start.Add(offset), Interval: interval, End: end, Count: cfg.Messages}
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.sendLoop(ctx, sched)
		}()
	}
	return window
}

func (e *engine) fillConnStats(res *Result) {
	e.connMu.Lock()
	defer e.connMu.Unlock()
	res.Connections = ConnStats{
		Attempted:        e.attempted.Load(),
		Established:      e.established.Load(),
		Failed:           e.attempted.Load() - e.established.Load(),
		ConnectLatency:   e.connHist.Summary(),
		FailuresByStatus: e.status.snapshot(),
		FailuresByReason: e.refusals.snapshot(),
	}
	if secs := e.connLast.Sub(e.connFirst).Seconds(); secs > 0 {
		res.Connections.HandshakesPerS = round3(float64(e.established.Load()) / secs)
	}
}

// fillResult turns the engine's state into the result. Every member's
// goroutines are over.
func (e *engine) fillResult(res *Result, window float64, plan *SlowPlan) {
	e.fillConnStats(res)
	res.Messages = MsgStats{
		Sent:           e.sent.Load(),
		Acked:          e.acked.Load(),
		Rejected:       e.rejected.Load(),
		WriteFailed:    e.writeFailed.Load(),
		Deliveries:     e.deliveries.Load(),
		SenderMaxLagUs: e.maxLag.Load() / 1000,
		SendsLate:      e.late.Load(),
		ErrorCodes:     e.errorCodes.snapshot(),
		PresenceFrames: e.presence.Load(),
	}
	if window > 0 {
		res.Messages.DeliveriesPerS = round3(float64(res.Messages.Deliveries) / window)
		res.Messages.SentPerS = round3(float64(res.Messages.Sent) / window)
	}
	total := e.lat.Total()
	res.Latency = total.Summary()
	res.Histogram = total.Buckets()
	if total.Clamped() > 0 {
		res.Warnings = append(res.Warnings, fmt.Sprintf("%d latencies were above 10 minutes and recorded as 10 minutes", total.Clamped()))
	}

	// Everything any member saw exists.
	for _, m := range e.members {
		if m.tr != nil {
			e.ledger.union(streamKey{m.room, -1}, &m.tr.seen)
		}
		for s, tr := range m.rawTr {
			e.ledger.union(streamKey{m.room, s}, &tr.seen)
		}
	}
	c := Correctness{Foreign: e.foreign.Load(), ExcludedBy: map[string]int64{}}
	if e.cfg.Proto == ProtoChatgate {
		c.Unconfirmed = max(0, e.sent.Load()-e.acked.Load()-e.rejected.Load())
	}
	var slow *SlowStats
	if e.cfg.Scenario == ScenarioSlow {
		slow = &SlowStats{CloseCodes: map[string]int64{}, Deliveries: e.slowDeliv.Load(), Plan: plan}
		st := e.slowLat.Total().Summary()
		res.SlowLatency = &st
	}
	for _, m := range e.members {
		c.Rejoins += m.rejoins
		c.RecoveredJoins += m.recovered
		c.UnrecoveredJoins += m.unrecovered
		if m.slow && slow != nil {
			slow.Members++
			switch {
			case !m.connected:
				slow.CloseCodes["never_connected"]++
			case m.lost:
				slow.CloseCodes[strconv.Itoa(m.lastClose)]++
				if m.lastClose == 4008 {
					slow.Evicted++
				}
			default:
				slow.CloseCodes["open"]++
			}
		}
		if why := m.exclusion(); why != "" {
			c.MembersExcluded++
			c.ExcludedBy[why]++
			continue
		}
		c.MembersChecked++
		streams := map[streamKey]*tracker{}
		if e.cfg.Proto == ProtoChatgate {
			streams[streamKey{m.room, -1}] = m.tr
		} else {
			for _, s := range e.senders[m.room] {
				streams[streamKey{m.room, s}] = m.rawTr[s]
			}
		}
		t := tallyMember(e.ledger, streams)
		c.Expected += t.expected
		c.Received += t.received
		c.MissingAtEnd += t.tail
		c.Duplicated += t.dup
		c.OutOfOrder += t.ooo
		c.HealedByReplay += t.healed
	}
	c.Lost = c.Expected - c.Received
	if c.Expected > 0 {
		c.LossRatio = float64(c.Lost) / float64(c.Expected)
	}
	res.Correctness = c
	if c.MissingAtEnd > 0 {
		res.Warnings = append(res.Warnings, fmt.Sprintf("%d expected deliveries had not arrived when --settle (%v) ran out, after the last one each member got: the server or this client fell behind (see sender lag and bench cpu), or the settle time is too short; they count as lost", c.MissingAtEnd, e.cfg.Settle))
	}
	res.Slow = slow
	res.CloseCodes = e.closes.snapshot()
	res.Errors = e.errs.snapshot()
}

// sharedSendCap is what the senders send in all per second and what the
// gateway's shared send budgets (lim per user or address) let them send:
// with a token minted per connection every member is a user of its own;
// otherwise the members share one budget per source address (anonymous)
// or one in all (one token for everybody). who names the sharing.
func sharedSendCap(cfg *Config, lim float64) (total, allowed float64, who string) {
	total = float64(cfg.Senders*cfg.Rooms) * cfg.Rate
	switch {
	case cfg.creds != nil && cfg.creds.secret != nil:
		return total, math.Inf(1), "each user"
	case cfg.creds != nil:
		return total, lim, "the one user of --token/--token-file"
	}
	addrs := max(len(cfg.SourceIPs), 1)
	return total, lim * float64(addrs), fmt.Sprintf("each of the %d source address(es)", addrs)
}
