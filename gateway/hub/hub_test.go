package hub

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/chatgate/chatgate/gateway/broker"
	"github.com/chatgate/chatgate/gateway/protocol"
)

func TestPublishOrderSeqAndAck(t *testing.T) {
	inBubble(t, Config{}, func(t *testing.T, h *Hub) {
		subs := []*fakeSub{newSub("a"), newSub("b"), newSub("c")}
		ms := make([]broker.Membership, len(subs))
		for i, s := range subs {
			ms[i] = mustJoin(t, h, s, "lobby", nil)
			s.take(t)
		}
		// Interleave senders; every member must see the same contiguous
		// sequence, the sender included.
		const rounds = 5
		var want []string
		for r := range rounds {
			for i, m := range ms {
				text := fmt.Sprintf("m%d-%d", r, i)
				mustPublish(t, m, text, "ref-"+text)
				want = append(want, text)
			}
		}
		var first []env
		for i, s := range subs {
			envs := s.take(t)
			msgs := ofType(envs, "message")
			if got := seqs(msgs); !slices.Equal(got, seqRange(1, uint64(len(want)))) {
				t.Fatalf("%s got seqs %v, want 1..%d", s.user.ID, got, len(want))
			}
			for j, m := range msgs {
				if m.Text != want[j] || m.Room != "lobby" {
					t.Fatalf("%s message %d = %q in %q, want %q in lobby", s.user.ID, j, m.Text, m.Room, want[j])
				}
				sender := subs[j%len(subs)].user
				if m.From != sender {
					t.Fatalf("%s message %d from %+v, want %+v", s.user.ID, j, m.From, sender)
				}
				if m.TS != m.frame.Accepted.UnixMilli() || m.frame.Accepted.IsZero() {
					t.Fatalf("message ts %d does not match Accepted %v", m.TS, m.frame.Accepted)
				}
			}
			if i == 0 {
				first = msgs
			} else {
				for j := range msgs {
					if msgs[j].frame != first[j].frame {
						t.Fatalf("message %d was encoded separately for %s; a broadcast must share one Frame", j, s.user.ID)
					}
				}
			}
			// Each own message is followed, at some later point, by its ack
			// carrying the ref and the same seq.
			acks := ofType(envs, "ack")
			if len(acks) != rounds {
				t.Fatalf("%s got %d acks, want %d", s.user.ID, len(acks), rounds)
			}
			pos := make(map[uint64]int) // seq -> index of the message in envs
			for k, e := range envs {
				if e.Type == "message" {
					pos[e.Seq] = k
				}
			}
			for k, e := range envs {
				if e.Type != "ack" {
					continue
				}
				mi, ok := pos[e.Seq]
				if !ok || mi > k {
					t.Fatalf("%s ack for seq %d not after its message", s.user.ID, e.Seq)
				}
				if msg := envs[mi]; e.Ref != "ref-"+msg.Text || msg.From != s.user || e.Room != "lobby" {
					t.Fatalf("%s ack %+v does not match its message %+v", s.user.ID, e, msg)
				}
				if !e.frame.Accepted.IsZero() {
					t.Fatalf("ack frame carries an Accepted time")
				}
			}
		}
	})
}

func TestAckFollowsMessageImmediately(t *testing.T) {
	inBubble(t, Config{}, func(t *testing.T, h *Hub) {
		s := newSub("a")
		m := mustJoin(t, h, s, "r", nil)
		s.take(t)
		mustPublish(t, m, "hello", "r1")
		mustPublish(t, m, "again", "")
		envs := s.take(t)
		if len(envs) != 4 {
			t.Fatalf("got %d frames, want message, ack, message, ack: %+v", len(envs), envs)
		}
		wantTypes := []string{"message", "ack", "message", "ack"}
		for i, e := range envs {
			if e.Type != wantTypes[i] {
				t.Fatalf("frame %d is %q, want %q", i, e.Type, wantTypes[i])
			}
		}
		if envs[1].Ref != "r1" || envs[1].Seq != 1 || envs[1].Room != "r" {
			t.Fatalf("first ack = %+v, want ref r1 seq 1 in r", envs[1])
		}
		if envs[3].has("ref") || envs[3].Seq != 2 {
			t.Fatalf("second ack = %s, want seq 2 and no ref", envs[3].frame.Data)
		}
	})
}

