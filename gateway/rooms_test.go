package gateway

import (
	"fmt"
	"testing"
	"time"

	"github.com/chatgate/chatgate/gateway/hub"
)

// TestJoinSinceSeam joins with since while another member keeps sending:
// the joiner must see joined, then the replay, then live messages, with
// every seq after since exactly once and in order.
func TestJoinSinceSeam(t *testing.T) {
	s := newHistoryServer(t, 1000)
	sender := s.dial(t, query("name", "sender", "room", "r"))
	base := num(t, sender.Expect("joined"), "seq") // the room's seq before any message
	senderR := startReader(t, sender)
	const total, since = 300, 40
	for i := 0; i < since; i++ {
		sender.Send(map[string]any{"type": "send", "room": "r", "text": fmt.Sprint(i)})
	}
	senderR.waitSeen(since)

	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := since; i < total; i++ {
			b := fmt.Appendf(nil, `{"type":"send","room":"r","text":"%d"}`, i)
			if err := sender.Conn().WriteMessage(1, b); err != nil {
				return
			}
		}
	}()
	joiner := s.dial(t, "")
	joiner.Send(map[string]any{"type": "join", "room": "r", "since": base + since})
	j := joiner.Expect("joined")
	if j["recovered"] != true {
		t.Fatalf("joined %v; want recovered:true", j)
	}
	joinSeq := num(t, j, "seq") - base
	if joinSeq < since {
		t.Fatalf("joined seq %d < since %d", joinSeq, since)
	}
	next := int64(since + 1)
	for next <= total {
		env := joiner.Expect("message")
		if seq := num(t, env, "seq") - base; seq != next {
			t.Fatalf("seq %d; want %d (joined at %d)", seq, next, joinSeq)
		}
		if want := fmt.Sprint(next - 1); env["text"] != want {
			t.Fatalf("seq %d text %v; want %s", next, env["text"], want)
		}
		next++
	}
	<-done
	senderR.waitSeen(total)
	senderR.stop()
}

func TestJoinSinceBeyondHistory(t *testing.T) {
	s := newHistoryServer(t, 5)
	a := s.dial(t, query("room", "r"))
	base := num(t, a.Expect("joined"), "seq")
	for i := 0; i < 12; i++ {
		a.Send(map[string]any{"type": "send", "room": "r", "text": "x"})
		a.Expect("message")
		a.Expect("ack")
	}
	b := s.dial(t, "")
	b.Send(map[string]any{"type": "join", "room": "r", "since": base + 2})
	j := b.Expect("joined")
	if j["recovered"] != false || num(t, j, "seq") != base+12 {
		t.Fatalf("joined %v; want seq 12, recovered false", j)
	}
	for want := int64(8); want <= 12; want++ { // the 5 the ring holds
		if got := num(t, b.Expect("message"), "seq") - base; got != want {
			t.Fatalf("replayed seq %d; want %d", got, want)
		}
	}
}

func TestPresence(t *testing.T) {
	t.Run("join and leave are announced with member lists", func(t *testing.T) {
		s := newTestServer(t, nil)
		a := s.dial(t, query("name", "alice", "room", "r"))
		ja := a.Expect("joined")
		if num(t, ja, "online") != 1 || len(ja["members"].([]any)) != 1 {
			t.Fatalf("first joined %v", ja)
		}
		b := s.dial(t, query("name", "bob", "room", "r"))
		jb := b.Expect("joined")
		if num(t, jb, "online") != 2 || len(jb["members"].([]any)) != 2 {
			t.Fatalf("second joined %v", jb)
		}
		// alice's own join may share bob's frame (same interval).
		p := nextPresence(t, a)
		if !hasUser(p["joined"], "bob") || hasUser(p["left"], "bob") || num(t, p, "online") != 2 {
			t.Fatalf("presence %v; want bob joined, online 2", p)
		}
		b.Send(map[string]any{"type": "leave", "room": "r"})
		b.Expect("left")
		p = nextPresence(t, a)
		if !hasUser(p["left"], "bob") || hasUser(p["joined"], "bob") || num(t, p, "online") != 1 {
			t.Fatalf("presence %v; want bob left, online 1", p)
		}
	})
	t.Run("count-only above presence-max-members", func(t *testing.T) {
		obs := newRecObserver()
		h := hub.New(hub.Config{PresenceInterval: 20 * time.Millisecond, PresenceMaxMembers: 2})
		t.Cleanup(h.Close)
		s := startTestServer(t, testConfig(), Options{Observer: obs, Broker: h}, obs)
		a := s.dial(t, query("room", "r"))
		a.Expect("joined")
		b := s.dial(t, query("room", "r"))
		b.Expect("joined")
		c := s.dial(t, query("room", "r"))
		jc := c.Expect("joined")
		if _, has := jc["members"]; has || num(t, jc, "online") != 3 {
			t.Fatalf("joined %v; want online 3 and no members", jc)
		}
		for {
			p := nextPresence(t, a)
			_, hasJoined := p["joined"]
			if num(t, p, "online") == 3 {
				if hasJoined {
					t.Fatalf("presence %v carries a list above the limit", p)
				}
				break
			}
		}
	})
}

func nextPresence(t *testing.T, c *wsClient) map[string]any {
	t.Helper()
	for {
		env := c.Next()
		if env["type"] == "presence" {
			return env
		}
	}
}

func hasUser(list any, name string) bool {
	users, _ := list.([]any)
	for _, u := range users {
		if m, ok := u.(map[string]any); ok && m["name"] == name {
			return true
		}
	}
	return false
}
