package bench

import (
	"context"
	"time"

	"github.com/chatgate/chatgate/internal/ctxsleep"
)

// Clock is the time source of a Schedule; tests substitute a fake one.
type Clock interface {
	Now() time.Time
	// SleepUntil returns when t has come or ctx ends (with ctx's error).
	SleepUntil(ctx context.Context, t time.Time) error
}

// RealClock is the wall clock.
type RealClock struct{}

// Now returns time.Now().
func (RealClock) Now() time.Time { return time.Now() }

// SleepUntil waits for t or ctx.
func (RealClock) SleepUntil(ctx context.Context, t time.Time) error {
	if !ctxsleep.Sleep(ctx, time.Until(t)) {
		return ctx.Err()
	}
	return nil
}

// Schedule is an open-loop, fixed-rate schedule: event k is due at
// Start + k×Interval, whatever happened to the events before it. A sender
// that falls behind (a slow write, a stalled socket, a descheduled
// goroutine) sends the overdue events at once, back to back, and each still
// carries its intended time, so the latency measured from that time
// includes the stall: this is what avoids coordinated omission.
type Schedule struct {
	Start    time.Time
	Interval time.Duration
	// End, if not zero, is exclusive: no event is due at or after it.
	End time.Time
	// Count, if positive, caps the number of events.
	Count int
}

// At is the intended time of event k.
func (s Schedule) At(k int) time.Time {
	return s.Start.Add(time.Duration(k) * s.Interval)
}

// Due reports whether event k belongs to the schedule.
func (s Schedule) Due(k int) bool {
	if s.Count > 0 && k >= s.Count {
		return false
	}
	if !s.End.IsZero() && !s.At(k).Before(s.End) {
		return false
	}
	return true
}

// Stats describes how a schedule ran.
type Stats struct {
	Sent int // events handed to send without error
	// MaxLag is the largest delay between an event's intended time and the
	// moment send was called for it: how far the sender itself fell
	// behind. It is already included in the latencies (which start at the
	// intended time); a large value says the load generator, not only the
	// server, was the bottleneck.
	MaxLag time.Duration
	// Late counts events whose send started more than one interval late.
	Late int
}

// Run calls send for every due event in order, waiting until each one's
// intended time but never skipping one. It stops at the end of the
// schedule, when ctx ends, or at the first error from send (which it
// returns; a nil send error keeps going).
func (s Schedule) Run(ctx context.Context, clk Clock, send func(k int, intended time.Time) error) (Stats, error) {
	var st Stats
	if s.Interval <= 0 {
		return st, nil
	}
	for k := 0; s.Due(k); k++ {
		intended := s.At(k)
		if err := clk.SleepUntil(ctx, intended); err != nil {
			return st, err
		}
		if err := ctx.Err(); err != nil {
			return st, err
		}
		if lag := clk.Now().Sub(intended); lag > st.MaxLag {
			st.MaxLag = lag
		}
		if clk.Now().Sub(intended) > s.Interval {
			st.Late++
		}
		if err := send(k, intended); err != nil {
			return st, err
		}
		st.Sent++
	}
	return st, nil
}

// IntervalFor turns a rate per second into the schedule interval.
func IntervalFor(perSecond float64) time.Duration {
	if perSecond <= 0 {
		return 0
	}
	return time.Duration(float64(time.Second) / perSecond)
}

var realClock Clock = RealClock{}
