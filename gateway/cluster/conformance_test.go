package cluster

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatgate/chatgate/gateway/broker"
	"github.com/chatgate/chatgate/gateway/broker/brokertest"
	"github.com/chatgate/chatgate/internal/natstest"
)

// TestBrokerContract holds the cluster backplane to the whole broker
// contract, the members' side and the server API's (broker.Operator):
// two replicas over a fresh embedded NATS server per test, sharing rooms,
// so whichever replica a member or an API call reaches, it holds for both.
func TestBrokerContract(t *testing.T) {
	brokertest.Run(t, brokertest.Options{
		New: func(t *testing.T, s broker.Settings) []broker.Broker {
			ns := natstest.Start(t, "contract-nats")
			nodes := make([]broker.Broker, 2)
			bps := make([]*Backplane, 2)
			for i, name := range []string{"a", "b"} {
				cfg := Config{
					URL:           ns.URL(),
					NodeID:        name,
					Rooms:         s,
					Storage:       jetstream.MemoryStorage,
					Logger:        testLogger(t, name),
					PresenceSync:  200 * time.Millisecond,
					PresenceTTL:   2 * time.Second,
					ReconnectWait: 50 * time.Millisecond,
				}
				bps[i] = newBackplane(t, cfg)
				nodes[i] = bps[i]
			}
			// Each knows the other, so a replica that starts serving a room
			// waits for the other's members (see syncPresence), and an API
			// call gathers the other's answer (see gather).
			waitUntil(t, "the replicas to know each other", func() bool { return bps[0].peers() == 1 && bps[1].peers() == 1 })
			return nodes
		},
		Close: func(b broker.Broker) { _ = b.(*Backplane).Close() },
		Wait:  waitTimeout,
	})
}
