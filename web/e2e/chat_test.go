package e2e

import (
	"slices"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// Two people in separate browser contexts join the same room, see each
// other in the member list, chat both ways with Enter (and a Shift+Enter
// line break), get unread counts for a room they are not looking at, and
// one sees the other go when they leave.
func TestTwoPeopleChat(t *testing.T) {
	g := startGateway(t, testConfig("gw-chat"), "gateway.log", nil)
	checkServes(t, g)
	alice := newPage(t, "alice")
	bob := newPage(t, "bob")

	alice.open(g, "Alice", "lobby")
	bob.open(g, "Bob", "lobby")

	alice.waitFor("Bob in Alice's member list", memberShown("Bob"))
	bob.waitFor("Alice in Bob's member list", memberShown("Alice"))
	alice.waitFor("online count 2", `document.getElementById('online-count').textContent === '2'`)
	if got := members(alice); !slices.Equal(got, []string{"Alice", "Bob"}) {
		t.Errorf("Alice's member list = %q, want [Alice Bob]", got)
	}

	alice.say("Hi Bob! 👋")
	bob.waitFor("Alice's message at Bob", hasText("lobby", "Hi Bob! 👋"))
	bob.say("Hello Alice")
	alice.waitFor("Bob's reply at Alice", hasText("lobby", "Hello Alice"))

	// Shift+Enter is a line break, Enter sends.
	bob.do("typing two lines",
		chromedp.Focus(chromedp.ID("composer-text")),
		chromedp.KeyEvent("first line"),
		pressEnter(true),
		chromedp.KeyEvent("second line"),
		pressEnter(false),
	)
	alice.waitFor("the two-line message", hasText("lobby", "first line\nsecond line"))

	want := []string{"Hi Bob! 👋", "Hello Alice", "first line\nsecond line"}
	for _, p := range []*pg{alice, bob} {
		p.waitFor("no message left pending", `!document.querySelector('.pane[data-room=lobby] .outbox > li')`)
		got := transcript(p, "lobby")
		if !slices.Equal(texts(got), want) {
			t.Fatalf("%s sees %q, want %q", p.name, texts(got), want)
		}
		if got[0].Name != "Alice" || got[1].Name != "Bob" {
			t.Errorf("%s: authors %q, %q; want Alice, Bob", p.name, got[0].Name, got[1].Name)
		}
		for i := 1; i < len(got); i++ {
			if len(got[i].Seq) < len(got[i-1].Seq) || got[i].Seq <= got[i-1].Seq && len(got[i].Seq) == len(got[i-1].Seq) {
				t.Errorf("%s: seq not increasing: %s then %s", p.name, got[i-1].Seq, got[i].Seq)
			}
		}
	}
	// Bob's two messages in a row form one group: one header.
	if n := eval[int](alice, `document.querySelectorAll('.pane[data-room=lobby] .log > li.msg.head').length`); n != 2 {
		t.Errorf("Alice sees %d message groups, want 2 (Alice, then Bob twice)", n)
	}
	if v := eval[string](alice, `document.getElementById('composer-text').value`); v != "" {
		t.Errorf("composer not cleared after sending: %q", v)
	}

	// Unread counts: Alice joins a second room and looks at it; Bob writes
	// in the lobby; the lobby shows 1 unread until Alice goes back.
	alice.do("joining #random", chromedp.SendKeys(chromedp.ID("join-room"), "random\r"))
	alice.waitJoined("random")
	alice.waitFor("#random active", `document.querySelector('.room-btn[aria-current=page]').dataset.room === 'random'`)
	bob.say("are you there?")
	alice.waitFor("unread badge 1 on #lobby", `(() => {
	  const b = document.querySelector('.room-btn[data-room=lobby] .badge');
	  return b && !b.hidden && b.textContent === '1';
	})()`)
	if title := eval[string](alice, `document.title`); !strings.HasPrefix(title, "(1) ") {
		t.Errorf("title = %q, want an unread count", title)
	}
	alice.do("switching back to #lobby", chromedp.Click(chromedp.CSS(`.room-btn[data-room=lobby]`)))
	alice.waitFor("unread cleared", `document.querySelector('.room-btn[data-room=lobby] .badge').hidden`)

	// Bob leaves: Alice sees him go from the member list.
	bob.do("leaving #lobby", chromedp.Click(chromedp.ID("leave-room")))
	bob.waitFor("#lobby gone from Bob's room list", `!document.querySelector('.room-btn[data-room=lobby]')`)
	alice.waitFor("Bob gone from Alice's member list", `!(`+memberShown("Bob")+`)`)
	alice.waitFor("online count 1", `document.getElementById('online-count').textContent === '1'`)
	if got := members(alice); !slices.Equal(got, []string{"Alice"}) {
		t.Errorf("after Bob left, Alice's member list = %q, want [Alice]", got)
	}
}
