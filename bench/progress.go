package bench

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/schollz/progressbar/v3"
)

// progress is the live display: a bar over the window with connections up,
// deliveries per second and the current p99. It is a no-op unless enabled
// (a terminal, or --progress on). The bar stays on screen at 100% when the
// window is over.
type progress struct {
	w   io.Writer
	bar *progressbar.ProgressBar
	max time.Duration
	on  bool
}

func newProgress(opts *Options, cfg *Config, _ string) *progress {
	on := cfg.Progress == "on" || cfg.Progress == "auto" && opts.TTY
	if opts.Stderr == nil {
		on = false
	}
	return &progress{w: opts.Stderr, on: on}
}

// start shows a bar for a window of d.
func (p *progress) start(d time.Duration) {
	if !p.on {
		return
	}
	p.max = d
	p.bar = progressbar.NewOptions64(int64(d/time.Millisecond),
		progressbar.OptionSetWriter(p.w),
		progressbar.OptionSetWidth(24),
		progressbar.OptionThrottle(200*time.Millisecond),
		progressbar.OptionSetPredictTime(false),
		progressbar.OptionSetElapsedTime(true),
		progressbar.OptionSetDescription("starting"),
	)
}

// update moves the bar to elapsed (the window's end at most) and rewrites
// its description.
func (p *progress) update(elapsed time.Duration, desc string) {
	if p.bar == nil {
		return
	}
	p.bar.Describe(desc)
	_ = p.bar.Set64(int64(min(elapsed, p.max) / time.Millisecond))
}

// finish fills the bar, leaves it on screen and ends its line.
func (p *progress) finish() {
	if p.bar == nil {
		return
	}
	_ = p.bar.Finish()
	_ = p.bar.Exit()
	fmt.Fprintln(p.w)
	p.bar = nil
}

func (p *progress) close() { p.finish() }

// timeline samples the engine every --interval into TimelinePoints, feeds
// the progress display and tracks the server's peak RSS.
type timeline struct {
	e       *engine
	smp     *sampler
	start   time.Time
	prog    *progress
	points  []TimelinePoint
	peakRSS int64
}

func newTimeline(e *engine, smp *sampler, start time.Time, prog *progress) *timeline {
	return &timeline{e: e, smp: smp, start: start, prog: prog, points: []TimelinePoint{}}
}

func (t *timeline) run(ctx context.Context, stop <-chan struct{}) {
	tick := time.NewTicker(t.e.cfg.Interval)
	defer tick.Stop()
	prevT := t.start
	var prevDeliv, prevSent, prevSlow int64
	for {
		var now time.Time
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		case now = <-tick.C:
		}
		if now.Before(t.start) {
			continue
		}
		s := t.e.lat.Flush()
		slow := t.e.slowLat.Flush()
		deliv, sent, slowDeliv := t.e.deliveries.Load(), t.e.sent.Load(), t.e.slowDeliv.Load()
		dt := now.Sub(prevT).Seconds()
		pt := TimelinePoint{
			TS:    round3(now.Sub(t.start).Seconds()),
			P50Us: s.P50Us, P99Us: s.P99Us, MaxUs: s.MaxUs,
			Conns: t.e.up.Load(),
		}
		if dt > 0 {
			pt.DeliveriesPerS = round3(float64(deliv-prevDeliv) / dt)
			pt.SentPerS = round3(float64(sent-prevSent) / dt)
			pt.SlowDeliveriesPerS = round3(float64(slowDeliv-prevSlow) / dt)
		}
		if slow.Count > 0 {
			pt.SlowP99Us = slow.P99Us
		}
		prevT, prevDeliv, prevSent, prevSlow = now, deliv, sent, slowDeliv
		t.points = append(t.points, pt)
		if t.smp != nil && t.smp.pid != 0 {
			if _, rss, err := readProc(t.smp.pid); err == nil {
				t.peakRSS = max(t.peakRSS, rss)
			}
		}
		t.prog.update(now.Sub(t.start), fmt.Sprintf("conns %d | %s deliveries/s | p99 %s",
			pt.Conns, humanCount(pt.DeliveriesPerS), pctl(s, pt.P99Us)))
	}
}

// humanCount prints 1234567 as 1.23M.
func humanCount(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case v >= 1e4:
		return fmt.Sprintf("%.1fk", v/1e3)
	}
	return fmt.Sprintf("%.0f", v)
}

// fmtUs prints microseconds with a unit that suits them.
func fmtUs(us int64) string {
	switch {
	case us >= 10_000_000:
		return fmt.Sprintf("%.1fs", float64(us)/1e6)
	case us >= 1_000_000:
		return fmt.Sprintf("%.2fs", float64(us)/1e6)
	case us >= 10_000:
		return fmt.Sprintf("%.1fms", float64(us)/1e3)
	case us >= 1000:
		return fmt.Sprintf("%.2fms", float64(us)/1e3)
	}
	return fmt.Sprintf("%dµs", us)
}
