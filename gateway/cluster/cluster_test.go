package cluster

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chatgate/chatgate/gateway/protocol"
	"github.com/chatgate/chatgate/internal/wstest"
)

// checkOrdered fails unless every message seq list is strictly increasing.
func checkOrdered(t *testing.T, who string, ss []uint64) {
	t.Helper()
	for i := 1; i < len(ss); i++ {
		if ss[i] <= ss[i-1] {
			t.Fatalf("%s: seq %d after %d: out of order or duplicate", who, ss[i], ss[i-1])
		}
	}
}

// Three gateways, clients on each, two rooms (one with a '.' in its name):
// every client sees every message of its rooms, in one global order per
// room, with no gap or duplicate, its own message before its ack; and
// presence converges to everyone, across replicas.
func TestClusterChatAcrossReplicas(t *testing.T) {
	ns := startNATS(t)
	nodes := []*node{startNode(t, ns, "gw-a", nil), startNode(t, ns, "gw-b", nil), startNode(t, ns, "gw-c", nil)}
	rooms := []string{"lobby", "dev.team"}

	type member struct {
		c    *wsClient
		room string
	}
	var clients []*wsClient
	var ms []member
	for i, n := range nodes {
		for j := 0; j < 2; j++ {
			c := dial(t, n, url.Values{"name": {fmt.Sprintf("u%d%d", i, j)}}.Encode())
			clients = append(clients, c)
			for _, r := range rooms[:1+(i+j)%2] {
				c.JoinSince(r, nil)
				ms = append(ms, member{c, r})
			}
		}
	}
	// Presence converges: each member sees every member of its room.
	want := map[string]map[string]bool{}
	for _, m := range ms {
		if want[m.room] == nil {
			want[m.room] = map[string]bool{}
		}
		want[m.room][m.c.UserID()] = true
	}
	for _, m := range ms {
		m.c.WaitFor("presence of "+m.room, func(envs []env) bool {
			set, online := wstest.Members(envs, m.room)
			return online == len(want[m.room]) && len(set) == len(want[m.room]) && subset(set, want[m.room])
		})
	}

	const perClient = 40
	var wg sync.WaitGroup
	var mu sync.Mutex
	acked := map[string]map[uint64]string{} // room → seq → text
	for _, m := range ms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; k < perClient; k++ {
				text := fmt.Sprintf("%s/%s/%d", m.c.UserID(), m.room, k)
				res := m.c.SendWait(m.room, text, fmt.Sprintf("%s-%d", m.room, k))
				if res.Seq == 0 {
					t.Errorf("send %s: %+v", text, res)
					return
				}
				mu.Lock()
				if acked[m.room] == nil {
					acked[m.room] = map[uint64]string{}
				}
				acked[m.room][res.Seq] = text
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	for _, r := range rooms {
		if len(acked[r]) == 0 {
			t.Fatalf("no message acked in %s", r)
		}
	}
	reference := map[string][]uint64{}
	for _, m := range ms {
		total := len(acked[m.room])
		m.c.WaitFor("all messages of "+m.room, func(envs []env) bool { return len(wstest.Messages(envs, m.room)) >= total })
		envs := m.c.Snapshot()
		got := wstest.Messages(envs, m.room)
		ss := wstest.Seqs(envs, m.room)
		checkOrdered(t, m.c.node, ss)
		if len(got) != total {
			t.Fatalf("%s got %d messages of %s; want %d", m.c.UserID(), len(got), m.room, total)
		}
		for _, e := range got {
			if acked[m.room][e.U64("seq")] != e.Str("text") {
				t.Fatalf("message seq %d text %q; acked as %q", e.U64("seq"), e.Str("text"), acked[m.room][e.U64("seq")])
			}
		}
		if prev, ok := reference[m.room]; ok && fmt.Sprint(prev) != fmt.Sprint(ss) {
			t.Fatalf("two members of %s saw different orders", m.room)
		} else {
			reference[m.room] = ss
		}
		// The sender's own message comes before its ack.
		seen := map[uint64]bool{}
		for _, e := range envs {
			switch {
			case e.Type() == "message" && e.Str("room") == m.room:
				seen[e.U64("seq")] = true
			case e.Type() == "ack" && e.Str("room") == m.room && !seen[e.U64("seq")]:
				t.Fatalf("ack %d before its message", e.U64("seq"))
			}
		}
	}
	for _, n := range nodes {
		if got := n.gauge(t, "chatgate_backplane_up"); got != 1 {
			t.Fatalf("%s backplane_up = %v", n.name, got)
		}
	}
}

func subset(a, b map[string]bool) bool {
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

// A client that moves from A to B resumes with since: it gets exactly the
// messages it missed, recovered: true; and the other recovered cases hold.
func TestHistoryResumeOnAnotherReplica(t *testing.T) {
	ns := startNATS(t)
	a := startNode(t, ns, "gw-a", func(c *Config) { c.Rooms.History = 5 })
	b := startNode(t, ns, "gw-b", func(c *Config) { c.Rooms.History = 5 })

	talker := dial(t, b, "name=talker")
	talker.JoinSince("r", nil)
	var sent []uint64
	send := func(n int) {
		for i := 0; i < n; i++ {
			res := talker.SendWait("r", fmt.Sprintf("m%d", len(sent)), fmt.Sprintf("x%d", len(sent)))
			if res.Seq == 0 {
				t.Fatalf("send: %+v", res)
			}
			sent = append(sent, res.Seq)
		}
	}
	// Another room interleaves, so seqs are not contiguous.
	other := dial(t, a, "")
	other.JoinSince("noise", nil)
	mover := dial(t, a, "name=mover")
	j0 := mover.JoinSince("r", nil)
	send(2)
	other.SendWait("noise", "zzz", "n1")
	send(1)
	mover.WaitFor("3 messages", func(envs []env) bool { return len(wstest.Messages(envs, "r")) == 3 })
	last := wstest.Seqs(mover.Snapshot(), "r")[2]
	mover.Close()
	send(2) // missed while away
	other.SendWait("noise", "zzz", "n2")
	send(1)
	missed := sent[3:]

	back := dial(t, b, "name=mover-again")
	j := back.JoinSince("r", &last)
	if rec, ok := j["recovered"].(bool); !ok || !rec {
		t.Fatalf("joined %v; want recovered true", j)
	}
	if j.U64("seq") != sent[len(sent)-1] {
		t.Fatalf("joined.seq %d; want the last message %d", j.U64("seq"), sent[len(sent)-1])
	}
	back.WaitFor("replay", func(envs []env) bool { return len(wstest.Messages(envs, "r")) >= len(missed) })
	got := wstest.Seqs(back.Snapshot(), "r")
	if fmt.Sprint(got) != fmt.Sprint(missed) {
		t.Fatalf("replayed %v; want exactly the missed %v", got, missed)
	}
	// Live traffic continues after the seam with no gap or duplicate.
	send(1)
	back.WaitFor("live message", func(envs []env) bool { return len(wstest.Messages(envs, "r")) == len(missed)+1 })
	if s := wstest.Seqs(back.Snapshot(), "r"); s[len(s)-1] != sent[len(sent)-1] {
		t.Fatalf("live message %d; want %d", s[len(s)-1], sent[len(sent)-1])
	}

	// Now 7 messages, history 5: the first two are gone. Each case joins
	// with since and then leaves: what comes between joined and left is
	// the replay (nothing else is sent meanwhile).
	p := func(v uint64) *uint64 { return &v }
	latest := sent[len(sent)-1]
	cases := []struct {
		name      string
		since     *uint64
		replay    []uint64
		recovered bool
	}{
		{"up to date", p(latest), nil, true},
		{"one behind", p(sent[len(sent)-2]), sent[len(sent)-1:], true},
		{"in the held tail", p(sent[2]), sent[3:], true},
		{"between two messages of the tail", p(sent[4] + 1), sent[5:], true},
		{"older than the tail", p(sent[0]), sent[2:], false},
		{"since 0, first messages gone", p(0), sent[2:], false},
		{"from before the room's first message", p(j0.U64("seq")), sent[2:], false},
		{"beyond the room", p(latest + 1000), nil, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, a, "")
			j := c.JoinSince("r", tc.since)
			if rec, _ := j["recovered"].(bool); rec != tc.recovered {
				t.Fatalf("recovered %v; want %v (joined %v)", j["recovered"], tc.recovered, j)
			}
			if j.U64("seq") != latest {
				t.Fatalf("joined.seq %d; want %d", j.U64("seq"), latest)
			}
			c.Send(map[string]any{"type": "leave", "room": "r"})
			c.WaitEnv("left", func(e env) bool { return e.Type() == "left" })
			if got := wstest.Seqs(c.Snapshot(), "r"); fmt.Sprint(got) != fmt.Sprint(tc.replay) {
				t.Fatalf("replayed %v; want %v", got, tc.replay)
			}
		})
	}
}