func TestSeqIsPerRoom(t *testing.T) {
	inBubble(t, Config{}, func(t *testing.T, h *Hub) {
		s := newSub("a")
		ma := mustJoin(t, h, s, "alpha", nil)
		mb := mustJoin(t, h, s, "beta", nil)
		s.take(t)
		mustPublish(t, ma, "1", "")
		mustPublish(t, ma, "2", "")
		mustPublish(t, mb, "1", "")
		mustPublish(t, ma, "3", "")
		got := map[string][]uint64{}
		for _, e := range ofType(s.take(t), "message") {
			got[e.Room] = append(got[e.Room], e.Seq)
		}
		if !slices.Equal(got["alpha"], []uint64{1, 2, 3}) || !slices.Equal(got["beta"], []uint64{1}) {
			t.Fatalf("per-room seqs = %v, want alpha 1..3 and beta 1", got)
		}
	})
}

func TestLeave(t *testing.T) {
	inBubble(t, Config{}, func(t *testing.T, h *Hub) {
		a, b := newSub("a"), newSub("b")
		ma := mustJoin(t, h, a, "r", nil)
		mb := mustJoin(t, h, b, "r", nil)
		a.take(t)
		b.take(t)

		ma.Leave()
		ma.Leave() // idempotent
		err := publish(ma, "hi", "r7")
		if err == nil || err.Code != protocol.CodeNotJoined || err.Ref != "r7" {
			t.Fatalf("Publish after Leave = %v, want not_joined with ref r7", err)
		}
		mustPublish(t, mb, "after", "")
		if envs := a.take(t); len(envs) != 0 {
			t.Fatalf("a got %d frames after leaving: %+v", len(envs), envs)
		}
		msgs := ofType(b.take(t), "message")
		if len(msgs) != 1 || msgs[0].Seq != 1 {
			t.Fatalf("b got %+v, want one message with seq 1 (the failed publish must not consume a seq)", msgs)
		}
		// A fresh join works again and sees the same room.
		ma = mustJoin(t, h, a, "r", nil)
		j, _ := expectJoined(t, a.take(t), "r")
		if j.Seq != 1 || j.Online != 2 {
			t.Fatalf("rejoin after leave: joined %+v, want seq 1 online 2", j)
		}
		mustPublish(t, ma, "back", "")
	})
}

func TestJoinedFrame(t *testing.T) {
	inBubble(t, Config{}, func(t *testing.T, h *Hub) {
		a, b := newSub("b-user"), newSub("a-user")
		ma := mustJoin(t, h, a, "r", nil)
		j, rest := expectJoined(t, a.take(t), "r")
		if j.Seq != 0 || j.Online != 1 || len(rest) != 0 {
			t.Fatalf("first joiner: joined %+v then %d frames, want seq 0 online 1 alone", j, len(rest))
		}
		if !slices.Equal(ids(j.Members), []string{"b-user"}) {
			t.Fatalf("members = %v, want the joiner", j.Members)
		}
		if j.has("recovered") {
			t.Fatalf("joined without since carries recovered: %s", j.frame.Data)
		}
		mustPublish(t, ma, "x", "")
		mustPublish(t, ma, "y", "")
		mustJoin(t, h, b, "r", nil)
		j, rest = expectJoined(t, b.take(t), "r")
		if j.Seq != 2 || j.Online != 2 || len(rest) != 0 {
			t.Fatalf("second joiner: joined %+v then %d frames, want seq 2 online 2 and no replay", j, len(rest))
		}
		if !slices.Equal(ids(j.Members), []string{"a-user", "b-user"}) {
			t.Fatalf("members = %v, want both sorted by id", ids(j.Members))
		}
		if j.Members[0].Name != "name-a-user" {
			t.Fatalf("member name = %q, want name-a-user", j.Members[0].Name)
		}
	})
}

