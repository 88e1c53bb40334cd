package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/chatgate/chatgate/gateway"
	"github.com/chatgate/chatgate/gateway/auth"
	"github.com/chatgate/chatgate/gateway/observe"
)

// The texts the page shows (static/app.js).
const (
	msgSignInFailed = "Sign-in failed: the token was refused or has expired — paste a fresh token"
	msgExpired      = "Your session expired — paste a fresh token to reconnect"
)

// authObserver counts handshakes refused for authentication and
// connections the gateway ended because their token expired.
type authObserver struct {
	observe.Nop
	rejectedAuth atomic.Int64
	expired      atomic.Int64
}

func (o *authObserver) ConnRejected(r observe.RejectReason) {
	if r == observe.RejectAuth {
		o.rejectedAuth.Add(1)
	}
}

func (o *authObserver) Disconnecting(r observe.DisconnectReason) {
	if r == observe.DisconnectTokenExpired {
		o.expired.Add(1)
	}
}

// startAuthGateway runs a gateway with --auth jwt (HS256, no leeway, so a
// token expires exactly at its exp) and returns its secret.
func startAuthGateway(t *testing.T) (*gw, []byte, *authObserver) {
	t.Helper()
	secret := []byte("e2e-secret-0123456789-abcdefghijklmnop")
	file := filepath.Join(t.TempDir(), "jwt-secret")
	if err := os.WriteFile(file, secret, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig("gw-auth")
	cfg.Auth = "jwt"
	cfg.JWTSecretFile = file
	cfg.JWTLeeway = 0
	obs := &authObserver{}
	g := startGatewayWith(t, cfg, "gateway.log", gateway.Options{Observer: obs})
	checkServes(t, g)
	return g, secret, obs
}

func mint(t *testing.T, secret []byte, sub, name string, ttl time.Duration) string {
	t.Helper()
	tok, err := auth.Mint(secret, sub, name, []string{"lobby"}, ttl, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// recordSockets wraps WebSocket before the page runs, to record how each
// socket was opened (URL, offered and selected subprotocols) and closed.
const recordSockets = `
window.__sockets = [];
window.WebSocket = class extends window.WebSocket {
  constructor(url, protocols) {
    super(url, protocols);
    const rec = {url: String(url), protocols: [].concat(protocols ?? []), selected: '', close: ''};
    window.__sockets.push(rec);
    this.addEventListener('open', () => { rec.selected = this.protocol; });
    this.addEventListener('close', (e) => { rec.close = e.code + ' ' + e.reason; });
  }
};
`

type socketRec struct {
	URL       string   `json:"url"`
	Protocols []string `json:"protocols"`
	Selected  string   `json:"selected"`
	Close     string   `json:"close"`
}

func newRecordedPage(t *testing.T, name string) *pg {
	t.Helper()
	p := newPage(t, name)
	call(p, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: recordSockets})
	return p
}

func sockets(p *pg) []socketRec {
	p.t.Helper()
	return eval[[]socketRec](p, `window.__sockets.map(({url, protocols, selected, close}) => ({url, protocols, selected, close}))`)
}

// noticeShown is a JS condition: the sign-in notice shows text.
func noticeShown(text string) string {
	return `!document.getElementById('auth-notice').hidden && document.getElementById('auth-notice-text').textContent === ` + js(text)
}

// pasteToken gives the page a fresh token the way a person would after a
// failure: the notice's button, then the token field and Enter.
func (p *pg) pasteToken(tok string) {
	p.t.Helper()
	p.do("pasting a fresh token",
		chromedp.Click(chromedp.ID("auth-fix")),
		chromedp.WaitVisible(chromedp.ID("token-input")),
		chromedp.Focus(chromedp.ID("token-input")),
		insertText(tok),
		pressEnter(false),
	)
}

// checkTokenKept asserts the token is where it belongs: in this tab's
// sessionStorage and the socket's subprotocols, and not in the address
// bar, localStorage, the DOM or the socket URL.
func checkTokenKept(t *testing.T, p *pg, tok string) {
	t.Helper()
	type places struct {
		Href, DOM string
		Local     bool
		Session   bool
	}
	got := eval[places](p, `(() => {
	  const t = `+js(tok)+`;
	  return {
	    href: location.href,
	    dom: document.documentElement.outerHTML + [...document.querySelectorAll('input, textarea')].map((i) => i.value).join(' '),
	    local: Object.keys(localStorage).some((k) => (localStorage.getItem(k) || '').includes(t)),
	    session: sessionStorage.getItem('chatgate.token') === t,
	  };
	})()`)
	if strings.Contains(got.Href, tok) || strings.Contains(got.Href, "token") {
		t.Errorf("%s: the token is still in the address bar: %s", p.name, got.Href)
	}
	if strings.Contains(got.DOM, tok) {
		t.Errorf("%s: the token is in the DOM", p.name)
	}
	if got.Local {
		t.Errorf("%s: the token is in localStorage", p.name)
	}
	if !got.Session {
		t.Errorf("%s: the token is not in sessionStorage", p.name)
	}
	for _, s := range sockets(p) {
		if strings.Contains(s.URL, tok) || strings.Contains(s.URL, "token") || strings.Contains(s.URL, "name=") {
			t.Errorf("%s: socket URL %s carries the token or a name", p.name, s.URL)
		}
		if len(s.Protocols) != 2 || s.Protocols[0] != "chatgate.v1" || s.Protocols[1] != "bearer."+tok {
			t.Errorf("%s: offered subprotocols %d entries, want [chatgate.v1 bearer.<token>]", p.name, len(s.Protocols))
		}
		if s.Selected != "" && s.Selected != "chatgate.v1" {
			t.Errorf("%s: the gateway selected %q, want chatgate.v1", p.name, s.Selected)
		}
	}
}

// A sign-in link (#token=…) connects as the token's user, whose name comes
// from the token; the page chats in the rooms the token allows and says so
// when a join is forbidden. A refused token stops the reconnecting at once
// with a clear notice, until a fresh token is pasted.
func TestTokenSignIn(t *testing.T) {
	g, secret, obs := startAuthGateway(t)

	alice := newRecordedPage(t, "alice")
	tok := mint(t, secret, "alice", "Alice", time.Hour)
	alice.do("opening a sign-in link", chromedp.Navigate(g.url()+"#token="+tok))
	alice.waitJoined("lobby")
	alice.waitFor("the name from the token", `document.getElementById('me-name').textContent === 'Alice'`)
	if !eval[bool](alice, `document.getElementById('welcome').hidden`) {
		t.Error("the welcome form is shown although the link signed the user in")
	}
	checkTokenKept(t, alice, tok)
	if s := sockets(alice); len(s) != 1 || s[0].Selected != "chatgate.v1" {
		t.Errorf("sockets = %+v, want one with chatgate.v1 selected", s)
	}

	alice.say("hello with a token")
	alice.waitFor("the message confirmed", hasText("lobby", "hello with a token")+
		` && !document.querySelector('.pane[data-room=lobby] .outbox > li')`)
	if got := transcript(alice, "lobby"); len(got) != 1 || got[0].Name != "Alice" || got[0].Author != "alice" {
		t.Errorf("transcript = %+v, want one message by Alice (id alice)", got)
	}

	// The token allows only lobby.
	alice.do("joining #secret", chromedp.SendKeys(chromedp.ID("join-room"), "secret\r"))
	alice.waitFor("the forbidden notice", `!document.getElementById('toast').hidden && document.getElementById('toast-text').textContent === 'You are not allowed in #secret'`)
	alice.waitFor("#secret gone from the room list", `!document.querySelector('.room-btn[data-room=secret]')`)
	if st := eval[string](alice, `document.getElementById('status').dataset.state`); st != "connected" {
		t.Errorf("after the forbidden join the status is %q, want connected", st)
	}
	if n := obs.rejectedAuth.Load(); n != 0 {
		t.Errorf("%d handshakes refused for a valid token", n)
	}

	// A bad token: one refused handshake, a notice, and no retry loop.
	bad := newRecordedPage(t, "refused")
	bad.tolerateNetworkErrors() // Chromium logs the 401 handshake
	bad.do("opening a link with a bad token", chromedp.Navigate(g.url()+"#token=not.a-valid.token"))
	bad.waitFor("the sign-in failed notice", noticeShown(msgSignInFailed))
	bad.waitFor("status signed out", `document.getElementById('status').dataset.state === 'signed-out'`)
	bad.screenshot(artifactDir(t), "sign-in-failed.png")
	time.Sleep(3 * time.Second) // a bounded window in which a retry loop would show
	if n := obs.rejectedAuth.Load(); n != 1 {
		t.Errorf("the gateway refused %d handshakes in 3 s, want 1 (no reconnecting with a refused token)", n)
	}
	if n := len(sockets(bad)); n != 1 {
		t.Errorf("the page opened %d sockets, want 1", n)
	}
	if st := eval[string](bad, `document.getElementById('status').dataset.state`); st != "signed-out" {
		t.Errorf("status %q after the observation window, want signed-out", st)
	}
	checkTokenKept(t, bad, "not.a-valid.token")

	// A fresh token gets it going again, under the new token's name.
	bob := mint(t, secret, "bob", "Bob", time.Hour)
	bad.pasteToken(bob)
	bad.waitJoined("lobby")
	bad.waitFor("Bob's name", `document.getElementById('me-name').textContent === 'Bob'`)
	bad.waitFor("the notice gone", `document.getElementById('auth-notice').hidden`)
	bad.waitFor("the older message", hasText("lobby", "hello with a token"))
	if v := eval[string](bad, `document.getElementById('token-input').value`); v != "" {
		t.Error("the token field still holds the token after use")
	}
	alice.waitFor("Bob in Alice's member list", memberShown("Bob"))
}

// A token that expires while connected: the gateway closes with 4401, the
// page says the session expired and waits for a fresh token instead of
// reconnecting with the dead one.
func TestTokenExpiry(t *testing.T) {
	g, secret, obs := startAuthGateway(t)
	p := newRecordedPage(t, "expiring")
	p.tolerateNetworkErrors()
	tok := mint(t, secret, "carol", "Carol", 3*time.Second)
	p.do("opening a sign-in link", chromedp.Navigate(g.url()+"#token="+tok))
	p.waitJoined("lobby")
	p.waitFor("the name from the token", `document.getElementById('me-name').textContent === 'Carol'`)

	p.waitFor("the expired notice", noticeShown(msgExpired))
	p.waitFor("status signed out", `document.getElementById('status').dataset.state === 'signed-out'`)
	if s := sockets(p); len(s) != 1 || s[0].Close != `4401 {"r":"token_expired"}` {
		t.Errorf("sockets = %+v, want one closed with 4401 token_expired", s)
	}
	if n := obs.expired.Load(); n != 1 {
		t.Errorf("the gateway ended %d connections for expiry, want 1", n)
	}
	time.Sleep(2 * time.Second) // a bounded window in which a reconnect would show
	if n := len(sockets(p)); n != 1 || obs.rejectedAuth.Load() != 0 {
		t.Errorf("after expiry the page opened %d sockets (%d refused), want no new attempt", n, obs.rejectedAuth.Load())
	}

	p.pasteToken(mint(t, secret, "carol", "Carol", time.Hour))
	p.waitJoined("lobby")
	p.waitFor("the notice gone", `document.getElementById('auth-notice').hidden`)
}
