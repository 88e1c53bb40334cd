package hub

import (
	"testing"

	"github.com/chatgate/chatgate/gateway/broker"
	"github.com/chatgate/chatgate/gateway/broker/brokertest"
)

// TestBrokerContract holds the in-process hub to the broker contract.
func TestBrokerContract(t *testing.T) {
	brokertest.Run(t, brokertest.Options{
		New: func(t *testing.T, s broker.Settings) []broker.Broker {
			var cfg Config
			cfg.SetRooms(s)
			h := New(cfg)
			t.Cleanup(h.Close)
			return []broker.Broker{h}
		},
		Close: func(b broker.Broker) { b.(*Hub).Close() },
	})
}