func TestJoinReplay(t *testing.T) {
	const history = 5
	tests := []struct {
		name          string
		published     int     // messages in the room before the join
		since         *uint64 // nil: no since
		wantReplay    []uint64
		wantRecovered *bool // nil: omitted
	}{
		{name: "no since", published: 8, since: nil, wantReplay: nil, wantRecovered: nil},
		{name: "since current", published: 8, since: ptr[uint64](8), wantReplay: nil, wantRecovered: ptr(true)},
		{name: "since within ring", published: 8, since: ptr[uint64](5), wantReplay: seqRange(6, 8), wantRecovered: ptr(true)},
		{name: "since just before oldest kept", published: 8, since: ptr[uint64](3), wantReplay: seqRange(4, 8), wantRecovered: ptr(true)},
		{name: "since older than ring", published: 8, since: ptr[uint64](2), wantReplay: seqRange(4, 8), wantRecovered: ptr(false)},
		{name: "since zero, ring wrapped", published: 8, since: ptr[uint64](0), wantReplay: seqRange(4, 8), wantRecovered: ptr(false)},
		{name: "since zero, ring not full", published: 3, since: ptr[uint64](0), wantReplay: seqRange(1, 3), wantRecovered: ptr(true)},
		{name: "since beyond current", published: 8, since: ptr[uint64](9), wantReplay: nil, wantRecovered: ptr(false)},
		{name: "since far beyond current", published: 2, since: ptr[uint64](1 << 40), wantReplay: nil, wantRecovered: ptr(false)},
		{name: "since zero, empty room", published: 0, since: ptr[uint64](0), wantReplay: nil, wantRecovered: ptr(true)},
		{name: "since on fresh room from an older life", published: 0, since: ptr[uint64](3), wantReplay: nil, wantRecovered: ptr(false)},
		{name: "ring wrapped many times", published: 23, since: ptr[uint64](19), wantReplay: seqRange(20, 23), wantRecovered: ptr(true)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			inBubble(t, Config{History: history}, func(t *testing.T, h *Hub) {
				pub := newSub("pub")
				mp := mustJoin(t, h, pub, "r", nil)
				for i := 1; i <= tc.published; i++ {
					mustPublish(t, mp, fmt.Sprintf("text-%d", i), "")
				}
				s := newSub("late")
				ms := mustJoin(t, h, s, "r", tc.since)
				j, rest := expectJoined(t, s.take(t), "r")
				if j.Seq != uint64(tc.published) {
					t.Fatalf("joined seq = %d, want %d", j.Seq, tc.published)
				}
				switch {
				case tc.wantRecovered == nil && j.has("recovered"):
					t.Fatalf("recovered present without since: %s", j.frame.Data)
				case tc.wantRecovered != nil && (j.Recovered == nil || *j.Recovered != *tc.wantRecovered):
					t.Fatalf("joined %s, want recovered %v", j.frame.Data, *tc.wantRecovered)
				}
				if got := seqs(rest); !slices.Equal(got, tc.wantReplay) || len(ofType(rest, "message")) != len(rest) {
					t.Fatalf("replayed %v (%d frames), want messages %v", got, len(rest), tc.wantReplay)
				}
				if j.frame.Replay {
					t.Fatal("joined is marked as a replay")
				}
				for _, e := range rest {
					if e.Text != fmt.Sprintf("text-%d", e.Seq) {
						t.Fatalf("replayed seq %d carries %q", e.Seq, e.Text)
					}
					if !e.frame.Replay {
						t.Fatalf("replayed seq %d is not marked as a replay", e.Seq)
					}
				}
				// Live messages continue the sequence with no gap.
				mustPublish(t, mp, "live", "")
				mustPublish(t, ms, "live2", "")
				live := ofType(s.take(t), "message")
				for _, e := range live {
					if e.frame.Replay {
						t.Fatalf("live seq %d is marked as a replay", e.Seq)
					}
				}
				if got := seqs(live); !slices.Equal(got, seqRange(uint64(tc.published)+1, uint64(tc.published)+2)) {
					t.Fatalf("live seqs after join = %v, want %d..%d", got, tc.published+1, tc.published+2)
				}
			})
		})
	}
}

