package e2e

import (
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// typingShown is a JS condition: the typing line is visible with text.
func typingShown(text string) string {
	return `(() => { const t = document.getElementById('typing'); return !t.hidden && t.textContent === ` + js(text) + `; })()`
}

const typingHidden = `document.getElementById('typing').hidden`

// Alice types without sending: Bob's page says "Alice is typing…" and the
// line goes away by itself a few seconds after she stops; Alice's own page
// never says it. When she types again and sends, Bob's line goes as the
// message arrives.
func TestTypingIndicator(t *testing.T) {
	g := startGateway(t, testConfig("gw-typing"), "gateway.log", nil)
	checkServes(t, g)
	alice := newPage(t, "alice")
	bob := newPage(t, "bob")
	alice.open(g, "Alice", "lobby")
	bob.open(g, "Bob", "lobby")
	bob.waitFor("Alice online", memberShown("Alice"))

	alice.do("typing without sending", chromedp.Focus(chromedp.ID("composer-text")), chromedp.KeyEvent("hel"))
	bob.waitFor("Alice is typing…", typingShown("Alice is typing…"))
	shown := time.Now()
	bob.screenshot(artifactDir(t), "typing.png")
	if !eval[bool](alice, typingHidden) {
		t.Errorf("Alice's own page shows %q", eval[string](alice, `document.getElementById('typing').textContent`))
	}
	bob.waitFor("the typing line to go away", typingHidden)
	if took := time.Since(shown); took < 4*time.Second {
		t.Errorf("the typing line went after %v; it should stay a few seconds after the last keystroke", took)
	}

	alice.do("typing again", chromedp.KeyEvent("lo"))
	bob.waitFor("Alice is typing… again", typingShown("Alice is typing…"))
	alice.do("sending", pressEnter(false))
	bob.waitFor("the message, and no typing line", hasText("lobby", "hello")+` && `+typingHidden)
}
