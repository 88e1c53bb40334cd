package e2e

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/chatgate/chatgate/gateway"
	"github.com/chatgate/chatgate/gateway/hub"
)

// recordMembers makes the page keep every member list it shows (names, in
// order) in window.__memberLog from now on.
func recordMembers(p *pg) {
	p.t.Helper()
	p.do("recording the member list", chromedp.Evaluate[chromedp.Void](`(() => {
	  window.__memberLog = [];
	  const list = document.getElementById('member-list');
	  const rec = () => window.__memberLog.push([...list.querySelectorAll('.member-name')].map((n) => n.textContent));
	  rec();
	  new MutationObserver(rec).observe(list, {childList: true, subtree: true, characterData: true});
	})()`))
}

// meAvatar is the class of the page's own avatar (its colour comes from
// the user id).
func meAvatar(p *pg) string {
	p.t.Helper()
	return eval[string](p, `document.querySelector('#me-avatar .avatar').className`)
}

// A guest is the same person after the gateway under them drains and a
// replacement takes over: the page offers the credential its welcome
// carried, and gets the same user id, name and colour back; Bob, watching
// from a gateway that stays up, sees Alice's messages under one author and
// never sees her leave the member list, nor appear twice. A second tab of
// Alice's browser is someone else.
func TestGuestKeepsIdentityAcrossDrain(t *testing.T) {
	shared := hub.New(hub.Config{PresenceInterval: 50 * time.Millisecond})
	t.Cleanup(shared.Close)
	keyFile := filepath.Join(t.TempDir(), "guest.key")
	if err := os.WriteFile(keyFile, []byte("e2e-guest-key-0123456789abcdefghijklmnopqrstuvwxyz\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	config := func(node string) gateway.Config {
		cfg := testConfig(node)
		cfg.GuestKeyFile = keyFile
		cfg.PresenceGrace = 5 * time.Second
		return cfg
	}
	stay := startGatewayWith(t, config("gw-stay"), "gateway-stay.log", gateway.Options{Broker: shared, SharedBroker: true})
	g1 := startGatewayWith(t, config("gw-1"), "gateway-1.log", gateway.Options{Broker: shared, SharedBroker: true})

	bob := newPage(t, "bob")
	alice := newPage(t, "alice")
	alice.tolerateNetworkErrors() // the browser logs the refused connections while gw-2 starts
	bob.open(stay, "Bob", "ops")
	alice.open(g1, "Alice", "ops")
	bob.waitFor("Alice online", memberShown("Alice"))
	recordMembers(bob)
	colour := meAvatar(alice)
	alice.say("before the drain")
	bob.waitFor("Alice's first message", hasText("ops", "before the drain"))

	g1.drain()
	cfg2 := config("gw-2")
	cfg2.Addr = g1.addr // the page reconnects to the address it came from
	startGatewayWith(t, cfg2, "gateway-2.log", gateway.Options{Broker: shared, SharedBroker: true})
	alice.waitFor("reconnected", `window.__statusLog.some((s) => s.startsWith('reconnecting')) && document.getElementById('status').dataset.state === 'connected'`)
	alice.waitJoined("ops")
	alice.say("after the drain")
	bob.waitFor("Alice's second message", hasText("ops", "after the drain"))
	g1.waitStopped(t) // its grace for Alice's old connection is over too

	if got := meName(alice); got != "Alice" {
		t.Errorf("after the drain Alice's page calls her %q", got)
	}
	if got := meAvatar(alice); got != colour {
		t.Errorf("Alice's colour changed from %q to %q", colour, got)
	}
	got := transcript(bob, "ops")
	if len(got) != 2 || got[0].Author != got[1].Author || got[0].Name != "Alice" {
		t.Fatalf("Bob sees %+v; want Alice's two messages by one user id", got)
	}
	if n := eval[int](bob, `document.querySelectorAll('.pane[data-room=ops] .log > li.msg.head').length`); n != 1 {
		t.Errorf("Bob sees %d message groups; want Alice's two messages in one", n)
	}
	for i, names := range eval[[][]string](bob, `window.__memberLog`) {
		if n := countName(names, "Alice"); n != 1 {
			t.Fatalf("Bob's member list %d was %q: Alice listed %d times (she must stay, once)", i, names, n)
		}
	}

	// A second tab of Alice's browser is another person.
	tab2 := alice.newTab("alice's second tab")
	if v := welcomeShown(tab2, g1); v != "" {
		t.Errorf("the second tab suggests %q", v)
	}
	tab2.do("pressing Enter", chromedp.Focus(chromedp.ID("welcome-name")), pressEnter(false))
	tab2.waitJoined("ops")
	tab2.say("from the second tab")
	bob.waitFor("the second tab's message", hasText("ops", "from the second tab"))
	got = transcript(bob, "ops")
	if last := got[len(got)-1]; last.Author == got[0].Author || last.Name == "Alice" {
		t.Errorf("the second tab posted as %+v; want a different guest than Alice (%s)", last, got[0].Author)
	}
	if meAvatar(tab2) == colour && meName(tab2) == "Alice" {
		t.Error("the second tab looks like Alice")
	}
}

func countName(names []string, name string) int {
	return len(slices.DeleteFunc(slices.Clone(names), func(n string) bool { return n != name }))
}
