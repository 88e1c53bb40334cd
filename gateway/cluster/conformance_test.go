package cluster

import (
	"testing"

	"github.com/chatgate/chatgate/gateway/broker"
	"github.com/chatgate/chatgate/gateway/broker/brokertest"
)

// TestBrokerContractOperator holds the backplane to the server API's side
// of the broker contract (brokertest.RunOperator), with two replicas over
// an embedded NATS server: whichever replica an API call reaches, it holds
// for both. (The backplane queues a sender's ack after Publish returns,
// so the members' side of the suite waits for issue 15's follow-up.)
func TestBrokerContractOperator(t *testing.T) {
	brokertest.RunOperator(t, brokertest.Options{
		New: func(t *testing.T, s broker.Settings) []broker.Broker {
			ns := startNATS(t)
			var nodes []broker.Broker
			var bps []*Backplane
			for _, name := range []string{"a", "b"} {
				cfg := testBackplaneConfig(t, ns, name)
				cfg.History, cfg.MaxRooms = s.History, s.MaxRooms
				cfg.PresenceInterval, cfg.PresenceMaxMembers = s.PresenceInterval, s.PresenceMaxMembers
				bp := newBackplane(t, cfg)
				bps = append(bps, bp)
				nodes = append(nodes, bp)
			}
			waitUntil(t, "census", func() bool { return bps[0].peers() == 1 && bps[1].peers() == 1 })
			return nodes
		},
		Close: func(b broker.Broker) { _ = b.(*Backplane).Close() },
		Wait:  waitTimeout,
	})
}
