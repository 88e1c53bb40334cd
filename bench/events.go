package bench

import (
	"math"
	"sort"
	"time"
)

// closeAt is an eviction or a shed a member saw.
type closeAt struct {
	at   time.Time
	code int
}

// noteClose records a close that is an event: 4008 (evicted) or 1013
// (shed).
func (e *engine) noteClose(code int) {
	if code != 4008 && code != 1013 {
		return
	}
	e.closeMu.Lock()
	e.closeTimes = append(e.closeTimes, closeAt{time.Now(), code})
	e.closeMu.Unlock()
}

// events lists the drain and the evictions and sheds, the closes gathered
// per --interval, in time order.
func (e *engine) events(start time.Time, drain *DrainStats) []Event {
	out := []Event{}
	if drain != nil && drain.RanAtS > 0 {
		out = append(out, Event{TS: drain.RanAtS, Kind: EventDrain, Count: 1})
	}
	e.closeMu.Lock()
	closes := append([]closeAt(nil), e.closeTimes...)
	e.closeMu.Unlock()
	sort.Slice(closes, func(i, j int) bool { return closes[i].at.Before(closes[j].at) })
	step := e.cfg.Interval.Seconds()
	type key struct {
		kind   string
		bucket float64
	}
	at := map[key]int{} // index in out
	for _, c := range closes {
		kind := EventEvicted
		if c.code == 1013 {
			kind = EventShed
		}
		ts := c.at.Sub(start).Seconds()
		k := key{kind, math.Floor(ts / step)}
		if i, ok := at[k]; ok {
			out[i].Count++
			continue
		}
		at[k] = len(out)
		out = append(out, Event{TS: round3(ts), Kind: kind, Count: 1})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].TS < out[j].TS })
	return out
}
