package hub

import (
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"

	"github.com/chatgate/chatgate/gateway/broker"
	"github.com/chatgate/chatgate/gateway/observe"
	"github.com/chatgate/chatgate/gateway/protocol"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeSub is a test double for a connection: it records every frame the hub
// queues to it, with the (possibly synthetic) time it was queued.
type fakeSub struct {
	user protocol.User

	mu     sync.Mutex
	frames []*broker.Frame
	at     []time.Time
}

func newSub(id string) *fakeSub {
	return &fakeSub{user: protocol.User{ID: id, Name: "name-" + id}}
}

func (s *fakeSub) User() protocol.User { return s.user }

func (s *fakeSub) Enqueue(f *broker.Frame) {
	s.mu.Lock()
	s.frames = append(s.frames, f)
	s.at = append(s.at, time.Now())
	s.mu.Unlock()
}

// take returns the frames queued since the last take, decoded.
func (s *fakeSub) take(t testing.TB) []env {
	t.Helper()
	s.mu.Lock()
	frames := s.frames
	s.frames, s.at = nil, nil
	s.mu.Unlock()
	return decodeAll(t, frames)
}

// takeTimed is take plus the time each frame was queued.
func (s *fakeSub) takeTimed(t testing.TB) ([]env, []time.Time) {
	t.Helper()
	s.mu.Lock()
	frames, at := s.frames, s.at
	s.frames, s.at = nil, nil
	s.mu.Unlock()
	return decodeAll(t, frames), at
}

// env is a decoded server → client envelope.
type env struct {
	Type      string          `json:"type"`
	Room      string          `json:"room"`
	Seq       uint64          `json:"seq"`
	Online    int             `json:"online"`
	Members   []protocol.User `json:"members"`
	Recovered *bool           `json:"recovered"`
	From      protocol.User   `json:"from"`
	Text      string          `json:"text"`
	TS        int64           `json:"ts"`
	Ref       string          `json:"ref"`
	Joined    []protocol.User `json:"joined"`
	Left      []protocol.User `json:"left"`

	keys  map[string]json.RawMessage
	frame *broker.Frame
}

func (e env) has(key string) bool { _, ok := e.keys[key]; return ok }

func decodeAll(t testing.TB, frames []*broker.Frame) []env {
	t.Helper()
	out := make([]env, 0, len(frames))
	for _, f := range frames {
		var e env
		if err := json.Unmarshal(f.Data, &e); err != nil {
			t.Fatalf("frame %q is not JSON: %v", f.Data, err)
		}
		if err := json.Unmarshal(f.Data, &e.keys); err != nil {
			t.Fatalf("frame %q is not a JSON object: %v", f.Data, err)
		}
		e.frame = f
		out = append(out, e)
	}
	return out
}

func ofType(envs []env, typ string) []env {
	var out []env
	for _, e := range envs {
		if e.Type == typ {
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

// seqRange returns [from, to].
func seqRange(from, to uint64) []uint64 {
	var out []uint64
	for s := from; s <= to; s++ {
		out = append(out, s)
	}
	return out
}

func ids(users []protocol.User) []string {
	out := make([]string, 0, len(users))
	for _, u := range users {
		out = append(out, u.ID)
	}
	return out
}

func ptr[T any](v T) *T { return &v }

// mustJoin joins sub to room and fails the test on error.
func mustJoin(t testing.TB, h *Hub, sub broker.Subscriber, room string, since *uint64) broker.Membership {
	t.Helper()
	m, err := h.Join(sub, room, since)
	if err != nil {
		t.Fatalf("Join(%s, %q): %v", sub.User().ID, room, err)
	}
	return m
}

func mustPublish(t testing.TB, m broker.Membership, text, ref string) {
	t.Helper()
	if err := publish(m, text, ref); err != nil {
		t.Fatalf("Publish(%q, %q): %v", text, ref, err)
	}
}

// expectJoined checks that envs starts with a joined frame for room and
// returns it along with the rest.
func expectJoined(t testing.TB, envs []env, room string) (env, []env) {
	t.Helper()
	if len(envs) == 0 || envs[0].Type != "joined" {
		t.Fatalf("first frame is not joined: %+v", envs)
	}
	if envs[0].Room != room {
		t.Fatalf("joined room %q, want %q", envs[0].Room, room)
	}
	return envs[0], envs[1:]
}

// inBubble runs fn in a synctest bubble with a hub created inside it, so the
// hub's timers run on the bubble's fake clock, and closes the hub at the end.
func inBubble(t *testing.T, cfg Config, fn func(t *testing.T, h *Hub)) {
	t.Helper()
	synctest.Test(t, func(t *testing.T) {
		if cfg.SeqBase == nil {
			cfg.SeqBase = zeroSeqBase
		}
		h := New(cfg)
		defer h.Close()
		fn(t, h)
	})
}

// nameInShard returns a valid room name, other than avoid, that lands in the
// same shard as ref (same == true) or in a different one.
func nameInShard(t testing.TB, h *Hub, ref string, same bool, avoid ...string) string {
	t.Helper()
	for i := range 100000 {
		name := "room-" + strconv.Itoa(i)
		if name == ref || slices.Contains(avoid, name) {
			continue
		}
		if (h.shardFor(name) == h.shardFor(ref)) == same {
			return name
		}
	}
	t.Fatalf("no room name found (same shard %v as %q)", same, ref)
	return ""
}

// countObserver counts room lifecycle and presence events.
type countObserver struct {
	observe.Nop
	opened, closed, presence, replayed atomic.Int64
}

func (o *countObserver) RoomOpened()           { o.opened.Add(1) }
func (o *countObserver) RoomClosed()           { o.closed.Add(1) }
func (o *countObserver) PresenceSent(n int)    { o.presence.Add(int64(n)) }
func (o *countObserver) HistoryReplayed(n int) { o.replayed.Add(int64(n)) }

// zeroSeqBase starts every room at seq 0, so expectations read 1, 2, 3;
// TestSeqBase covers the real default.
func zeroSeqBase(time.Time) uint64 { return 0 }

// publish is Publish without a trace context, reporting only the error.
func publish(m broker.Membership, text, ref string) *protocol.Error {
	_, err := m.Publish(context.Background(), text, ref)
	return err
}
