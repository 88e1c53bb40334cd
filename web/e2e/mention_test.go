package e2e

import (
	"slices"
	"testing"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// recordNotifications wraps the Notification API before the page runs, to
// record every notification shown and every permission request (with
// whether it came from a user gesture). The real API does the work.
const recordNotifications = `
window.__notes = [];
window.__asked = [];
if (window.Notification) {
  const N = window.Notification;
  const Recorded = class extends N {
    constructor(title, opts) {
      super(title, opts);
      window.__notes.push({title, body: (opts && opts.body) || '', hidden: document.hidden});
    }
  };
  Object.defineProperty(Recorded, 'permission', {get: () => N.permission});
  Recorded.requestPermission = (...args) => {
    window.__asked.push(navigator.userActivation ? navigator.userActivation.isActive : false);
    return N.requestPermission(...args);
  };
  window.Notification = Recorded;
}
`

type note struct {
	Title  string `json:"title"`
	Body   string `json:"body"`
	Hidden bool   `json:"hidden"`
}

func notes(p *pg) []note {
	p.t.Helper()
	return eval[[]note](p, `window.__notes`)
}

// setPermission sets the browser's answer for notifications on the page's
// origin, as a person would in the site's settings or at the prompt.
func setPermission(p *pg, g *gw, setting browser.PermissionSetting) {
	p.t.Helper()
	_, err := chromedp.CallBrowser(p.ctx, browser.SetPermission, browser.SetPermissionParams{
		Permission:       &browser.PermissionDescriptor{Name: "notifications"},
		Setting:          setting,
		Origin:           "http://" + g.addr,
		BrowserContextID: chromedp.FromContext(p.ctx).BrowserContextID,
	})
	if err != nil {
		p.t.Fatalf("%s: setting the notification permission: %v", p.name, err)
	}
}

// setHidden minimizes (or restores) the tab's window: the page is then
// hidden (document.hidden), as a tab in the background is.
func setHidden(p *pg, hidden bool) {
	p.t.Helper()
	w, err := chromedp.CallBrowser(p.ctx, browser.GetWindowForTarget, browser.GetWindowForTargetParams{TargetID: chromedp.FromContext(p.ctx).Target.TargetID})
	if err != nil {
		p.t.Fatalf("%s: %v", p.name, err)
	}
	st := browser.WindowStateNormal
	if hidden {
		st = browser.WindowStateMinimized
	}
	if _, err := chromedp.CallBrowser(p.ctx, browser.SetWindowBounds, browser.SetWindowBoundsParams{WindowID: w.WindowID, Bounds: &browser.Bounds{WindowState: st}}); err != nil {
		p.t.Fatalf("%s: %v", p.name, err)
	}
	p.waitFor("document.hidden", `document.hidden === `+map[bool]string{true: "true", false: "false"}[hidden])
}

// mentions returns the mention highlights in the room's log: the text of
// each, with "me:" in front of mentions of the user.
func mentionsShown(p *pg, room string) []string {
	p.t.Helper()
	return eval[[]string](p, `[...document.querySelectorAll('.pane[data-room=`+js(room)+`] .log .mention')].map((m) => (m.classList.contains('me') ? 'me:' : '') + m.textContent)`)
}

// @name mentions are highlighted, the user's own name differently (and
// its message too), for any member's name, in any letter case, but not
// inside an e-mail address. Browser notifications of mentions are off by
// default; the permission is asked for only when the user turns them on
// with a click; then a mention arriving while the tab is hidden notifies,
// one arriving while it is visible or not mentioning the user does not,
// and turning them off stops them. A browser that refuses leaves them off
// and says why.
func TestMentionsAndNotifications(t *testing.T) {
	g := startGateway(t, testConfig("gw-mention"), "gateway.log", nil)
	alice := newPage(t, "alice")
	call(alice, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: recordNotifications})
	bob := newPage(t, "bob")
	alice.open(g, "Alice", "lobby")
	bob.open(g, "Bob", "lobby")
	alice.waitFor("Bob online", memberShown("Bob"))
	bob.waitFor("Alice online", memberShown("Alice"))

	const hello = "hi @alice, ask @Bob or mail bob@example.com"
	bob.say(hello)
	alice.waitFor("Bob's message", hasText("lobby", hello))
	if got, want := mentionsShown(alice, "lobby"), []string{"me:@alice", "@Bob"}; !slices.Equal(got, want) {
		t.Errorf("Alice sees mentions %q, want %q", got, want)
	}
	if !eval[bool](alice, `document.querySelector('.pane[data-room=lobby] .log > li.msg:last-child').classList.contains('mentions-me')`) {
		t.Error("Alice: the message that mentions her is not highlighted")
	}
	bob.waitFor("the message confirmed", hasText("lobby", hello))
	if got, want := mentionsShown(bob, "lobby"), []string{"@alice", "me:@Bob"}; !slices.Equal(got, want) {
		t.Errorf("Bob sees mentions %q, want %q", got, want)
	}
	if got := transcript(alice, "lobby"); len(got) != 1 || got[0].Text != hello {
		t.Errorf("the highlighting changed the text: %+v", got)
	}

	// Off by default, and nothing was asked.
	if v := eval[string](alice, `(() => { const b = document.getElementById('notify-toggle'); return b.hidden ? 'hidden' : b.getAttribute('aria-pressed'); })()`); v != "false" {
		t.Fatalf("notification toggle: %s, want shown and off", v)
	}
	setHidden(alice, true)
	bob.say("@Alice are you there?")
	alice.waitFor("the mention while hidden", hasText("lobby", "@Alice are you there?"))
	alice.waitFor("a mention badge on the room", `document.querySelector('.room-btn[data-room=lobby] .badge.mention:not([hidden])')`)
	setHidden(alice, false)
	if n := notes(alice); len(n) != 0 {
		t.Errorf("notifications are off by default, yet the page showed %+v", n)
	}
	if a := eval[[]bool](alice, `window.__asked`); len(a) != 0 {
		t.Errorf("the page asked for the notification permission without being asked to (%v)", a)
	}

	// A click asks the browser for the permission, during the click. The
	// headless browser has no one to answer its prompt: it stays off, and
	// the page says so.
	alice.do("turning notifications on", chromedp.Click(chromedp.ID("notify-toggle")))
	alice.waitFor("the answer explained", `window.__toastLog.some((t) => t.includes('did not allow') || t.includes('blocked'))`)
	if a := eval[[]bool](alice, `window.__asked`); len(a) != 1 || !a[0] {
		t.Errorf("permission requests %v, want one, during the click", a)
	}
	if v := eval[string](alice, `document.getElementById('notify-toggle').getAttribute('aria-pressed')`); v != "false" {
		t.Errorf("toggle aria-pressed=%s without a permission, want false", v)
	}
	t.Logf("headless answer: %q", notices(alice))

	// Allowed (as in the site's settings): a click turns them on.
	setPermission(alice, g, browser.PermissionSettingGranted)
	alice.do("turning notifications on", chromedp.Click(chromedp.ID("notify-toggle")))
	alice.waitFor("the toggle on", `document.getElementById('notify-toggle').getAttribute('aria-pressed') === 'true'`)

	setHidden(alice, true)
	bob.say("@Alice lunch?")
	bob.say("no mention in this one")
	alice.waitFor("both messages", hasText("lobby", "no mention in this one"))
	alice.waitFor("the notification", `window.__notes.length > 0`)
	setHidden(alice, false)
	bob.say("@Alice while you look")
	alice.waitFor("the mention while visible", hasText("lobby", "@Alice while you look"))
	if n := notes(alice); len(n) != 1 || n[0].Title != "Bob mentioned you in #lobby" || n[0].Body != "@Alice lunch?" || !n[0].Hidden {
		t.Errorf("notifications %+v; want one, for \"@Alice lunch?\" while hidden", n)
	}

	// Turned off: no more.
	alice.do("turning notifications off", chromedp.Click(chromedp.ID("notify-toggle")))
	alice.waitFor("the toggle off", `document.getElementById('notify-toggle').getAttribute('aria-pressed') === 'false'`)
	setHidden(alice, true)
	bob.say("@Alice one more")
	alice.waitFor("the last mention", hasText("lobby", "@Alice one more"))
	setHidden(alice, false)
	if n := notes(alice); len(n) != 1 {
		t.Errorf("after turning them off: notifications %+v, want still one", n)
	}

	// A browser that refuses: the toggle stays off and the page says why.
	carol := newPage(t, "carol")
	carol.open(g, "Carol", "lobby")
	setPermission(carol, g, browser.PermissionSettingDenied)
	carol.do("turning notifications on", chromedp.Click(chromedp.ID("notify-toggle")))
	carol.waitFor("the refusal explained", `!document.getElementById('toast').hidden && document.getElementById('toast-text').textContent.includes('blocked')`)
	if v := eval[string](carol, `document.getElementById('notify-toggle').getAttribute('aria-pressed')`); v != "false" {
		t.Errorf("carol: toggle aria-pressed=%s after a refusal, want false", v)
	}
}
