package gateway

import (
	"fmt"
	"testing"
)

func TestFanoutOrderAndAck(t *testing.T) {
	s := newTestServer(t, nil)
	const members, perSender = 4, 50
	clients := make([]*wsClient, members)
	var base int64 // the room's seq before the first message
	for i := range clients {
		clients[i] = s.dial(t, query("name", fmt.Sprintf("user%d", i)))
		base = num(t, clients[i].Join("lobby"), "seq")
	}
	// Every member sends; each must see every message in seq order with no
	// gap, its own included, and get an ack per ref.
	for i, c := range clients {
		for j := 0; j < perSender; j++ {
			c.Send(map[string]any{"type": "send", "room": "lobby", "text": fmt.Sprintf("m%d-%d", i, j), "ref": fmt.Sprintf("r%d", j)})
		}
	}
	total := members * perSender
	for i, c := range clients {
		last := base
		acks := 0
		seen := 0
		for seen < total || acks < perSender {
			env := c.Next()
			switch env["type"] {
			case "message":
				seq := num(t, env, "seq")
				if seq != last+1 {
					t.Fatalf("client %d: seq %d after %d", i, seq, last)
				}
				last = seq
				seen++
			case "ack":
				if want := fmt.Sprintf("r%d", acks); env["ref"] != want {
					t.Fatalf("client %d: ack ref %v; want %s", i, env["ref"], want)
				}
				acks++
			case "presence":
			default:
				t.Fatalf("client %d: unexpected %v", i, env)
			}
		}
	}
}