func TestRejoinResendsJoined(t *testing.T) {
	inBubble(t, Config{}, func(t *testing.T, h *Hub) {
		a, b := newSub("a"), newSub("b")
		ma := mustJoin(t, h, a, "r", nil)
		mustJoin(t, h, b, "r", nil)
		mustPublish(t, ma, "one", "")
		mustPublish(t, ma, "two", "")
		time.Sleep(time.Second) // let the joins' presence frame go out
		a.take(t)
		b.take(t)

		ma2 := mustJoin(t, h, a, "r", ptr[uint64](1))
		j, rest := expectJoined(t, a.take(t), "r")
		if j.Seq != 2 || j.Online != 2 || j.Recovered == nil || !*j.Recovered {
			t.Fatalf("re-sent joined = %s, want seq 2 online 2 recovered", j.frame.Data)
		}
		if got := seqs(rest); !slices.Equal(got, []uint64{2}) {
			t.Fatalf("rejoin replayed %v, want [2]", got)
		}
		// The subscriber is still a member once: one copy of each message.
		mustPublish(t, ma2, "three", "")
		if got := seqs(ofType(a.take(t), "message")); !slices.Equal(got, []uint64{3}) {
			t.Fatalf("after rejoin a got %v, want exactly [3]", got)
		}
		// Others see no presence change for a rejoin.
		time.Sleep(time.Second)
		if p := ofType(b.take(t), "presence"); len(p) != 0 {
			t.Fatalf("rejoin produced presence frames: %+v", p)
		}
		// One Leave removes it.
		ma.Leave()
		if err := publish(ma2, "x", ""); err == nil || err.Code != protocol.CodeNotJoined {
			t.Fatalf("Publish via second membership after Leave = %v, want not_joined", err)
		}
	})
}

func TestJoinInvalidRoom(t *testing.T) {
	tests := []string{"", strings.Repeat("a", 65), "café", "a b", "a/b", "lobby\n"}
	for _, room := range tests {
		t.Run(fmt.Sprintf("%q", room), func(t *testing.T) {
			h := New(Config{SeqBase: zeroSeqBase})
			defer h.Close()
			s := newSub("a")
			m, err := h.Join(s, room, nil)
			if err == nil || err.Code != protocol.CodeInvalidRoom || m != nil {
				t.Fatalf("Join(%q) = %v, %v; want invalid_room", room, m, err)
			}
			if h.Rooms() != 0 {
				t.Fatalf("an invalid join created %d rooms", h.Rooms())
			}
			if envs := s.take(t); len(envs) != 0 {
				t.Fatalf("invalid join queued frames: %+v", envs)
			}
		})
	}
}

func TestJoinAfterClose(t *testing.T) {
	h := New(Config{SeqBase: zeroSeqBase})
	s := newSub("a")
	m := mustJoin(t, h, s, "r", nil)
	h.Close()
	h.Close() // idempotent
	if _, err := h.Join(newSub("b"), "r", nil); err == nil || err.Code != protocol.CodeUnavailable {
		t.Fatalf("Join after Close = %v, want unavailable", err)
	}
	m.Leave() // must not arm timers that outlive the hub (goleak checks)
}

func TestRoomTTL(t *testing.T) {
	const ttl = time.Minute
	inBubble(t, Config{RoomTTL: ttl, History: 10}, func(t *testing.T, h *Hub) {
		obs := &countObserver{}
		h.obs = obs
		s := newSub("a")
		m := mustJoin(t, h, s, "r", nil)
		for i := range 3 {
			mustPublish(t, m, fmt.Sprint(i), "")
		}
		m.Leave()
		s.take(t)
		if h.Rooms() != 1 {
			t.Fatalf("Rooms() = %d right after the last leave, want 1", h.Rooms())
		}

		// Rejoin just before the TTL: the room and its history survive.
		time.Sleep(ttl - time.Millisecond)
		synctest.Wait()
		if h.Rooms() != 1 || obs.closed.Load() != 0 {
			t.Fatalf("room retired before its TTL")
		}
		m = mustJoin(t, h, s, "r", ptr[uint64](0))
		j, rest := expectJoined(t, s.take(t), "r")
		if j.Seq != 3 || !*j.Recovered || !slices.Equal(seqs(rest), seqRange(1, 3)) {
			t.Fatalf("rejoin before TTL: joined %s replay %v, want seq 3 recovered with 1..3", j.frame.Data, seqs(rest))
		}

		// The rejoin disarmed the old timer: a full TTL from the first leave
		// passes without retiring the occupied room.
		time.Sleep(2 * ttl)
		synctest.Wait()
		if h.Rooms() != 1 {
			t.Fatalf("occupied room was retired")
		}

		// Empty again: the TTL counts from this leave.
		m.Leave()
		time.Sleep(ttl - time.Millisecond)
		synctest.Wait()
		if h.Rooms() != 1 {
			t.Fatalf("room retired before a full TTL after the second leave")
		}
		time.Sleep(2 * time.Millisecond)
		synctest.Wait()
		if h.Rooms() != 0 || obs.closed.Load() != 1 {
			t.Fatalf("Rooms() = %d, RoomClosed %d after the TTL; want 0 and 1", h.Rooms(), obs.closed.Load())
		}
		if err := publish(m, "stale", ""); err == nil || err.Code != protocol.CodeNotJoined {
			t.Fatalf("Publish on a retired room = %v, want not_joined", err)
		}
		m.Leave() // harmless on a retired room

		// A new life of the room starts from seq 0 without history.
		s.take(t)
		mustJoin(t, h, s, "r", ptr[uint64](3))
		j, rest = expectJoined(t, s.take(t), "r")
		if j.Seq != 0 || *j.Recovered || len(rest) != 0 {
			t.Fatalf("join after expiry: %s with %d replayed, want seq 0, recovered false, no replay", j.frame.Data, len(rest))
		}
		if obs.opened.Load() != 2 {
			t.Fatalf("RoomOpened called %d times, want 2", obs.opened.Load())
		}
	})
}