// since 0 on a room whose whole life is held replays everything, with
// recovered true as with the in-process hub: the first message the stream
// holds of the room starts its chain (Chatgate-Start), on another replica
// too.
func TestSinceZeroReplaysWholeRoom(t *testing.T) {
	ns := startNATS(t)
	a := startNode(t, ns, "gw-a", nil)
	b := startNode(t, ns, "gw-b", nil)
	c := dial(t, a, "")
	c.JoinSince("fresh", nil)
	var want []uint64
	for i := 0; i < 3; i++ {
		want = append(want, c.SendWait("fresh", "hi", fmt.Sprint(i)).Seq)
	}
	zero := uint64(0)
	for _, n := range []*node{a, b} {
		d := dial(t, n, "")
		j := d.JoinSince("fresh", &zero)
		if rec, ok := j["recovered"].(bool); !ok || !rec {
			t.Fatalf("joined on %s %v; want recovered true", n.name, j)
		}
		d.WaitFor("replay", func(envs []env) bool { return len(wstest.Messages(envs, "fresh")) == 3 })
		if got := wstest.Seqs(d.Snapshot(), "fresh"); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("replayed on %s %v; want %v", n.name, got, want)
		}
	}
}

// A user connected to two replicas counts once; it stays online while one
// connection remains; a remote join-and-leave within one interval cancels.
func TestPresenceDistinctAcrossReplicas(t *testing.T) {
	ns := startNATS(t)
	mut := func(c *Config) { c.Rooms.PresenceInterval = 150 * time.Millisecond }
	a := newBackplane(t, withCfg(testBackplaneConfig(t, ns, "a"), mut))
	b := newBackplane(t, withCfg(testBackplaneConfig(t, ns, "b"), mut))
	c := newBackplane(t, withCfg(testBackplaneConfig(t, ns, "c"), mut))
	waitUntil(t, "census", func() bool { return a.peers() == 2 && b.peers() == 2 && c.peers() == 2 })

	watcher := &fakeSub{user: protocol.User{ID: "u_watch", Name: "watch"}}
	mustJoin(t, c, watcher, "p", nil)
	alice := protocol.User{ID: "u_alice", Name: "alice"}
	ma := mustJoin(t, a, &fakeSub{user: alice}, "p", nil)
	mb := mustJoin(t, b, &fakeSub{user: alice}, "p", nil)

	online := func(want int, wantIDs ...string) {
		t.Helper()
		waitUntil(t, fmt.Sprintf("online %d %v", want, wantIDs), func() bool {
			set, n := wstest.Members(watcher.Snapshot(), "p")
			if n != want || len(set) != len(wantIDs) {
				return false
			}
			for _, id := range wantIDs {
				if !set[id] {
					return false
				}
			}
			return true
		})
	}
	online(2, "u_alice", "u_watch")
	// A joiner on a fourth path (b) sees alice once.
	late := &fakeSub{user: protocol.User{ID: "u_late", Name: "late"}}
	mustJoin(t, b, late, "p", nil)
	j := late.Snapshot()[0]
	if j.Type() != "joined" || j.U64("online") != 3 {
		t.Fatalf("late joiner got %v; want joined with online 3 (alice once)", j)
	}
	online(3, "u_alice", "u_watch", "u_late")
	ma.Leave() // still online through b: the watcher must not see alice leave
	mb.Leave()
	online(2, "u_watch", "u_late")
	for _, e := range watcher.Snapshot() {
		if e.Type() == "presence" && slices.Contains(e.Users("left"), "u_alice") && e.U64("online") == 3 {
			t.Fatalf("alice reported left while still on b: %v", e)
		}
	}

	// bob joins and leaves a within one interval: the watcher on c gets no
	// presence frame about him.
	before := len(watcher.Snapshot())
	mbob := mustJoin(t, a, &fakeSub{user: protocol.User{ID: "u_bob", Name: "bob"}}, "p", nil)
	mbob.Leave()
	marker := mustJoin(t, b, &fakeSub{user: protocol.User{ID: "u_marker", Name: "m"}}, "p", nil)
	online(3, "u_watch", "u_late", "u_marker")
	for _, e := range watcher.Snapshot()[before:] {
		if slices.Contains(e.Users("joined"), "u_bob") || slices.Contains(e.Users("left"), "u_bob") {
			t.Fatalf("bob's unseen visit was reported: %v", e)
		}
	}
	marker.Leave()
}

