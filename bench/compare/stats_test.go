package compare

import (
	"math"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestSummarize(t *testing.T) {
	cases := []struct {
		name string
		in   []float64
		want Spread
		ok   bool
	}{
		{"none", nil, Spread{}, false},
		{"only NaN", []float64{math.NaN()}, Spread{}, false},
		{"one", []float64{7}, Spread{N: 1, Median: 7, Min: 7, Max: 7}, true},
		{"odd, unsorted", []float64{9, 1, 4}, Spread{N: 3, Median: 4, Min: 1, Max: 9}, true},
		{"even: mean of the middle two", []float64{10, 2, 4, 8}, Spread{N: 4, Median: 6, Min: 2, Max: 10}, true},
		{"NaN and Inf left out", []float64{3, math.Inf(1), 5, math.NaN(), 4}, Spread{N: 3, Median: 4, Min: 3, Max: 5}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := summarize(tc.in)
			if ok != tc.ok || got != tc.want {
				t.Fatalf("summarize(%v) = %+v, %v; want %+v, %v", tc.in, got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestRatio(t *testing.T) {
	cg, gor, zero := &Spread{N: 3, Median: 3}, &Spread{N: 3, Median: 12}, &Spread{N: 3}
	cases := []struct {
		name              string
		chatgate, gorilla *Spread
		want              float64
		ok                bool
	}{
		{"both", cg, gor, 0.25, true},
		{"no gorilla figure", cg, nil, 0, false},
		{"no chatgate figure", nil, gor, 0, false},
		{"gorilla zero", cg, zero, 0, false},
		{"chatgate zero", zero, gor, 0, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := ratio(tc.chatgate, tc.gorilla)
			if ok != tc.ok || got != tc.want {
				t.Fatalf("ratio = %v, %v; want %v, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestTargetJudge(t *testing.T) {
	s := func(med, lo, hi float64) *Spread { return &Spread{N: 3, Median: med, Min: lo, Max: hi} }
	cases := []struct {
		name              string
		target            Target
		chatgate, gorilla *Spread
		met, ok           bool
	}{
		{"at most, met", Target{Kind: AtMost, Value: 4}, s(4, 3, 5), nil, true, true},
		{"at most, missed", Target{Kind: AtMost, Value: 4}, s(4.1, 3, 5), nil, false, true},
		{"at least, met", Target{Kind: AtLeast, Value: 4950}, s(4990, 4900, 5000), nil, true, true},
		{"at least, missed", Target{Kind: AtLeast, Value: 4950}, s(4000, 3900, 5000), nil, false, true},
		{"ratio, met", Target{Kind: RatioAtMost, Value: 0.5}, s(5, 1, 9), s(10, 9, 11), true, true},
		{"ratio, missed", Target{Kind: RatioAtMost, Value: 0.5}, s(6, 1, 9), s(10, 9, 11), false, true},
		{"ratio without gorilla cannot tell", Target{Kind: RatioAtMost, Value: 0.5}, s(6, 1, 9), nil, false, false},
		{"zero, met", Target{Kind: Zero}, s(0, 0, 0), nil, true, true},
		{"zero, one run lost something", Target{Kind: Zero}, s(0, 0, 2), nil, false, true},
		{"no chatgate figure cannot tell", Target{Kind: AtMost, Value: 4}, nil, nil, false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			met, ok := tc.target.judge(tc.chatgate, tc.gorilla)
			if met != tc.met || ok != tc.ok {
				t.Fatalf("judge = %v, %v; want %v, %v", met, ok, tc.met, tc.ok)
			}
		})
	}
}