func TestMaxRoomsReclaimsEmptyRoomInShard(t *testing.T) {
	inBubble(t, Config{MaxRooms: 1, RoomTTL: time.Hour}, func(t *testing.T, h *Hub) {
		a := newSub("a")
		ma := mustJoin(t, h, a, "first", nil)
		mustPublish(t, ma, "old", "")
		ma.Leave()

		second := nameInShard(t, h, "first", true)
		b := newSub("b")
		mb := mustJoin(t, h, b, second, nil)
		if h.Rooms() != 1 {
			t.Fatalf("Rooms() = %d, want 1 (the empty room reclaimed)", h.Rooms())
		}
		// The cap is full of occupied rooms: nothing can be reclaimed.
		other := nameInShard(t, h, "first", false)
		for _, name := range []string{"first", other} {
			m, err := h.Join(newSub("c"), name, nil)
			if err == nil || err.Code != protocol.CodeRoomLimit || err.RetryAfterMs <= 0 || m != nil {
				t.Fatalf("Join(%q) at the cap = %v, want room_limit with retry_after_ms", name, err)
			}
		}
		// The reclaimed room's history is gone.
		mb.Leave()
		a.take(t)
		mustJoin(t, h, a, "first", ptr[uint64](0))
		j, rest := expectJoined(t, a.take(t), "first")
		if j.Seq != 0 || len(rest) != 0 {
			t.Fatalf("reclaimed room came back with seq %d and %d replayed", j.Seq, len(rest))
		}
		// Joining an existing room is never limited.
		mustJoin(t, h, newSub("d"), "first", nil)
	})
}

func TestMaxRoomsReclaimsLongestEmpty(t *testing.T) {
	inBubble(t, Config{MaxRooms: 2, RoomTTL: time.Hour}, func(t *testing.T, h *Hub) {
		older := "older"
		newer := nameInShard(t, h, older, true)
		third := nameInShard(t, h, older, true, newer)
		s := newSub("a")
		mo := mustJoin(t, h, s, older, nil)
		mn := mustJoin(t, h, s, newer, nil)
		mustPublish(t, mo, "o", "")
		mustPublish(t, mn, "n", "")
		mo.Leave()
		time.Sleep(time.Second)
		mn.Leave()
		mustJoin(t, h, newSub("b"), third, nil)
		s.take(t)
		// newer survived with its history; older was reclaimed.
		mustJoin(t, h, s, newer, ptr[uint64](0))
		if j, rest := expectJoined(t, s.take(t), newer); j.Seq != 1 || len(rest) != 1 {
			t.Fatalf("the more recently emptied room lost its history: %s", j.frame.Data)
		}
		if _, err := h.Join(s, older, nil); err == nil || err.Code != protocol.CodeRoomLimit {
			t.Fatalf("Join(older) = %v; want room_limit since older was reclaimed and the cap is full", err)
		}
	})
}

func TestMaxRoomsConcurrentCreation(t *testing.T) {
	// Rooms created concurrently in different shards must not overshoot
	// the cap.
	const maxRooms = 4
	for range 20 {
		h := New(Config{SeqBase: zeroSeqBase, MaxRooms: maxRooms})
		var wg sync.WaitGroup
		var mu sync.Mutex
		ok := 0
		start := make(chan struct{})
		for i := range 64 {
			wg.Go(func() {
				<-start
				if _, err := h.Join(newSub(fmt.Sprint(i)), fmt.Sprintf("room-%d", i), nil); err == nil {
					mu.Lock()
					ok++
					mu.Unlock()
				} else if err.Code != protocol.CodeRoomLimit {
					t.Errorf("Join: %v, want success or room_limit", err)
				}
			})
		}
		close(start)
		wg.Wait()
		rooms := h.Rooms()
		h.Close()
		if ok != maxRooms || rooms != maxRooms {
			t.Fatalf("%d joins succeeded and %d rooms exist, want exactly %d of each", ok, rooms, maxRooms)
		}
	}
}

