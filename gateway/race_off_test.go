//go:build !race

package gateway

// raceEnabled reports whether the race detector is on: its runtime makes
// allocation counts jitter and inflates live heap about threefold.
const raceEnabled = false
