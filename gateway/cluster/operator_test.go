package cluster

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/chatgate/chatgate/gateway/protocol"
	"github.com/chatgate/chatgate/internal/wstest"
)

// The backplane's own side of the server API beyond the conformance suite:
// the standalone publisher of a replica that does not serve the room, and
// bans that reach a replica through the bucket.

// TestSystemPublishFromAReplicaNotServing: system messages published
// through a replica with no member in the room, while a member on another
// replica sends, are chained like members' sends: the members get every
// message once, in stream order, with no gap and no repair for a missing
// message.
func TestSystemPublishFromAReplicaNotServing(t *testing.T) {
	ns := startNATS(t)
	a, regA := registered(t, ns, "a", nil)
	b, _ := registered(t, ns, "b", nil)
	const room, each = "notices", 40
	watcher := &fakeSub{user: protocol.User{ID: "u_w", Name: "w"}}
	mustJoin(t, a, watcher, room, nil)
	sender := mustJoin(t, a, &fakeSub{user: protocol.User{ID: "u_s", Name: "s"}}, room, nil)
	if b.lookup(room) != nil {
		t.Fatal("b serves the room; the test needs it not to")
	}
	var mu sync.Mutex
	var want []uint64
	var wg sync.WaitGroup
	wg.Go(func() {
		for n := range each {
			p, perr := b.PublishSystem(ctxT(t), room, "Ops", fmt.Sprint("notice ", n))
			if perr != nil {
				t.Errorf("PublishSystem through b: %v", perr)
				return
			}
			mu.Lock()
			want = append(want, p.Seq)
			mu.Unlock()
		}
	})
	wg.Go(func() {
		for n := range each {
			p, perr := sender.Publish(ctxT(t), fmt.Sprint("member ", n), "")
			if perr != nil {
				t.Errorf("a member's Publish: %v", perr)
				return
			}
			mu.Lock()
			want = append(want, p.Seq)
			mu.Unlock()
		}
	})
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	slices.Sort(want)
	checkExactly(t, "the watcher on a", watcher, room, want)
	system := 0
	for _, e := range wstest.Messages(watcher.Snapshot(), room) {
		if e["system"] == true {
			system++
			if from, _ := e["from"].(map[string]any); from["id"] != protocol.SystemSenderID || from["name"] != "Ops" {
				t.Fatalf("a system message from %v", from)
			}
		}
	}
	if system != each {
		t.Fatalf("the watcher got %d system messages; want %d", system, each)
	}
	if b.lookup(room) != nil {
		t.Fatal("publishing made b serve the room")
	}
	for _, c := range []string{"gap", "ack", "hint"} {
		if got := counter(t, regA, "chatgate_backplane_repairs_total", "cause", c); got != 0 {
			t.Fatalf("a repaired %v times for cause %s; a chained system message needs none", got, c)
		}
	}
	if got := counter(t, regA, "chatgate_backplane_delivery_gaps_total"); got != 0 {
		t.Fatalf("delivery gaps %v", got)
	}
}

// TestBanReachesALaterReplica: a replica that starts after a ban learns it
// from the bucket and refuses the user's joins; a lift reaches it too.
func TestBanReachesALaterReplica(t *testing.T) {
	ns := startNATS(t)
	a, _ := registered(t, ns, "a", nil)
	waitUntil(t, "a's bans bucket", func() bool { return a.banBucket() != nil })
	if perr := a.Ban(ctxT(t), "lobby", "mallory", time.Hour); perr != nil {
		t.Fatalf("Ban: %v", perr)
	}
	b, _ := registered(t, ns, "b", nil)
	waitUntil(t, "b to refuse mallory", func() bool {
		_, perr := b.Join(&fakeSub{user: protocol.User{ID: "mallory"}}, "lobby", nil)
		return perr != nil && perr.Code == protocol.CodeForbidden
	})
	mustJoin(t, b, &fakeSub{user: protocol.User{ID: "alice"}}, "lobby", nil)
	if perr := a.Ban(ctxT(t), "lobby", "mallory", 0); perr != nil {
		t.Fatalf("lifting the ban: %v", perr)
	}
	waitUntil(t, "b to let mallory in", func() bool {
		_, perr := b.Join(&fakeSub{user: protocol.User{ID: "mallory"}}, "lobby", nil)
		return perr == nil
	})
}
