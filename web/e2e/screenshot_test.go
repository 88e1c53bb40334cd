package e2e

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
)

// TestScreenshot stages a small conversation and saves screenshots of it
// (light, dark and phone-sized) as test artifacts. With
// CHATGATE_UPDATE_SCREENSHOT=1 the light one also replaces
// docs/screenshot.png, which the README shows. Every page in this suite is
// checked for console errors, exceptions and CSP violations when its test
// ends; this test adds a check that the page's own stylesheet and script
// loaded (nothing was blocked) and that the themes differ.
func TestScreenshot(t *testing.T) {
	g := startGateway(t, testConfig("gw-shot"), "gateway.log", nil)
	alice := newPage(t, "alice")
	bob := newPage(t, "bob")
	carol := newPage(t, "carol")

	alice.do("loading the page", chromedp.EmulateViewport(1280, 800), chromedp.Navigate(g.url()), chromedp.WaitVisible(chromedp.ID("welcome-name")))
	alice.screenshot(artifactDir(t), "welcome.png")
	alice.welcome("Alice Chen", "lobby")
	bob.open(g, "Bob Martin", "lobby")
	carol.open(g, "Carol Diaz", "lobby")
	alice.waitFor("everyone online", `document.getElementById('online-count').textContent === '3'`)

	script := []struct {
		who  *pg
		text string
	}{
		{bob, "Morning all! Is the staging deploy finished?"},
		{carol, "Yes — it went out at 9:12. Release notes are at https://example.com/releases/2.4"},
		{carol, "Two migrations ran; both were quick."},
		{alice, "Great, thanks Carol. The dashboards look healthy so far."},
		{bob, "Nice. I'll start the load test after standup.\n@Alice Chen shout if you see the p99 move."},
		{alice, "Will do!"},
	}
	for _, s := range script {
		s.who.say(s.text)
		alice.waitFor("message shown", hasText("lobby", s.text))
	}
	// A second and a third room, one with unread messages.
	for _, p := range []*pg{alice, bob} {
		p.do("joining #design", chromedp.SendKeys(chromedp.ID("join-room"), "design\r"))
		p.waitJoined("design")
	}
	alice.do("joining #random", chromedp.SendKeys(chromedp.ID("join-room"), "random\r"))
	alice.waitJoined("random")
	alice.do("back to #lobby", chromedp.Click(chromedp.CSS(`.room-btn[data-room=lobby]`)))
	bob.say("New mockups for the settings page are up for review.")
	bob.say("Feedback welcome before Friday!")
	alice.waitFor("2 unread in #design", `document.querySelector('.room-btn[data-room=design] .badge').textContent === '2'`)
	// A draft in the composer shows the length counter.
	alice.do("typing a draft", chromedp.Focus(chromedp.ID("composer-text")), chromedp.KeyEvent("Sounds good, I'll watch the graphs"))
	alice.waitFor("counter shown", `document.getElementById('composer-count').textContent !== ''`)
	alice.do("moving the pointer away", chromedp.MouseEvent("mouseMoved", 5, 790))

	if n := eval[int](alice, `document.querySelectorAll('.pane[data-room=lobby] .mention.me').length`); n != 1 {
		t.Errorf("Alice sees %d mentions of herself, want 1", n)
	}
	if ok := eval[bool](alice, `getComputedStyle(document.body).overflow === 'hidden' && !!document.querySelector('.room-btn')`); !ok {
		t.Fatal("the stylesheet did not apply")
	}

	// Reduced motion turns transitions off, so that no screenshot catches
	// a colour or a drawer halfway.
	media := func(scheme string) {
		call(alice, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{Features: []*emulation.MediaFeature{
			{Name: "prefers-color-scheme", Value: scheme},
			{Name: "prefers-reduced-motion", Value: "reduce"},
		}})
		alice.waitFor(scheme+" theme applied", `matchMedia('(prefers-color-scheme: `+scheme+`)').matches && matchMedia('(prefers-reduced-motion: reduce)').matches`)
	}
	media("light")
	dir := artifactDir(t)
	light := alice.screenshot(dir, "chat-light.png")
	bgLight := eval[string](alice, `getComputedStyle(document.querySelector('.main')).backgroundColor`)

	media("dark")
	alice.screenshot(dir, "chat-dark.png")
	if bgDark := eval[string](alice, `getComputedStyle(document.querySelector('.main')).backgroundColor`); bgDark == bgLight {
		t.Errorf("dark theme has the same background as light (%s)", bgLight)
	}

	// A small laptop or tablet: the people list becomes a drawer.
	alice.do("tablet viewport", chromedp.EmulateViewport(900, 700))
	alice.waitFor("people list collapsed", `getComputedStyle(document.getElementById('members')).visibility === 'hidden'`)
	alice.do("opening the people list", chromedp.Click(chromedp.ID("toggle-members")))
	alice.waitFor("people list open", `getComputedStyle(document.getElementById('members')).visibility === 'visible'`)
	alice.screenshot(dir, "chat-tablet-dark.png")
	alice.do("closing the people list", chromedp.Click(chromedp.ID("close-members")))
	alice.waitFor("people list closed", `document.getElementById('toggle-members').getAttribute('aria-expanded') === 'false'`)

	// A phone: the room list becomes a drawer, the status stays visible.
	alice.do("phone viewport", chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile))
	alice.waitFor("room list collapsed on a phone", `getComputedStyle(document.getElementById('sidebar')).visibility === 'hidden'`)
	if !eval[bool](alice, `(() => { const r = document.getElementById('status').getBoundingClientRect(); return r.width > 0 && r.right <= innerWidth; })()`) {
		t.Error("connection status not visible on a phone")
	}
	if w := eval[int](alice, `document.documentElement.scrollWidth`); w > 390 {
		t.Errorf("page is %dpx wide on a 390px phone: it scrolls sideways", w)
	}
	alice.screenshot(dir, "chat-phone-dark.png")
	media("light")
	alice.do("opening the room drawer", chromedp.Click(chromedp.ID("open-rooms")))
	alice.waitFor("drawer open", `getComputedStyle(document.getElementById('sidebar')).visibility === 'visible' && document.getElementById('open-rooms').getAttribute('aria-expanded') === 'true'`)
	alice.screenshot(dir, "chat-phone-rooms.png")
	alice.do("closing the drawer with Escape", chromedp.KeyEvent("\x1b"))
	alice.waitFor("drawer closed", `document.getElementById('open-rooms').getAttribute('aria-expanded') === 'false'`)

	if os.Getenv("CHATGATE_UPDATE_SCREENSHOT") == "1" {
		dst := filepath.Join("..", "..", "docs", "screenshot.png")
		if err := os.WriteFile(dst, light, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("updated %s", dst)
	}
}