// TestConcurrentPublishJoinLeave hammers a few rooms with publishers while
// other subscribers join (with since) and leave, then checks that every
// subscriber saw each room's messages in seq order with no gap or
// duplicate: across the whole run for steady members, and within each join
// session (replay included) for the churning ones.
func TestConcurrentPublishJoinLeave(t *testing.T) {
	rooms := []string{"r0", "r1", "r2", "r3"}
	const (
		publishers = 8
		perPub     = 300
		churners   = 6
		history    = 64
	)
	h := New(Config{SeqBase: zeroSeqBase, History: history, PresenceInterval: time.Millisecond})
	defer h.Close()

	steady := make([]*fakeSub, len(rooms))
	for i, r := range rooms {
		steady[i] = newSub(fmt.Sprint("steady-", i))
		mustJoin(t, h, steady[i], r, nil)
	}

	var wg sync.WaitGroup
	published := make([][]int, publishers) // per publisher, per room count
	for p := range publishers {
		published[p] = make([]int, len(rooms))
		sub := newSub(fmt.Sprint("pub-", p))
		ms := make([]broker.Membership, len(rooms))
		for i, r := range rooms {
			ms[i] = mustJoin(t, h, sub, r, nil)
		}
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(p), 1))
			for n := range perPub {
				i := rng.IntN(len(rooms))
				if err := publish(ms[i], fmt.Sprintf("p%d-%d", p, n), ""); err != nil {
					t.Errorf("Publish: %v", err)
					return
				}
				published[p][i]++
			}
		})
	}
	stop := make(chan struct{})
	var churn sync.WaitGroup
	churnSubs := make([]*fakeSub, churners)
	for c := range churners {
		sub := newSub(fmt.Sprint("churn-", c))
		churnSubs[c] = sub
		churn.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(c), 2))
			for {
				select {
				case <-stop:
					return
				default:
				}
				room := rooms[rng.IntN(len(rooms))]
				var since *uint64
				if rng.IntN(2) == 0 {
					// Anywhere from long ago to beyond the room's seq.
					since = ptr(uint64(rng.IntN(publishers * perPub / len(rooms) * 2)))
				}
				m, err := h.Join(sub, room, since)
				if err != nil {
					t.Errorf("Join: %v", err)
					return
				}
				for range rng.IntN(50) {
					// Stay a little while traffic flows.
					if rng.IntN(8) == 0 {
						_ = publish(m, "churn", "")
					}
				}
				m.Leave()
			}
		})
	}
	wg.Wait()
	close(stop)
	churn.Wait()

	for i, r := range rooms {
		total := 0
		for p := range publishers {
			total += published[p][i]
		}
		msgs := ofType(steady[i].take(t), "message")
		got := seqs(msgs)
		if len(got) < total {
			t.Fatalf("room %s: steady member got %d messages, publishers sent %d", r, len(got), total)
		}
		if !slices.Equal(got, seqRange(1, uint64(len(got)))) {
			t.Fatalf("room %s: steady member seqs not contiguous from 1 (len %d)", r, len(got))
		}
		// Each publisher's own messages arrive in the order it sent them.
		next := make(map[string]int)
		for _, m := range msgs {
			var p, n int
			if _, err := fmt.Sscanf(m.Text, "p%d-%d", &p, &n); err != nil {
				continue // a churner's message
			}
			key := fmt.Sprint(p)
			if n < next[key] {
				t.Fatalf("room %s: publisher %d message %d after %d", r, p, n, next[key])
			}
			next[key] = n + 1
		}
	}
	for _, sub := range churnSubs {
		checkSessions(t, sub.user.ID, sub.take(t))
	}
}

