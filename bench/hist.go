package bench

import (
	"math"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Histogram bounds. Latencies are kept in microseconds with three
// significant digits: values up to 2 ms are exact to the microsecond and
// larger ones are within 0.1%.
const (
	histMaxUs   = int64(10 * time.Minute / time.Microsecond)
	histSigFigs = 3
)

// Histogram is an HDR histogram of durations in microseconds. It is not
// safe for concurrent use; Recorder shards it for that.
type Histogram struct {
	h *hdrhistogram.Histogram
	// clamped counts values above the 10-minute ceiling, recorded as the
	// ceiling.
	clamped int64
}

// NewHistogram returns an empty histogram covering 0 to 10 minutes.
func NewHistogram() *Histogram {
	return &Histogram{h: hdrhistogram.New(1, histMaxUs, histSigFigs)}
}

func toUs(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64(d / time.Microsecond)
}

// Record adds one duration. Negative durations count as zero (the sender's
// and receiver's clocks are the same clock, so this only absorbs rounding);
// durations above the ceiling are recorded as the ceiling and counted in
// Clamped.
func (h *Histogram) Record(d time.Duration) { h.RecordN(d, 1) }

// RecordN adds n occurrences of d.
func (h *Histogram) RecordN(d time.Duration, n int64) {
	us := toUs(d)
	if us > histMaxUs {
		us = histMaxUs
		h.clamped += n
	}
	_ = h.h.RecordValues(us, n) // cannot fail: us is within range
}

// Merge adds every value of o to h.
func (h *Histogram) Merge(o *Histogram) {
	h.h.Merge(o.h)
	h.clamped += o.clamped
}

// Reset empties h.
func (h *Histogram) Reset() {
	h.h.Reset()
	h.clamped = 0
}

// Count is the number of recorded values.
func (h *Histogram) Count() int64 { return h.h.TotalCount() }

// Clamped is the number of values recorded above the ceiling.
func (h *Histogram) Clamped() int64 { return h.clamped }

// Quantile returns the value at quantile q (0..1) as a duration.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.Count() == 0 {
		return 0
	}
	return time.Duration(h.h.ValueAtQuantile(q*100)) * time.Microsecond
}

// LatencySummary is the JSON form of a latency distribution. Every value is
// in microseconds, as HDR reports it (the highest value equivalent to the
// recorded one at three significant digits).
type LatencySummary struct {
	Count  int64   `json:"count"`
	P50Us  int64   `json:"p50_us"`
	P90Us  int64   `json:"p90_us"`
	P99Us  int64   `json:"p99_us"`
	P999Us int64   `json:"p999_us"`
	MaxUs  int64   `json:"max_us"`
	MeanUs float64 `json:"mean_us"`
}

// Summary computes the standard percentiles.
func (h *Histogram) Summary() LatencySummary {
	if h.Count() == 0 {
		return LatencySummary{}
	}
	mean := h.h.Mean()
	if math.IsNaN(mean) {
		mean = 0
	}
	return LatencySummary{
		Count:  h.Count(),
		P50Us:  h.h.ValueAtQuantile(50),
		P90Us:  h.h.ValueAtQuantile(90),
		P99Us:  h.h.ValueAtQuantile(99),
		P999Us: h.h.ValueAtQuantile(99.9),
		MaxUs:  h.h.Max(),
		MeanUs: math.Round(mean*10) / 10,
	}
}

// Bucket is one bar of a coarse latency histogram: Count values were at
// most LeUs microseconds and above the previous bucket's bound.
type Bucket struct {
	LeUs  int64 `json:"le_us"`
	Count int64 `json:"count"`
}

// Buckets folds the histogram into power-of-two microsecond buckets (1, 2,
// 4, ... µs), trimmed to the range that holds values.
func (h *Histogram) Buckets() []Bucket {
	if h.Count() == 0 {
		return nil
	}
	var out []Bucket
	for le := int64(1); ; le *= 2 {
		out = append(out, Bucket{LeUs: le})
		if le >= h.h.Max() || le >= histMaxUs {
			break
		}
	}
	for _, b := range h.h.Distribution() {
		if b.Count == 0 {
			continue
		}
		// A bar holds the values up to its bound; Distribution reports
		// ranges [From, To] of equivalent values, placed by their top.
		i := 0
		for i < len(out)-1 && out[i].LeUs < b.To {
			i++
		}
		out[i].Count += b.Count
	}
	first := 0
	for first < len(out) && out[first].Count == 0 {
		first++
	}
	return out[first:]
}

// Recorder collects latencies from many goroutines into sharded histograms
// and turns them into per-interval summaries and one total. Recording takes
// one shard lock per batch, so readers batch the values of one frame.
type Recorder struct {
	shards []recShard

	mu       sync.Mutex // guards total and interval
	total    *Histogram
	interval *Histogram
}

type recShard struct {
	mu sync.Mutex
	h  *Histogram
	_  [40]byte // keep neighbouring shards' locks off one cache line
}

// NewRecorder returns a Recorder with n shards (at least 1).
func NewRecorder(n int) *Recorder {
	n = max(n, 1)
	r := &Recorder{shards: make([]recShard, n), total: NewHistogram(), interval: NewHistogram()}
	for i := range r.shards {
		r.shards[i].h = NewHistogram()
	}
	return r
}

// RecordBatch records ds into the shard picked by key (any stable number,
// such as a connection index).
func (r *Recorder) RecordBatch(key int, ds []time.Duration) {
	if len(ds) == 0 {
		return
	}
	s := &r.shards[uint(key)%uint(len(r.shards))]
	s.mu.Lock()
	for _, d := range ds {
		s.h.Record(d)
	}
	s.mu.Unlock()
}

// Flush moves everything recorded since the previous Flush into the total
// and returns the summary of just that interval.
func (r *Recorder) Flush() LatencySummary {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.interval.Reset()
	for i := range r.shards {
		s := &r.shards[i]
		s.mu.Lock()
		r.interval.Merge(s.h)
		s.h.Reset()
		s.mu.Unlock()
	}
	r.total.Merge(r.interval)
	return r.interval.Summary()
}

// Total flushes and returns a copy of everything recorded so far.
func (r *Recorder) Total() *Histogram {
	r.Flush()
	r.mu.Lock()
	defer r.mu.Unlock()
	out := NewHistogram()
	out.Merge(r.total)
	return out
}