func withCfg(c Config, mutate func(*Config)) Config {
	mutate(&c)
	return c
}

// A replica killed without goodbye (its NATS connection dropped, no leave
// published) disappears from presence within the TTL.
func TestKilledReplicaExpiresFromPresence(t *testing.T) {
	ns := startNATS(t)
	const ttl = time.Second
	mut := func(c *Config) { c.PresenceTTL, c.PresenceSync = ttl, 250*time.Millisecond }
	a := startNode(t, ns, "gw-a", mut)
	b := startNode(t, ns, "gw-b", mut)

	victim := dial(t, a, "name=victim")
	victim.JoinSince("room", nil)
	watcher := dial(t, b, "name=watcher")
	watcher.JoinSince("room", nil)
	watcher.WaitFor("victim online", func(envs []env) bool {
		set, n := wstest.Members(envs, "room")
		return n == 2 && set[victim.UserID()]
	})
	// Let at least one snapshot through, so the bound is measured from a
	// snapshot, not from the join.
	time.Sleep(300 * time.Millisecond)
	killed := time.Now()
	a.bp.kill()
	watcher.WaitFor("victim gone", func(envs []env) bool {
		set, n := wstest.Members(envs, "room")
		return n == 1 && !set[victim.UserID()]
	})
	took := time.Since(killed)
	// Expired within the TTL of the last message heard (≤ the kill), plus
	// one presence interval (20ms) for the frame; the rest is slack for a
	// loaded CI machine (the expiry itself is scheduled within the TTL).
	bound := ttl + 20*time.Millisecond + 480*time.Millisecond
	if took > bound {
		t.Fatalf("victim disappeared %v after the kill; bound %v", took, bound)
	}
	t.Logf("killed replica's user left presence %v after the kill (TTL %v)", took, ttl)
	if took < ttl/2 {
		t.Fatalf("victim disappeared after %v, before the TTL could have run out", took)
	}
	// The victim's gateway keeps serving its socket without a backplane:
	// sends get unavailable, never an ack.
	if res := victim.SendWait("room", "into the void", "v1"); res.Code != string(protocol.CodeUnavailable) {
		t.Fatalf("send on a killed backplane: %+v; want unavailable", res)
	}
}

