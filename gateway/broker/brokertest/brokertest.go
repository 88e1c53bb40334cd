// Package brokertest is the conformance suite of the broker contract
// (gateway/broker): one set of tests that every Broker implementation runs
// from its own tests with a factory:
//
//	func TestBrokerContract(t *testing.T) {
//		brokertest.Run(t, brokertest.Options{
//			New: func(t *testing.T, s broker.Settings) []broker.Broker { ... },
//			Close: func(b broker.Broker) { ... },
//		})
//	}
//
// It checks what a connection relies on whatever serves it: per-room
// ordering, the sender's own message and then its ack queued before
// Publish returns, the replay seam of a join with since, the recovered
// flag, presence convergence, leave, the room limits, closing while
// messages are being published and typing indicators; and the server API's
// side (broker.Operator): system messages in the room's one order, history,
// presence and the active rooms as members see them, bans that hold
// against racing joins, and disconnects that reach every replica. The
// suite spreads members over every broker New returns (replicas sharing
// rooms), so the cross-replica guarantees are checked too.
package brokertest

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/chatgate/chatgate/gateway/broker"
)

// Options describe the implementation under test.
type Options struct {
	// New builds the brokers for one test with these room settings: one
	// broker, or several replicas that serve the same rooms. Cleanup is
	// New's (t.Cleanup); the suite closes brokers only in the test of
	// closing during publish.
	New func(t *testing.T, s broker.Settings) []broker.Broker
	// Close shuts b down: joins afterwards fail with code unavailable. It
	// must be safe to call again (from New's cleanup).
	Close func(b broker.Broker)
	// Wait bounds every wait for a frame (default 10s).
	Wait time.Duration
}

// Run runs the suite: the members' side of the contract, then the server
// API's.
func Run(t *testing.T, o Options) {
	if o.New == nil || o.Close == nil {
		t.Fatal("brokertest: Options.New and Options.Close are required")
	}
	if o.Wait <= 0 {
		o.Wait = 10 * time.Second
	}
	for _, tc := range slices.Concat(memberCases, operatorCases) {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, &o) })
	}
}

type testCase struct {
	name string
	fn   func(t *testing.T, o *Options)
}

var (
	memberCases = []testCase{
		{"Ordering", testOrdering},
		{"AckAfterOwnDelivery", testAckAfterOwnDelivery},
		{"ReplaySeam", testReplaySeam},
		{"Recovered", testRecovered},
		{"Rejoin", testRejoin},
		{"PresenceConverges", testPresenceConverges},
		{"PresenceCountOnly", testPresenceCountOnly},
		{"Leave", testLeave},
		{"RoomLimits", testRoomLimits},
		{"CloseDuringPublish", testCloseDuringPublish},
		{"TypingRelayed", testTypingRelayed},
		{"TypingCoalesced", testTypingCoalesced},
		{"TypingCountOnly", testTypingCountOnly},
	}
	operatorCases = []testCase{
		{"SystemPublish", testSystemPublish},
		{"History", testHistory},
		{"HistoryRecovered", testHistoryRecovered},
		{"PresenceAndRooms", testPresenceAndRooms},
		{"Ban", testBan},
		{"Disconnect", testDisconnect},
	}
)

// settings are the suite's defaults: quick presence, a roomy history.
func settings() broker.Settings {
	return broker.Settings{
		History:            1000,
		MaxRooms:           1000,
		PresenceInterval:   20 * time.Millisecond,
		PresenceMaxMembers: 1000,
	}
}

func build(t *testing.T, o *Options, s broker.Settings) []broker.Broker {
	t.Helper()
	nodes := o.New(t, s)
	if len(nodes) == 0 {
		t.Fatal("brokertest: New returned no broker")
	}
	return nodes
}

func join(t testing.TB, b broker.Broker, s broker.Subscriber, room string, since *uint64) broker.Membership {
	t.Helper()
	m, perr := b.Join(s, room, since)
	if perr != nil {
		t.Fatalf("join %s as %s: %v", room, s.User().ID, perr)
	}
	return m
}

// publish publishes text and checks the contract at the moment Publish
// returns: the sender already holds its own message with the published seq
// and, after it, the ack with ref and that seq. It may run on any
// goroutine: it reports with t.Errorf, and a failed Publish ends the test
// once the goroutine that called Run sees it (mustPublish).
func publish(t testing.TB, m broker.Membership, s *sub, room, text, ref string) (broker.Published, bool) {
	t.Helper()
	p, perr := m.Publish(context.Background(), text, ref)
	if perr != nil {
		t.Errorf("publish %q as %s: %v", text, s.user.ID, perr)
		return p, false
	}
	if err := checkOwnDelivery(s.snapshot(), room, text, ref, p.Seq); err != nil {
		t.Errorf("when Publish returned to %s: %v", s.user.ID, err)
	}
	return p, true
}

// mustPublish is publish on the test's goroutine.
func mustPublish(t testing.TB, m broker.Membership, s *sub, room, text, ref string) broker.Published {
	t.Helper()
	p, ok := publish(t, m, s, room, text, ref)
	if !ok {
		t.FailNow()
	}
	return p
}

// checkOwnDelivery reports whether envs (what the sender holds) has the
// sender's message at seq and, after it, its ack.
func checkOwnDelivery(envs []env, room, text, ref string, seq uint64) error {
	msg := slices.IndexFunc(envs, func(e env) bool { return e.Type == "message" && e.Room == room && e.Seq == seq })
	ack := slices.IndexFunc(envs, func(e env) bool { return e.Type == "ack" && e.Room == room && e.Seq == seq })
	switch {
	case msg < 0:
		return fmt.Errorf("its message seq %d is not queued yet (ack at %d)", seq, ack)
	case envs[msg].Text != text:
		return fmt.Errorf("seq %d carries %q; it published %q", seq, envs[msg].Text, text)
	case ack < 0:
		return fmt.Errorf("the ack of seq %d is not queued yet", seq)
	case ack < msg:
		return fmt.Errorf("the ack of seq %d came before the message", seq)
	case envs[ack].Ref != ref:
		return fmt.Errorf("the ack of seq %d carries ref %q; want %q", seq, envs[ack].Ref, ref)
	}
	return nil
}

func ptr[T any](v T) *T { return &v }
