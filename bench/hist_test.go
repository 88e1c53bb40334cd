package bench

import (
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestHistogramPercentiles(t *testing.T) {
	h := NewHistogram()
	// 1..1000 µs, once each: the quantiles are exact below 2048 µs.
	for i := 1; i <= 1000; i++ {
		h.Record(time.Duration(i) * time.Microsecond)
	}
	s := h.Summary()
	want := LatencySummary{Count: 1000, P50Us: 500, P90Us: 900, P99Us: 990, P999Us: 999, MaxUs: 1000, MeanUs: 500.5}
	if s != want {
		t.Fatalf("summary = %+v\nwant      %+v", s, want)
	}
	if got := h.Quantile(0.99); got != 990*time.Microsecond {
		t.Fatalf("Quantile(0.99) = %v", got)
	}
}

func TestHistogramEdges(t *testing.T) {
	cases := []struct {
		name        string
		record      []time.Duration
		wantMaxUs   int64
		wantCount   int64
		wantClamped int64
	}{
		{"empty", nil, 0, 0, 0},
		{"negative counts as zero", []time.Duration{-5 * time.Millisecond}, 0, 1, 0},
		{"sub-microsecond rounds down", []time.Duration{999 * time.Nanosecond}, 0, 1, 0},
		{"above the ceiling is clamped", []time.Duration{time.Hour, time.Second}, 600309759, 2, 1}, // the ceiling's HDR bucket top
		// Three significant digits: 123456 µs is held as a value within
		// 0.1% (HDR reports the top of its bucket).
		{"large values keep three digits", []time.Duration{123456 * time.Microsecond}, 123519, 1, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := NewHistogram()
			for _, d := range tc.record {
				h.Record(d)
			}
			s := h.Summary()
			if s.Count != tc.wantCount || s.MaxUs != tc.wantMaxUs || h.Clamped() != tc.wantClamped {
				t.Fatalf("count %d max %d clamped %d; want %d %d %d", s.Count, s.MaxUs, h.Clamped(), tc.wantCount, tc.wantMaxUs, tc.wantClamped)
			}
			if tc.wantMaxUs > 1000 {
				exact := int64(tc.record[0] / time.Microsecond)
				if tc.wantClamped == 0 && (s.MaxUs < exact || float64(s.MaxUs-exact) > 0.001*float64(exact)) {
					t.Fatalf("max %d not within 0.1%% of %d", s.MaxUs, exact)
				}
			}
		})
	}
}

func TestHistogramMergeAndBuckets(t *testing.T) {
	a, b := NewHistogram(), NewHistogram()
	for i := 0; i < 10; i++ {
		a.Record(3 * time.Microsecond)
		b.Record(100 * time.Microsecond)
	}
	b.Record(time.Hour)
	a.Merge(b)
	if a.Count() != 21 || a.Clamped() != 1 {
		t.Fatalf("merged count %d clamped %d", a.Count(), a.Clamped())
	}
	var sum int64
	prev := int64(0)
	for _, bk := range a.Buckets() {
		if bk.LeUs <= prev {
			t.Fatalf("buckets not rising: %v", a.Buckets())
		}
		prev = bk.LeUs
		sum += bk.Count
	}
	if sum != 21 {
		t.Fatalf("buckets hold %d values, want 21: %v", sum, a.Buckets())
	}
	bs := a.Buckets()
	if bs[0].LeUs != 4 || bs[0].Count != 10 {
		t.Fatalf("first bucket %+v, want ≤4µs ×10", bs[0])
	}
	a.Reset()
	if a.Count() != 0 || a.Clamped() != 0 || a.Buckets() != nil {
		t.Fatal("Reset left values")
	}
}

// TestRecorderConcurrent records from many goroutines (run with -race) and
// checks intervals partition the total.
func TestRecorderConcurrent(t *testing.T) {
	r := NewRecorder(4)
	const workers, batches, per = 8, 50, 20
	var wg sync.WaitGroup
	var intervals int64
	stop := make(chan struct{})
	flushed := make(chan struct{})
	go func() {
		defer close(flushed)
		for {
			select {
			case <-stop:
				return
			default:
				intervals += r.Flush().Count
			}
		}
	}()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			batch := make([]time.Duration, per)
			for i := range batch {
				batch[i] = time.Duration(w+1) * time.Millisecond
			}
			for b := 0; b < batches; b++ {
				r.RecordBatch(w, batch)
			}
		}()
	}
	wg.Wait()
	close(stop)
	<-flushed
	intervals += r.Flush().Count
	total := r.Total()
	if total.Count() != workers*batches*per || intervals != total.Count() {
		t.Fatalf("total %d, intervals %d; want %d", total.Count(), intervals, workers*batches*per)
	}
	if got := total.Summary().MaxUs; got < 8000 || got > 8008 {
		t.Fatalf("max %d µs, want 8000 within 0.1%%", got)
	}
}
