package gateway

import (
	"context"
	"testing"

	"github.com/chatgate/chatgate/gateway/broker"
	"github.com/chatgate/chatgate/gateway/protocol"
)

// heldBroker wraps a broker so that a test can hold a Publish while it
// is being handled: entered receives once Publish is called, and the
// publish goes on when release is closed.
type heldBroker struct {
	broker.Broker
	entered chan struct{}
	release chan struct{}
}

func (b *heldBroker) Join(sub broker.Subscriber, room string, since *uint64) (broker.Membership, *protocol.Error) {
	m, perr := b.Broker.Join(sub, room, since)
	if perr != nil {
		return nil, perr
	}
	return heldMembership{m, b}, nil
}

type heldMembership struct {
	broker.Membership
	b *heldBroker
}

func (m heldMembership) Publish(ctx context.Context, text, ref string) (broker.Published, *protocol.Error) {
	m.b.entered <- struct{}{}
	<-m.b.release
	return m.Membership.Publish(ctx, text, ref)
}

// TestGracefulCloseWaitsForTheRequestBeingHandled: a drain close asked for
// while a send is being handled comes after the send's message and ack:
// a client never sees 1001 without the ack of a send the gateway accepted.
func TestGracefulCloseWaitsForTheRequestBeingHandled(t *testing.T) {
	s := newTestServer(t, nil)
	held := &heldBroker{Broker: s.srv.broker, entered: make(chan struct{}), release: make(chan struct{})}
	s.srv.broker = held
	c := s.dial(t, query("room", "r"))
	c.Expect("joined")
	c.Send(map[string]any{"type": "send", "room": "r", "text": "last words", "ref": "r1"})
	<-held.entered
	// The drain closes the connection while the send is in Publish.
	s.srv.CloseClients(context.Background(), 0)
	close(held.release)
	if m := c.Expect("message"); m["text"] != "last words" {
		t.Fatalf("got %v; want the sender's message", m)
	}
	if a := c.Expect("ack"); a["ref"] != "r1" {
		t.Fatalf("got %v; want the ack of r1", a)
	}
	c.ExpectClose(protocol.CloseGoingAway)
}