// TestJoinSinceSeamUnderTraffic joins with since while another goroutine
// publishes as fast as it can: the joiner must see joined, then every
// message from since+1 on, replayed and live, with no gap or duplicate
// across the seam.
func TestJoinSinceSeamUnderTraffic(t *testing.T) {
	const total = 3000
	for _, since := range []uint64{0, 7} {
		t.Run(fmt.Sprint("since=", since), func(t *testing.T) {
			h := New(Config{SeqBase: zeroSeqBase, History: total})
			defer h.Close()
			pub := newSub("pub")
			mp := mustJoin(t, h, pub, "r", nil)
			for range since + 1 {
				mustPublish(t, mp, "warm-up", "")
			}
			var wg sync.WaitGroup
			joinAt := make(chan struct{})
			wg.Go(func() {
				for n := since + 2; n <= total; n++ {
					if n == total/2 {
						close(joinAt)
					}
					if err := publish(mp, "m", ""); err != nil {
						t.Errorf("Publish: %v", err)
						return
					}
				}
			})
			<-joinAt
			s := newSub("joiner")
			mustJoin(t, h, s, "r", ptr(since))
			wg.Wait()
			j, rest := expectJoined(t, s.take(t), "r")
			if j.Recovered == nil || !*j.Recovered {
				t.Fatalf("joined %s, want recovered true", j.frame.Data)
			}
			if j.Seq <= since || j.Seq >= total {
				t.Fatalf("joined seq %d not mid-stream", j.Seq)
			}
			if got := seqs(ofType(rest, "message")); !slices.Equal(got, seqRange(since+1, total)) {
				t.Fatalf("joiner saw %d messages, want exactly %d..%d in order", len(got), since+1, total)
			}
		})
	}
}

// checkSessions verifies a churning subscriber's stream: after each joined
// frame for a room, the messages of that room up to the next joined for it
// are contiguous, start right after joined.seq (or replay from after since),
// and never repeat.
func checkSessions(t *testing.T, who string, envs []env) {
	t.Helper()
	next := make(map[string]uint64) // room -> seq expected next in the live stream
	joinedSeq := make(map[string]uint64)
	inReplay := make(map[string]bool)
	sessions := 0
	for _, e := range envs {
		switch e.Type {
		case "joined":
			sessions++
			joinedSeq[e.Room] = e.Seq
			next[e.Room] = 0 // first message decides (replay or live)
			inReplay[e.Room] = true
		case "message":
			want := next[e.Room]
			if want == 0 {
				// First message of the session: a replay starts anywhere
				// at or before joined.seq, live starts at joined.seq+1.
				if e.Seq > joinedSeq[e.Room]+1 {
					t.Fatalf("%s room %s: first message %d after joined seq %d: gap", who, e.Room, e.Seq, joinedSeq[e.Room])
				}
			} else if e.Seq != want {
				t.Fatalf("%s room %s: got seq %d, want %d (gap or duplicate)", who, e.Room, e.Seq, want)
			}
			next[e.Room] = e.Seq + 1
		}
	}
	if sessions == 0 {
		t.Fatalf("%s never joined", who)
	}
}

// TestRoomTTLJoinLeaveWhileExpiring covers a join and leave that land while
// the expiry timer is already firing (its callback started but is waiting
// for the locks, so the join's Stop fails): the room must still wait a
// full TTL from that last leave instead of being retired at once.
func TestRoomTTLJoinLeaveWhileExpiring(t *testing.T) {
	const ttl = time.Minute
	inBubble(t, Config{RoomTTL: ttl}, func(t *testing.T, h *Hub) {
		s := newSub("a")
		m := mustJoin(t, h, s, "r", nil)
		mustPublish(t, m, "kept", "")
		m.Leave()
		r := h.shardFor("r").rooms["r"]

		time.Sleep(ttl / 2)
		r.mu.Lock()
		// Play the timer firing now: it can no longer be stopped and its
		// callback (run below) is pending.
		if !r.expiryArmed || !r.expiryTmr.Stop() {
			t.Fatalf("expiry timer not armed after the last leave")
		}
		r.addLocked(s) // a join whose Stop comes too late
		r.removeLocked(s)
		r.mu.Unlock()
		go h.expire(r) // the pending callback
		synctest.Wait()
		if h.Rooms() != 1 {
			t.Fatalf("room retired right after a leave, not a TTL later")
		}
		time.Sleep(ttl - time.Millisecond)
		synctest.Wait()
		if h.Rooms() != 1 {
			t.Fatalf("room retired before a full TTL after the last leave")
		}
		time.Sleep(2 * time.Millisecond)
		synctest.Wait()
		if h.Rooms() != 0 {
			t.Fatalf("room not retired a TTL after the last leave")
		}
	})
}