// Draining A while traffic flows: its clients reconnect to B and C with
// since and lose nothing that was acked.
func TestDrainMovesClientsWithoutLoss(t *testing.T) {
	ns := startNATS(t)
	// History large enough that a slow reconnect (under -race) still finds
	// every message it missed.
	deep := func(c *Config) { c.Rooms.History = 1000 }
	nodes := []*node{startNode(t, ns, "gw-a", deep), startNode(t, ns, "gw-b", deep), startNode(t, ns, "gw-c", deep)}
	const room = "busy"
	const perClient = 90

	type chatter struct {
		name  string
		k     int
		c     *wsClient
		log   []env // messages received over its earlier connections
		first uint64
		moves int
	}
	var mu sync.Mutex
	acked := map[uint64]string{}
	var chatters []*chatter
	for _, n := range nodes {
		for j := 0; j < 2; j++ {
			ch := &chatter{name: fmt.Sprintf("%s-%d", n.name, j), k: len(chatters), c: dial(t, n, "")}
			ch.first = ch.c.JoinSince(room, nil).U64("seq")
			chatters = append(chatters, ch)
		}
	}
	// reconnect moves a drained chatter to B or C and resumes with since.
	reconnect := func(ch *chatter) bool {
		closed, code := ch.c.Closed()
		if !closed || code != 1001 {
			t.Errorf("%s: connection ended with %d; want 1001", ch.name, code)
			return false
		}
		ch.log = append(ch.log, wstest.Messages(ch.c.Snapshot(), room)...)
		last := ch.first
		if len(ch.log) > 0 {
			last = ch.log[len(ch.log)-1].U64("seq")
		}
		ch.moves++
		c, err := tryDial(t, nodes[1+(ch.k+ch.moves)%2], "")
		if err != nil {
			t.Errorf("%s: reconnect: %v", ch.name, err)
			return false
		}
		ch.c = c
		if j := c.JoinSince(room, &last); j["recovered"] != true {
			t.Errorf("%s: rejoin after drain with since %d not recovered: %v", ch.name, last, j)
			return false
		}
		return true
	}
	var third, wg sync.WaitGroup
	third.Add(len(chatters))
	for _, ch := range chatters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			passed, unavailable, attempt := false, 0, 0
			for i := 0; i < perClient; {
				if !passed && i >= perClient/3 {
					passed = true
					third.Done()
				}
				text := fmt.Sprintf("%s:%d", ch.name, i)
				attempt++
				res := ch.c.SendWait(room, text, fmt.Sprintf("s%d", attempt))
				switch {
				case res.Seq != 0:
					mu.Lock()
					acked[res.Seq] = text
					mu.Unlock()
					i++
				case res.Code == string(protocol.CodeUnavailable):
					if unavailable++; unavailable > 100 {
						t.Errorf("%s: unavailable %d times", ch.name, unavailable)
						if !passed {
							third.Done()
						}
						return
					}
					time.Sleep(10 * time.Millisecond)
				case res.Closed:
					if !reconnect(ch) {
						if !passed {
							third.Done()
						}
						return
					}
				default:
					t.Errorf("%s: send: %+v", ch.name, res)
					if !passed {
						third.Done()
					}
					return
				}
			}
		}()
	}
	// Every chatter is a third through; drain A while they go on.
	third.Wait()
	nodes[0].srv.BeginDrain()
	nodes[0].checkReadiness(t, http.StatusServiceUnavailable, "draining")
	nodes[0].srv.CloseClients(ctxT(t), 20*time.Millisecond)
	wg.Wait()
	if t.Failed() {
		return
	}
	var maxSeq uint64
	for s := range acked {
		maxSeq = max(maxSeq, s)
	}
	for _, ch := range chatters {
		for !ch.c.WaitFor("the last message", func(envs []env) bool {
			ms := wstest.Messages(envs, room)
			return len(ms) > 0 && ms[len(ms)-1].U64("seq") >= maxSeq
		}) {
			if !reconnect(ch) { // drained after its last send
				t.FailNow()
			}
		}
		all := append(ch.log, wstest.Messages(ch.c.Snapshot(), room)...)
		var ss []uint64
		got := map[uint64]bool{}
		for _, e := range all {
			ss = append(ss, e.U64("seq"))
			got[e.U64("seq")] = true
		}
		checkOrdered(t, ch.name, ss)
		for s, text := range acked {
			if s > ch.first && !got[s] {
				t.Fatalf("%s (moved %d times) lost acked message %d %q", ch.name, ch.moves, s, text)
			}
		}
	}
	for _, ch := range chatters[:2] {
		if ch.moves != 1 {
			t.Fatalf("%s moved %d times; want 1", ch.name, ch.moves)
		}
	}
	for _, ch := range chatters[2:] {
		if ch.moves != 0 {
			t.Fatalf("%s on a node that did not drain moved %d times", ch.name, ch.moves)
		}
	}
}

