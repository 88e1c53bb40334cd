package gateway

import (
	"testing"

	"github.com/chatgate/chatgate/gateway/observe"
)

// TestCloseCausesCoverTheVocabulary: every cause has a row, and every
// disconnect reason the metrics pre-initialise is the reason of exactly one
// cause; a cause that sends a close frame names its reason word, and only
// graceful causes and evictions send one besides the heartbeat timeout.
func TestCloseCausesCoverTheVocabulary(t *testing.T) {
	seen := map[observe.DisconnectReason]closeCause{}
	for c := causeNone + 1; c < numCloseCauses; c++ {
		row := closeCauses[c]
		if row.reason == "" {
			t.Fatalf("cause %d has no row", c)
		}
		if prev, dup := seen[row.reason]; dup {
			t.Fatalf("causes %d and %d share the reason %s", prev, c, row.reason)
		}
		seen[row.reason] = c
		if (row.code != 0) != (row.word != "") {
			t.Errorf("cause %d (%s): close code %d with reason word %q", c, row.reason, row.code, row.word)
		}
		if row.flush && row.code == 0 {
			t.Errorf("cause %d (%s) flushes the queue but sends no close frame", c, row.reason)
		}
	}
	for _, r := range observe.DisconnectReasons {
		if _, ok := seen[r]; !ok {
			t.Errorf("no close cause has the reason %s", r)
		}
	}
	if len(seen) != len(observe.DisconnectReasons) {
		t.Errorf("%d causes for %d disconnect reasons", len(seen), len(observe.DisconnectReasons))
	}
}
