package bench

import (
	"context"
	"errors"
	"testing"
	"time"
)

// fakeClock only moves when someone sleeps on it or a send takes time.
type fakeClock struct {
	now    time.Time
	sleeps int
}

func (c *fakeClock) Now() time.Time { return c.now }

func (c *fakeClock) SleepUntil(ctx context.Context, t time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if t.After(c.now) {
		c.sleeps++
		c.now = t
	}
	return nil
}

type sendRecord struct {
	k        int
	intended time.Time
	at       time.Time // when send was called
	done     time.Time // when the message "arrived"
}

// TestScheduleOpenLoop checks that intended times follow the schedule
// whatever the sends cost, that a stalled send delays the ones behind it
// without moving their intended times, and that latency measured from the
// intended time therefore includes the stall (no coordinated omission).
func TestScheduleOpenLoop(t *testing.T) {
	t0 := time.Unix(1_764_100_000, 0)
	const interval = 10 * time.Millisecond
	cases := []struct {
		name string
		// cost of each send by k; a send "arrives" when it returns
		cost        map[int]time.Duration
		count       int
		end         time.Duration // from t0; 0 none
		wantSent    int
		wantLate    int
		wantMaxLag  time.Duration
		wantLatency map[int]time.Duration // arrival − intended, by k
	}{
		{
			name: "on time", count: 5, wantSent: 5,
			wantLatency: map[int]time.Duration{0: 0, 4: 0},
		},
		{
			// k=2 stalls 35ms: k=3..5 are due during the stall, so they go
			// out back to back as soon as it ends, each still stamped with
			// its own slot. A closed-loop tool would have sent k=3 at
			// t0+55ms and reported 0 latency for it.
			name: "stall", count: 8, wantSent: 8,
			cost:       map[int]time.Duration{2: 35 * time.Millisecond},
			wantLate:   2, // k=3 (25ms late) and k=4 (15ms late); k=5 is 5ms late
			wantMaxLag: 25 * time.Millisecond,
			wantLatency: map[int]time.Duration{
				2: 35 * time.Millisecond,
				3: 25 * time.Millisecond,
				4: 15 * time.Millisecond,
				5: 5 * time.Millisecond,
				6: 0,
			},
		},
		{name: "end bounds the count", end: 45 * time.Millisecond, wantSent: 5},
		{name: "count bounds", count: 3, end: time.Second, wantSent: 3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clk := &fakeClock{now: t0}
			s := Schedule{Start: t0, Interval: interval, Count: tc.count}
			if tc.end > 0 {
				s.End = t0.Add(tc.end)
			}
			var got []sendRecord
			st, err := s.Run(context.Background(), clk, func(k int, intended time.Time) error {
				r := sendRecord{k: k, intended: intended, at: clk.now}
				clk.now = clk.now.Add(tc.cost[k])
				r.done = clk.now
				got = append(got, r)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if st.Sent != tc.wantSent || len(got) != tc.wantSent {
				t.Fatalf("sent %d (%d calls), want %d", st.Sent, len(got), tc.wantSent)
			}
			for i, r := range got {
				if r.k != i || !r.intended.Equal(t0.Add(time.Duration(i)*interval)) {
					t.Fatalf("send %d: k=%d intended %v; want k=%d at t0+%v", i, r.k, r.intended.Sub(t0), i, time.Duration(i)*interval)
				}
				if r.at.Before(r.intended) {
					t.Fatalf("send %d went early", i)
				}
			}
			for k, want := range tc.wantLatency {
				if lat := got[k].done.Sub(got[k].intended); lat != want {
					t.Fatalf("latency of k=%d = %v, want %v", k, lat, want)
				}
			}
			if st.Late != tc.wantLate || st.MaxLag != tc.wantMaxLag {
				t.Fatalf("late %d maxLag %v; want %d %v", st.Late, st.MaxLag, tc.wantLate, tc.wantMaxLag)
			}
		})
	}
}

func TestScheduleStops(t *testing.T) {
	t0 := time.Unix(1_764_100_000, 0)
	t.Run("send error", func(t *testing.T) {
		boom := errors.New("boom")
		st, err := Schedule{Start: t0, Interval: time.Millisecond, Count: 10}.Run(context.Background(), &fakeClock{now: t0}, func(k int, _ time.Time) error {
			if k == 3 {
				return boom
			}
			return nil
		})
		if !errors.Is(err, boom) || st.Sent != 3 {
			t.Fatalf("err %v sent %d", err, st.Sent)
		}
	})
	t.Run("context", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		st, err := Schedule{Start: t0, Interval: time.Millisecond}.Run(ctx, &fakeClock{now: t0}, func(k int, _ time.Time) error {
			if k == 4 {
				cancel()
			}
			return nil
		})
		if !errors.Is(err, context.Canceled) || st.Sent != 5 {
			t.Fatalf("err %v sent %d", err, st.Sent)
		}
	})
	t.Run("zero interval sends nothing", func(t *testing.T) {
		st, err := Schedule{Start: t0, Count: 5}.Run(context.Background(), &fakeClock{now: t0}, func(int, time.Time) error {
			t.Fatal("send called")
			return nil
		})
		if err != nil || st.Sent != 0 {
			t.Fatal(err)
		}
	})
	t.Run("real clock waits", func(t *testing.T) {
		start := time.Now()
		st, err := Schedule{Start: start, Interval: 5 * time.Millisecond, Count: 4}.Run(context.Background(), realClock, func(_ int, intended time.Time) error {
			if time.Now().Before(intended) {
				t.Errorf("sent before %v", intended)
			}
			return nil
		})
		if err != nil || st.Sent != 4 || time.Since(start) < 15*time.Millisecond {
			t.Fatalf("err %v sent %d after %v", err, st.Sent, time.Since(start))
		}
	})
}

func TestIntervalFor(t *testing.T) {
	if IntervalFor(0) != 0 || IntervalFor(4) != 250*time.Millisecond || IntervalFor(3) != 333333333 {
		t.Fatal("IntervalFor")
	}
}