// NATS restarted mid-run (same port and store): while it is down sends get
// unavailable (never an ack), the backplane reports down and readiness
// fails; when it is back, delivery resumes and nothing acked is lost.
func TestNATSRestart(t *testing.T) {
	ns := startNATS(t)
	a := startNode(t, ns, "gw-a", nil)
	b := startNode(t, ns, "gw-b", nil)
	ca := dial(t, a, "")
	cb := dial(t, b, "")
	first := ca.JoinSince("r", nil).U64("seq")
	cb.JoinSince("r", nil)
	var acked []uint64
	for i := 0; i < 5; i++ {
		acked = append(acked, ca.SendWait("r", fmt.Sprint("before", i), fmt.Sprint("b", i)).Seq)
	}
	cb.WaitFor("before", func(envs []env) bool { return len(wstest.Messages(envs, "r")) == 5 })

	ns.Stop()
	waitUntil(t, "backplanes down", func() bool { return !a.bp.Up() && !b.bp.Up() })
	if got := a.gauge(t, "chatgate_backplane_up"); got != 0 {
		t.Fatalf("backplane_up = %v while NATS is down", got)
	}
	a.checkReadiness(t, http.StatusServiceUnavailable, "backplane down")
	res := ca.SendWait("r", "during", "d1")
	if res.Code != string(protocol.CodeUnavailable) {
		t.Fatalf("send while NATS is down: %+v; want unavailable", res)
	}
	errEnv := ca.WaitEnv("error", func(e env) bool { return e.Str("ref") == "d1" && e.Type() == "error" })
	if errEnv.U64("retry_after_ms") == 0 {
		t.Fatalf("unavailable without retry_after_ms: %v", errEnv)
	}
	if errs := a.gauge(t, "chatgate_backplane_publish_errors_total"); errs < 1 {
		t.Fatalf("publish errors %v; want ≥ 1", errs)
	}

	ns.Restart()
	waitUntil(t, "backplanes up", func() bool { return a.bp.Up() && b.bp.Up() })
	a.checkReadiness(t, http.StatusOK, "ok")
	// Service resumes: sends from both sides reach both sides.
	for i, attempt := 0, 0; i < 5; attempt++ {
		res := cb.SendWait("r", fmt.Sprint("after", i), fmt.Sprint("a", attempt))
		if res.Code == string(protocol.CodeUnavailable) {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		if res.Seq == 0 {
			t.Fatalf("send after restart: %+v", res)
		}
		acked = append(acked, res.Seq)
		i++
	}
	for _, c := range []*wsClient{ca, cb} {
		c.WaitFor("all acked", func(envs []env) bool { return len(wstest.Messages(envs, "r")) >= len(acked) })
		ss := wstest.Seqs(c.Snapshot(), "r")
		checkOrdered(t, c.node, ss)
		if fmt.Sprint(ss) != fmt.Sprint(acked) {
			t.Fatalf("%s got %v; want %v (no 'during' message, nothing lost)", c.node, ss, acked)
		}
		for _, e := range c.Snapshot() {
			if e.Type() == "ack" && e.Str("ref") == "d1" {
				t.Fatal("the send made while NATS was down was acked")
			}
		}
	}
	// History survived the restart: a resume from the first join gets all.
	late := dial(t, b, "")
	j := late.JoinSince("r", &first)
	if rec, _ := j["recovered"].(bool); !rec {
		t.Fatalf("resume after restart: %v", j)
	}
	late.WaitFor("replay", func(envs []env) bool { return len(wstest.Messages(envs, "r")) == len(acked) })
}

// The backplane's metrics are registered without room labels: the only
// label is the repair cause, every value of it present from the start.
func TestMetricsRegistered(t *testing.T) {
	ns := startNATS(t)
	n := startNode(t, ns, "gw-a", nil)
	c := dial(t, n, "")
	c.JoinSince("m", nil)
	c.SendWait("m", "x", "1")
	mfs, err := n.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names, causes []string
	for _, mf := range mfs {
		names = append(names, mf.GetName())
		if !strings.HasPrefix(mf.GetName(), "chatgate_backplane_") {
			continue // the gateway's own families share the registry
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if mf.GetName() == "chatgate_backplane_repairs_total" && l.GetName() == "cause" {
					causes = append(causes, l.GetValue())
					continue
				}
				t.Errorf("%s has label %s", mf.GetName(), l.GetName())
			}
		}
	}
	sort.Strings(causes)
	if got, want := strings.Join(causes, " "), "ack dropped gap hint resync"; got != want {
		t.Errorf("chatgate_backplane_repairs_total causes %q; want %q", got, want)
	}
	sort.Strings(names)
	for _, want := range []string{
		"chatgate_backplane_up", "chatgate_backplane_publish_duration_seconds", "chatgate_backplane_publish_errors_total",
		"chatgate_backplane_presence_sync_age_seconds", "chatgate_backplane_delivery_gaps_total", "chatgate_backplane_live_gaps_total",
		"chatgate_backplane_live_drops_total", "chatgate_backplane_repairs_total", "chatgate_backplane_repaired_messages_total",
		"chatgate_backplane_repair_duration_seconds", "chatgate_backplane_repairing_rooms", "chatgate_backplane_rooms",
	} {
		if !slices.Contains(names, want) {
			t.Errorf("metric %s missing; have %s", want, strings.Join(names, " "))
		}
	}
}

