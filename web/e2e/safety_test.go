package e2e

import (
	"slices"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// HTML and script in a display name and in messages show up as the literal
// text that was typed, create no elements and run nothing. Each payload
// would set window.__pwned if it ever ran; the CSP would block most of
// them anyway, so the test also checks that no element was created at all
// (and the harness fails on any CSP violation report).
func TestXSSPayloadsStayText(t *testing.T) {
	g := startGateway(t, testConfig("gw-xss"), "gateway.log", nil)
	const evilName = `<img src=x onerror=__pwned=1>`
	payloads := []string{
		`<script>window.__pwned=2</script>`,
		`<img src=x onerror="window.__pwned=3">`,
		`"><svg onload=window.__pwned=4></svg>`,
		`javascript:window.__pwned=5`,
		`https://example.com/"><img src=x onerror=window.__pwned=6>`,
		`<a href="javascript:window.__pwned=7">click me</a> &amp; &lt;b&gt;`,
		`<iframe srcdoc="<script>parent.__pwned=8</script>"></iframe>`,
	}

	victim := newPage(t, "victim")
	mallory := newPage(t, "mallory")
	// A hostile room name in the link is not a room: the form keeps its default.
	victim.do("loading a hostile link", chromedp.Navigate(g.url()+`#%3Cimg%20src%3Dx%20onerror%3D__pwned%3D9%3E`), chromedp.WaitVisible(chromedp.ID("welcome-name")))
	if v := eval[string](victim, `document.getElementById('welcome-room').value`); v != "lobby" {
		t.Errorf("room field = %q after a hostile #fragment, want lobby", v)
	}
	victim.do("joining", chromedp.SendKeys(chromedp.ID("welcome-name"), "Victor"), chromedp.SendKeys(chromedp.ID("welcome-room"), "\r"))
	victim.waitJoined("lobby")
	mallory.open(g, evilName, "lobby")

	victim.waitFor("the hostile name in the member list, as text", memberShown(evilName))
	for _, p := range payloads {
		mallory.say(p)
	}
	for _, p := range payloads {
		victim.waitFor("payload shown as text: "+p, hasText("lobby", p))
	}
	mallory.waitFor("all confirmed", `!document.querySelector('.outbox > li')`)

	for _, p := range []*pg{victim, mallory} {
		if pwned := eval[bool](p, `typeof window.__pwned !== 'undefined'`); pwned {
			t.Errorf("%s: a payload ran (window.__pwned = %v)", p.name, eval[any](p, `window.__pwned`))
		}
		if n := eval[int](p, `document.querySelectorAll('.pane img, .pane script, .pane iframe, .pane svg, #member-list img, #member-list svg, #me-name *').length`); n != 0 {
			t.Errorf("%s: %d elements were created from user text", p.name, n)
		}
		got := transcript(p, "lobby")
		if !slices.Equal(texts(got), payloads) {
			t.Errorf("%s sees %q, want the payloads verbatim", p.name, texts(got))
		}
		for _, m := range got {
			if m.Name != evilName {
				t.Errorf("%s: author shown as %q, want %q", p.name, m.Name, evilName)
			}
		}
	}
	// The only link is the http(s) URL, cut where the markup starts.
	links := eval[[]string](victim, `[...document.querySelectorAll('.pane .text a')].map((a) => a.href + ' ' + a.textContent + ' ' + a.rel)`)
	if len(links) != 1 || !strings.HasPrefix(links[0], "https://example.com/ https://example.com/ noopener") {
		t.Errorf("links = %q, want just https://example.com/ with rel=noopener", links)
	}
	if name := eval[string](mallory, `document.getElementById('me-name').textContent`); name != evilName {
		t.Errorf("mallory's own name shows as %q", name)
	}
}

// Bidi controls and invisible characters cannot spoof anyone. A display
// name with a right-to-left override is refused by the gateway (the user
// gets a guest name), and every user-supplied string the page shows (names,
// message texts, room names) sits in an element of its own that the
// browser bidi-isolates, so a control inside a message reorders nothing
// around it, and a right-to-left text is laid out right to left on its own.
func TestBidiControlsIsolated(t *testing.T) {
	g := startGateway(t, testConfig("gw-bidi"), "gateway.log", nil)
	const spoof = "\u202Egnp.exe Admin" // renders as "nimdA exe.png"
	says := []string{
		"\u202Egnp.exe",            // an override never closed
		"abc \u2067def",            // an isolate never closed
		"\u05E9\u05DC\u05D5\u05DD", // Hebrew: right to left
		"plain",
	}

	victim := newPage(t, "victim")
	victim.open(g, "Victor", "lobby")
	mallory := newPage(t, "mallory")
	mallory.do("loading the page", chromedp.Navigate(g.url()), chromedp.WaitVisible(chromedp.ID("welcome-name")))
	mallory.do("entering a name with a bidi override",
		chromedp.Focus(chromedp.ID("welcome-name")), insertText(spoof),
		chromedp.Clear(chromedp.ID("welcome-room")), chromedp.SendKeys(chromedp.ID("welcome-room"), "lobby\r"))
	mallory.waitJoined("lobby")

	// The gateway replaced the name.
	mallory.waitFor("a guest name", `document.getElementById('me-name').textContent.startsWith('guest-')`)
	guestName := eval[string](mallory, `document.getElementById('me-name').textContent`)
	victim.waitFor("mallory in the member list", memberShown(guestName))
	for _, n := range members(victim) {
		if strings.ContainsAny(n, "\u202E\u202D\u2066\u2067\u2068\u200B\u200D") {
			t.Errorf("member list shows %q", n)
		}
	}

	for _, m := range says {
		mallory.say(m)
	}
	for _, m := range says {
		victim.waitFor("message shown: "+m, hasText("lobby", m))
	}
	for _, p := range []*pg{victim, mallory} {
		// Every element that holds a user string holds only that string
		// and is isolated.
		type shown struct {
			What, Text, Bidi, Dir string
		}
		got := eval[[]shown](p, `(() => {
		  const out = [];
		  const add = (what, n) => n && out.push({what, text: n.textContent, bidi: getComputedStyle(n).unicodeBidi, dir: getComputedStyle(n).direction});
		  document.querySelectorAll('.pane[data-room=lobby] .log .text').forEach((n) => add('text', n));
		  document.querySelectorAll('.pane[data-room=lobby] .log .author').forEach((n) => add('author', n));
		  document.querySelectorAll('#member-list .member-name').forEach((n) => add('member', n));
		  document.querySelectorAll('.room-btn .room-name').forEach((n) => add('room', n));
		  add('me', document.getElementById('me-name'));
		  add('title', document.querySelector('#room-title bdi'));
		  add('intro', document.querySelector('.pane[data-room=lobby] .intro-title bdi'));
		  return out;
		})()`)
		seen := map[string]bool{}
		for _, s := range got {
			seen[s.What] = true
			if s.Bidi != "isolate" {
				t.Errorf("%s: %s %q is not bidi-isolated (unicode-bidi: %s)", p.name, s.What, s.Text, s.Bidi)
			}
			if s.What == "text" {
				// dir=auto: the first strong character decides (an
				// override is not one, so "g" decides the first text).
				want := "ltr"
				if s.Text == says[2] {
					want = "rtl"
				}
				if s.Dir != want {
					t.Errorf("%s: text %q laid out %s, want %s", p.name, s.Text, s.Dir, want)
				}
			}
		}
		for _, w := range []string{"text", "author", "member", "room", "me", "title", "intro"} {
			if !seen[w] {
				t.Errorf("%s: no %s element found", p.name, w)
			}
		}
		if got := texts(transcript(p, "lobby")); !slices.Equal(got, says) {
			t.Errorf("%s sees %q, want the texts verbatim", p.name, got)
		}
	}
	victim.screenshot(artifactDir(t), "bidi.png")
}
