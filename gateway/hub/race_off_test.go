//go:build !race

package hub

// raceEnabled reports whether the race detector is on; its runtime makes
// allocation counts jitter by one or two.
const raceEnabled = false
