package compare

import (
	"math"
	"slices"
)

// Spread is one figure over the runs that count (quiet, completed): its
// median and its range.
type Spread struct {
	N      int     `json:"n"`
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
}

// summarize returns the spread of vals; false when there are none. The
// median of an even count is the mean of the two middle values.
func summarize(vals []float64) (Spread, bool) {
	var v []float64
	for _, x := range vals {
		if !math.IsNaN(x) && !math.IsInf(x, 0) {
			v = append(v, x)
		}
	}
	if len(v) == 0 {
		return Spread{}, false
	}
	slices.Sort(v)
	n := len(v)
	med := v[n/2]
	if n%2 == 0 {
		med = (v[n/2-1] + v[n/2]) / 2
	}
	return Spread{N: n, Median: med, Min: v[0], Max: v[n-1]}, true
}

// ratio is chatgate's median over gorilla's; false when either is missing
// or gorilla's is zero (no ratio says anything then).
func ratio(chatgate, gorilla *Spread) (float64, bool) {
	if chatgate == nil || gorilla == nil || gorilla.Median == 0 {
		return 0, false
	}
	return chatgate.Median / gorilla.Median, true
}
