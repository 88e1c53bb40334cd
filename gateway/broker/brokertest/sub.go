package brokertest

import (
	"encoding/json"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/chatgate/chatgate/gateway/broker"
	"github.com/chatgate/chatgate/gateway/protocol"
)

// env is one decoded server → client envelope as a subscriber got it.
type env struct {
	Type      string          `json:"type"`
	Room      string          `json:"room"`
	Seq       uint64          `json:"seq"`
	Online    int             `json:"online"`
	Members   []protocol.User `json:"members"`
	Recovered *bool           `json:"recovered"`
	From      protocol.User   `json:"from"`
	Text      string          `json:"text"`
	Ref       string          `json:"ref"`
	Joined    []protocol.User `json:"joined"`
	Left      []protocol.User `json:"left"`
	System    bool            `json:"system"`
	Reason    string          `json:"reason"`
	Code      string          `json:"code"`

	keys   map[string]json.RawMessage
	raw    []byte // the frame as queued
	replay bool   // the Frame was marked Replay
}

func (e env) has(key string) bool { _, ok := e.keys[key]; return ok }

// sub is a Subscriber that records every frame queued to it, decoded, and
// lets a test wait on what it has.
type sub struct {
	t    testing.TB
	user protocol.User
	wait time.Duration

	mu      sync.Mutex
	envs    []env
	changed chan struct{} // closed and replaced on every frame
}

func newSub(t testing.TB, o *Options, id string) *sub {
	return &sub{t: t, user: protocol.User{ID: id, Name: "name-" + id}, wait: o.Wait, changed: make(chan struct{})}
}

func (s *sub) User() protocol.User { return s.user }

// Enqueue records f. It must not block: brokers call it with locks held.
func (s *sub) Enqueue(f *broker.Frame) {
	var e env
	if err := json.Unmarshal(f.Data, &e); err != nil {
		s.t.Errorf("frame %q is not JSON: %v", f.Data, err)
		return
	}
	_ = json.Unmarshal(f.Data, &e.keys)
	e.replay = f.Replay
	e.raw = f.Data
	s.mu.Lock()
	s.envs = append(s.envs, e)
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
}

func (s *sub) snapshot() []env {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.envs)
}

// waitFor blocks until cond holds over everything s has, or fails the test
// after the suite's wait.
func (s *sub) waitFor(t testing.TB, what string, cond func([]env) bool) []env {
	t.Helper()
	deadline := time.NewTimer(s.wait)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		envs, ch := s.envs, s.changed
		ok := cond(envs)
		s.mu.Unlock()
		if ok {
			return slices.Clone(envs)
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("%s: timed out waiting for %s; has %d frames", s.user.ID, what, len(envs))
		}
	}
}

// messages returns the message envelopes of room in envs.
func messages(envs []env, room string) []env {
	var out []env
	for _, e := range envs {
		if e.Type == "message" && e.Room == room {
			out = append(out, e)
		}
	}
	return out
}

func seqs(envs []env) []uint64 {
	out := make([]uint64, 0, len(envs))
	for _, e := range envs {
		out = append(out, e.Seq)
	}
	return out
}

// view applies the joined and presence frames of room the way a client
// does (idempotent set operations keyed by user id) and returns the ids it
// believes are online and the latest online count.
func view(envs []env, room string) (ids []string, online int) {
	set := map[string]bool{}
	for _, e := range envs {
		if e.Room != room {
			continue
		}
		switch e.Type {
		case "joined":
			clear(set)
			for _, u := range e.Members {
				set[u.ID] = true
			}
			online = e.Online
		case "presence":
			for _, u := range e.Joined {
				set[u.ID] = true
			}
			for _, u := range e.Left {
				delete(set, u.ID)
			}
			online = e.Online
		}
	}
	return slices.Sorted(maps.Keys(set)), online
}

// sortedByID reports whether users are in id order, the order of every
// member list.
func sortedByID(us []protocol.User) bool {
	return slices.IsSortedFunc(us, func(a, b protocol.User) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
}
