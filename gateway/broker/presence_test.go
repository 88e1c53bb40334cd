package broker

import (
	"slices"
	"testing"

	"github.com/chatgate/chatgate/gateway/protocol"
)

// TestPresenceChangesTake: what a presence frame lists after a sequence of
// changes within one interval, nobody having joined meanwhile.
func TestPresenceChangesTake(t *testing.T) {
	alice := protocol.User{ID: "u_a", Name: "alice"}
	alicia := protocol.User{ID: "u_a", Name: "alicia"}
	type change struct {
		u       protocol.User
		present bool // after the change
	}
	cases := []struct {
		name         string
		wasPresent   bool
		changes      []change
		joined, left []protocol.User
		changed      bool
	}{
		{"joined", false, []change{{alice, true}}, []protocol.User{alice}, nil, true},
		{"left", true, []change{{alice, false}}, nil, []protocol.User{alice}, true},
		{"came and went", false, []change{{alice, true}, {alice, false}}, nil, nil, false},
		{"went and came back", true, []change{{alice, false}, {alice, true}}, nil, nil, false},
		{"went and came back renamed", true, []change{{alice, false}, {alicia, true}}, []protocol.User{alicia}, nil, true},
		{"came and went renamed", false, []change{{alice, true}, {alicia, false}}, nil, nil, false},
		{"went, came back renamed, went", true, []change{{alice, false}, {alicia, true}, {alicia, false}}, nil, []protocol.User{alicia}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var p PresenceChanges
			present := tc.wasPresent
			was := tc.wasPresent
			for _, c := range tc.changes {
				p.Touch(c.u, was)
				was, present = c.present, c.present
			}
			joined, left, changed := p.Take(func(string) bool { return present }, true)
			if changed != tc.changed || !slices.Equal(joined, tc.joined) || !slices.Equal(left, tc.left) {
				t.Fatalf("Take = %v, %v, %v; want %v, %v, %v", joined, left, changed, tc.joined, tc.left, tc.changed)
			}
		})
	}
}
