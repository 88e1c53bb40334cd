package gateway

import (
	"testing"

	"github.com/chatgate/chatgate/gateway/broker"
	"github.com/chatgate/chatgate/gateway/observe"
	"github.com/chatgate/chatgate/gateway/protocol"
)

// panickyBroker stands in for a broker with a bug.
type panickyBroker struct{}

func (panickyBroker) Join(broker.Subscriber, string, *uint64) (broker.Membership, *protocol.Error) {
	panic("broker bug")
}

func TestPanicClosesOnlyThatConnectionWith1011(t *testing.T) {
	s := newTestServer(t, nil)
	s.srv.broker = panickyBroker{}
	c := s.dial(t, "")
	c.Send(map[string]any{"type": "join", "room": "r"})
	reason := c.ExpectClose(protocol.CloseInternalError)
	if cr, ok := protocol.ParseCloseReason(reason); !ok || cr.R != "internal" {
		t.Fatalf("reason %q", reason)
	}
	if s.obs.disconnectCount(observe.DisconnectInternal) != 1 {
		t.Fatal("internal disconnect not counted")
	}
	// The server is still serving.
	s.dial(t, "")
}
