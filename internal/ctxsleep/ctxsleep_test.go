package ctxsleep

import (
	"context"
	"testing"
	"testing/synctest"
	"time"
)

func TestSleep(t *testing.T) {
	cases := []struct {
		name     string
		d        time.Duration
		cancelAt time.Duration // 0: never
		want     bool
		elapsed  time.Duration
	}{
		{"whole duration", time.Second, 0, true, time.Second},
		{"cut short", time.Second, 300 * time.Millisecond, false, 300 * time.Millisecond},
		{"zero", 0, 0, true, 0},
		{"negative", -time.Second, 0, true, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				if tc.cancelAt > 0 {
					time.AfterFunc(tc.cancelAt, cancel)
				}
				start := time.Now()
				if got := Sleep(ctx, tc.d); got != tc.want {
					t.Fatalf("Sleep = %v; want %v", got, tc.want)
				}
				if e := time.Since(start); e != tc.elapsed {
					t.Fatalf("slept %v; want %v", e, tc.elapsed)
				}
			})
		})
	}
	t.Run("ended context", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if Sleep(ctx, 0) || Sleep(ctx, time.Hour) {
			t.Fatal("Sleep on an ended context reported the whole duration passed")
		}
	})
}