// A client resumes on a replica that has not delivered up to its since:
// one that set up the room before other rooms moved the stream on (a quiet
// room), as here, or one whose consumer lags the replica the client left.
// The stream has handed that since out, so the client holds every message
// of the room up to it: joined.seq is since, recovered true, nothing is
// replayed, and the room's next message arrives once.
func TestResumeOnReplicaBehind(t *testing.T) {
	ns := startNATS(t)
	a := newBackplane(t, testBackplaneConfig(t, ns, "a"))
	b := newBackplane(t, testBackplaneConfig(t, ns, "b"))
	ctx := ctxT(t)

	early := &fakeSub{user: protocol.User{ID: "u_early", Name: "early"}}
	mustJoin(t, b, early, "quiet", nil) // b's position: the stream's last seq now
	noise := mustJoin(t, a, &fakeSub{user: protocol.User{ID: "u_noise", Name: "noise"}}, "noise", nil)
	for i := 0; i < 3; i++ {
		if _, perr := noise.Publish(ctx, "x", fmt.Sprint(i)); perr != nil {
			t.Fatal(perr)
		}
	}
	left := &fakeSub{user: protocol.User{ID: "u_mover", Name: "mover"}}
	ml := mustJoin(t, a, left, "quiet", nil)
	since := left.Snapshot()[0].U64("seq") // a's position: after the noise
	ml.Leave()
	if bPos := early.Snapshot()[0].U64("seq"); since <= bPos {
		t.Fatalf("a's joined.seq %d is not ahead of b's %d; the test needs it ahead", since, bPos)
	}

	back := &fakeSub{user: protocol.User{ID: "u_mover", Name: "mover"}}
	mb := mustJoin(t, b, back, "quiet", &since)
	j := back.Snapshot()[0]
	if rec, ok := j["recovered"].(bool); j.Type() != "joined" || !ok || !rec || j.U64("seq") != since {
		t.Fatalf("resume on the replica behind: %v; want joined.seq %d, recovered true", j, since)
	}
	res, perr := mb.Publish(ctx, "after", "r1")
	if perr != nil {
		t.Fatal(perr)
	}
	waitUntil(t, "the next message", func() bool { return len(wstest.Seqs(back.Snapshot(), "quiet")) >= 1 })
	if got := wstest.Seqs(back.Snapshot(), "quiet"); len(got) != 1 || got[0] != res.Seq {
		t.Fatalf("after the resume got %v; want exactly [%d]", got, res.Seq)
	}

	// A since the stream never handed out is still not recovered.
	bogus := since + 1_000_000
	odd := &fakeSub{user: protocol.User{ID: "u_odd", Name: "odd"}}
	mustJoin(t, b, odd, "quiet", &bogus)
	if j := odd.Snapshot()[0]; j["recovered"] != false || j.U64("seq") >= bogus {
		t.Fatalf("join with a since beyond the stream: %v; want recovered false below it", j)
	}
}
