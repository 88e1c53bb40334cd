// Package e2e drives the embedded chat page in a real headless Chromium
// against a real gateway on loopback.
//
// The tests skip when /usr/bin/chromium (or $CHATGATE_CHROMIUM) is missing,
// unless CHATGATE_E2E=1, in which case they fail: CI sets it so that a missing browser cannot turn
// the suite into a silent pass. Artifacts (screenshots, gateway logs, the
// DOM of a page that failed) go to $CHATGATE_ARTIFACTS/<test>/ when set,
// else to the test's temp dir.
package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/input"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/cdproto/target"
	"github.com/chromedp/chromedp"

	"github.com/chatgate/chatgate/gateway"
	"github.com/chatgate/chatgate/gateway/broker"
	"github.com/chatgate/chatgate/gateway/hub"
	"github.com/chatgate/chatgate/internal/logging"
	"github.com/chatgate/chatgate/web"
)

// chromiumPath is the browser to drive: $CHATGATE_CHROMIUM, else the
// Debian package's binary.
var chromiumPath = func() string {
	if p := os.Getenv("CHATGATE_CHROMIUM"); p != "" {
		return p
	}
	return "/usr/bin/chromium"
}()

const (
	// Generous: the machine may be small and busy with other tests.
	stepTimeout = 30 * time.Second
	waitTimeout = 30 * time.Second
)

// ------------------------------------------------------------------ browser

var (
	browserOnce   sync.Once
	browserCtx    context.Context
	browserErr    error
	browserCancel = func() {}
	allocCancel   = func() {}
	profileDir    string
)

func TestMain(m *testing.M) {
	code := m.Run()
	browserCancel()
	allocCancel()
	if profileDir != "" {
		os.RemoveAll(profileDir)
	}
	os.Exit(code)
}

// requireBrowser skips (or, with CHATGATE_E2E=1, fails) when Chromium is
// not installed.
func requireBrowser(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("CHATGATE_E2E") == "1" {
			t.Fatalf("CHATGATE_E2E=1 but %s is missing (apt-get install -y chromium): %v", chromiumPath, err)
		}
		t.Skipf("skipping browser test: %s not found (install the Debian package chromium, or set CHATGATE_E2E=1 to make this a failure)", chromiumPath)
	}
}

// sharedBrowser starts one headless Chromium for the whole package; every
// page gets a browser context of its own (separate storage, like two people).
func sharedBrowser(t *testing.T) context.Context {
	t.Helper()
	requireBrowser(t)
	browserOnce.Do(func() {
		dir, err := os.MkdirTemp("", "chatgate-e2e-profile")
		if err != nil {
			browserErr = err
			return
		}
		profileDir = dir
		opts := append(chromedp.DefaultExecAllocatorOptions[:],
			chromedp.ExecPath(chromiumPath),
			chromedp.Headless,
			chromedp.NoSandbox, // CI runs as root
			chromedp.DisableGPU,
			chromedp.NoFirstRun,
			chromedp.Flag("disable-quic", true),
			chromedp.Flag("disable-background-networking", true),
			chromedp.Flag("disable-component-update", true),
			chromedp.Flag("disable-sync", true),
			chromedp.Flag("lang", "en-US"),
			chromedp.UserDataDir(dir),
			chromedp.WindowSize(1280, 800),
		)
		actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
		bctx, bcancel := chromedp.NewContext(actx)
		allocCancel, browserCancel = acancel, bcancel
		browserCtx = bctx
		browserErr = chromedp.Do(bctx) // starts the browser, with no timeout
	})
	if browserErr != nil {
		t.Fatalf("starting %s: %v", chromiumPath, browserErr)
	}
	return browserCtx
}

// --------------------------------------------------------------- artifacts

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)

// artifactDir is where a test keeps what a person may want to look at.
func artifactDir(t *testing.T) string {
	t.Helper()
	base := os.Getenv("CHATGATE_ARTIFACTS")
	if base == "" {
		return t.TempDir()
	}
	dir := filepath.Join(base, unsafeName.ReplaceAllString(t.Name(), "_"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// ----------------------------------------------------------------- gateway

// gw is a gateway served in process by gateway.Run, exactly as
// cmd/chatgate runs it; stopping it is the SIGTERM path (the drain).
type gw struct {
	addr   string
	cancel context.CancelFunc
	done   chan error
}

func (g *gw) url() string { return "http://" + g.addr + "/" }

// testConfig is a gateway configuration with generous limits, so that
// only what a test tightens can get in the way.
func testConfig(node string) gateway.Config {
	cfg := gateway.DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	cfg.AdminAddr = ""
	cfg.NodeID = node
	cfg.SendRate, cfg.SendBurst = 200, 200
	cfg.JoinRate, cfg.JoinBurst = 50, 100
	cfg.MaxConnsPerIP = 1000
	cfg.DrainDelay = 0
	cfg.DrainWindow = 300 * time.Millisecond
	cfg.ShutdownTimeout = 15 * time.Second
	cfg.DrainRetryMax = time.Second
	return cfg
}

// startGateway runs a gateway until the test ends (or stop/drain is called).
// If cfg.Addr names a port that is still taken, it retries until it binds.
// A nil broker gives the gateway an in-process hub of its own; gateways given
// the same hub behave like replicas sharing a backplane.
func startGateway(t *testing.T, cfg gateway.Config, logName string, b broker.Broker) *gw {
	t.Helper()
	return startGatewayWith(t, cfg, logName, gateway.Options{Broker: b})
}

// startGatewayWith is startGateway with more Options (an Observer, say);
// the logger (JSON at debug level, to logName), the web handler and, when
// opts.Broker is nil, an in-process hub of its own are filled in.
func startGatewayWith(t *testing.T, cfg gateway.Config, logName string, opts gateway.Options) *gw {
	t.Helper()
	requireBrowser(t) // every test here needs one: skip before starting anything
	logFile, err := os.Create(filepath.Join(artifactDir(t), logName))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logFile.Close() })
	if opts.Broker == nil {
		h := hub.New(hub.Config{Observer: opts.Observer})
		t.Cleanup(h.Close) // after the gateway's stop, registered below
		opts.Broker = h
	}
	deadline := time.Now().Add(waitTimeout)
	for {
		opts.Logger = logging.New(logging.Config{Format: "json", Level: "debug"}, logFile)
		opts.Web = web.Handler()
		srv, err := gateway.New(cfg, opts)
		if err != nil {
			t.Fatalf("gateway.New: %v", err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		g := &gw{cancel: cancel, done: make(chan error, 1)}
		bound := make(chan string, 1)
		go func() {
			g.done <- gateway.Run(ctx, srv, gateway.RunOptions{
				Listening: func(chat, _ net.Addr) { bound <- chat.String() },
			})
		}()
		select {
		case g.addr = <-bound:
			t.Cleanup(func() { g.stop(t) })
			return g
		case err := <-g.done:
			cancel()
			if !isAddrInUse(err) || time.Now().After(deadline) {
				t.Fatalf("gateway.Run: %v", err)
			}
			time.Sleep(20 * time.Millisecond) // the old listener is closing; poll for the port
		case <-time.After(waitTimeout):
			cancel()
			t.Fatal("gateway did not start listening")
		}
	}
}

func isAddrInUse(err error) bool {
	return err != nil && strings.Contains(err.Error(), "address already in use")
}

// drain starts the graceful shutdown (what SIGTERM does) without waiting.
func (g *gw) drain() { g.cancel() }

// stop drains and waits for Run to return.
func (g *gw) stop(t *testing.T) {
	t.Helper()
	g.cancel()
	select {
	case err, ok := <-g.done:
		if ok && err != nil && !errors.Is(err, context.Canceled) {
			t.Logf("gateway on %s: %v", g.addr, err)
		}
		if ok {
			close(g.done)
		}
	case <-time.After(waitTimeout):
		t.Errorf("gateway on %s did not stop", g.addr)
	}
}

// waitStopped waits until Run has returned after a drain.
func (g *gw) waitStopped(t *testing.T) {
	t.Helper()
	select {
	case err := <-g.done:
		if err != nil {
			t.Errorf("drain of %s: %v", g.addr, err)
		}
		close(g.done)
	case <-time.After(waitTimeout):
		t.Fatalf("gateway on %s did not finish draining", g.addr)
	}
}

// checkServes makes sure the page is served before a browser is pointed at it.
func checkServes(t *testing.T, g *gw) {
	t.Helper()
	resp, err := http.Get(g.url())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", g.url(), resp.Status)
	}
}

// -------------------------------------------------------------------- pages

// instrument runs in every document before the page's own scripts: it
// reports CSP violations as console errors (so they fail the test) and
// records every connection state the status shows, every state of an
// unconfirmed message, every notice (toast) and every text of the
// rate-limit notice, for tests to inspect.
const instrument = `
document.addEventListener('securitypolicyviolation', (e) => {
  console.error('CSP violation: ' + e.violatedDirective + ' blocked ' + e.blockedURI);
});
window.__statusLog = [];
window.__pendingLog = [];
window.__toastLog = [];
window.__holdLog = [];
document.addEventListener('DOMContentLoaded', () => {
  const s = document.getElementById('status');
  if (!s) return;
  const rec = () => window.__statusLog.push(s.dataset.state + ' ' + s.textContent);
  rec();
  new MutationObserver(rec).observe(s, {attributes: true, childList: true, subtree: true, characterData: true});
  // Each notice shown: its text whenever it appears or changes while shown.
  const toast = document.getElementById('toast');
  let lastToast = '';
  new MutationObserver(() => {
    const text = toast.hidden ? '' : toast.textContent.trim();
    if (text !== '' && text !== lastToast) window.__toastLog.push(text);
    lastToast = text;
  }).observe(toast, {attributes: true, attributeFilter: ['hidden'], childList: true, subtree: true, characterData: true});
  // Each text the rate-limit notice shows.
  const hold = document.getElementById('ratelimit');
  new MutationObserver(() => {
    const text = hold.hidden ? '' : hold.textContent.replace(/\s+/g, ' ').trim();
    if (text !== '' && window.__holdLog[window.__holdLog.length - 1] !== text) window.__holdLog.push(text);
  }).observe(hold, {attributes: true, attributeFilter: ['hidden'], childList: true, subtree: true, characterData: true});
  // Each state an unconfirmed message settles in (per task), with the
  // connection state at that moment.
  new MutationObserver((records) => {
    for (const r of records) {
      const li = r.target;
      if (li.matches && li.matches('.outbox > li')) {
        window.__pendingLog.push(li.dataset.state + ' ' + li.querySelector('.text').textContent + ' ' + s.dataset.state);
      }
    }
  }).observe(document.body, {attributes: true, attributeFilter: ['data-state'], subtree: true});
});
`

// pg is one browser tab: in a browser context of its own (newPage), or
// next to another tab in its context (newTab).
type pg struct {
	t      *testing.T
	name   string
	ctx    context.Context
	cancel context.CancelFunc // closes the tab

	mu       sync.Mutex
	problems []string // console errors, exceptions, CSP violations
	// networkOK tolerates the browser's own log entries about failed
	// connections (a gateway that is restarting refuses them).
	networkOK bool
}

func newPage(t *testing.T, name string) *pg {
	t.Helper()
	return openTab(t, name, sharedBrowser(t), chromedp.WithNewBrowserContext())
}

// newTab opens another tab in the browser context of p, as a person opens
// a second tab of the same browser: the tabs share localStorage and Web
// Locks; each has its own sessionStorage. Closing p closes it too.
func (p *pg) newTab(name string) *pg {
	p.t.Helper()
	return openTab(p.t, name, p.ctx)
}

// attachTab follows a tab that the page of p opened itself (window.open).
func (p *pg) attachTab(name string, id target.ID) *pg {
	p.t.Helper()
	return openTab(p.t, name, p.ctx, chromedp.WithTargetID(id))
}

func openTab(t *testing.T, name string, parent context.Context, opts ...chromedp.ContextOption) *pg {
	t.Helper()
	p := &pg{t: t, name: name}
	ctx, cancel := chromedp.NewContext(parent, append(opts, chromedp.WithListener(p.listen))...)
	p.ctx, p.cancel = ctx, cancel
	// The first run attaches the tab with this context (no deadline): the
	// tab's event loop lives as long as the context.
	if err := chromedp.Do(ctx); err != nil {
		cancel()
		t.Fatalf("%s: opening a tab: %v", name, err)
	}
	if _, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: instrument}); err != nil {
		cancel()
		t.Fatalf("%s: %v", name, err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			p.saveDebug()
		}
		p.mu.Lock()
		problems := p.problems
		p.mu.Unlock()
		for _, msg := range problems {
			t.Errorf("%s: browser console: %s", name, msg)
		}
		cancel()
	})
	return p
}

// close closes the tab, as a person closing it would.
func (p *pg) close() {
	p.t.Helper()
	if err := chromedp.Cancel(p.ctx); err != nil {
		p.t.Fatalf("%s: closing the tab: %v", p.name, err)
	}
}

// listen runs in the tab's event loop: it must be quick and run no command.
func (p *pg) listen(ev any) {
	var problem string
	switch ev := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeAssert {
			var parts []string
			for _, a := range ev.Args {
				if len(a.Value) > 0 {
					parts = append(parts, string(a.Value))
				} else {
					parts = append(parts, a.Description)
				}
			}
			problem = "console." + string(ev.Type) + ": " + strings.Join(parts, " ")
		}
	case *runtime.EventExceptionThrown:
		d := ev.ExceptionDetails
		problem = "uncaught exception: " + d.Text
		if d.Exception != nil {
			problem += " " + d.Exception.Description
		}
	case *cdplog.EventEntryAdded:
		e := ev.Entry
		if e.Level != cdplog.EntryLevelError {
			return
		}
		p.mu.Lock()
		tolerated := p.networkOK && e.Source == cdplog.EntrySourceNetwork
		p.mu.Unlock()
		if tolerated {
			return
		}
		problem = fmt.Sprintf("log %s/%s: %s %s", e.Source, e.Level, e.Text, e.URL)
	}
	if problem != "" {
		p.mu.Lock()
		p.problems = append(p.problems, problem)
		p.mu.Unlock()
	}
}

func (p *pg) tolerateNetworkErrors() {
	p.mu.Lock()
	p.networkOK = true
	p.mu.Unlock()
}

// do runs actions with a deadline; any failure ends the test.
func (p *pg) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, stepTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		p.t.Fatalf("%s: %s: %v", p.name, what, err)
	}
}

// eval evaluates a JavaScript expression and decodes its JSON value.
func eval[T any](p *pg, expr string) T {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, stepTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		p.t.Fatalf("%s: evaluating %s: %v", p.name, expr, err)
	}
	return v
}

// waitFor polls a JavaScript condition until it is truthy or the deadline
// passes; what says, for the failure message, what was awaited.
func (p *pg) waitFor(what, cond string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, waitTimeout+5*time.Second)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[bool]("!!("+cond+")",
		chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(waitTimeout)))
	if err != nil {
		p.t.Fatalf("%s: waiting for %s: %v", p.name, what, err)
	}
}

// waitForAsync is waitFor for a condition that is a promise (an
// asynchronous browser API), polled every 50 ms until it resolves truthy.
func (p *pg) waitForAsync(what, cond string) {
	p.t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !eval[bool](p, "Promise.resolve("+cond+").then((v) => !!v)") {
		if time.Now().After(deadline) {
			p.t.Fatalf("%s: waiting for %s: timed out", p.name, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// saveDebug keeps a screenshot and the DOM of a page whose test failed.
func (p *pg) saveDebug() {
	ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
	defer cancel()
	dir := artifactDir(p.t)
	base := unsafeName.ReplaceAllString(p.name, "_")
	if png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot()); err == nil {
		_ = os.WriteFile(filepath.Join(dir, base+"-failure.png"), png, 0o644)
	}
	if dom, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.documentElement.outerHTML`)); err == nil {
		_ = os.WriteFile(filepath.Join(dir, base+"-failure.html"), []byte(dom), 0o644)
	}
	if log, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`window.__statusLog || []`)); err == nil {
		_ = os.WriteFile(filepath.Join(dir, base+"-status.txt"), []byte(strings.Join(log, "\n")), 0o644)
	}
	p.t.Logf("%s: failure screenshot and DOM saved in %s", p.name, dir)
}

// --------------------------------------------------------- app operations

// js quotes a Go string as a JavaScript string literal.
func js(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// open loads the page and gets past the welcome form as a person would:
// type a name and a room, press Enter.
func (p *pg) open(g *gw, name, room string) {
	p.t.Helper()
	p.do("loading the page", chromedp.Navigate(g.url()), chromedp.WaitVisible(chromedp.ID("welcome-name")))
	p.welcome(name, room)
}

// welcome fills in the welcome form of a loaded page and waits until the
// page is in the room.
func (p *pg) welcome(name, room string) {
	p.t.Helper()
	p.do("filling in the welcome form",
		chromedp.SendKeys(chromedp.ID("welcome-name"), name),
		chromedp.Clear(chromedp.ID("welcome-room")),
		chromedp.SendKeys(chromedp.ID("welcome-room"), room+"\r"),
	)
	p.waitJoined(room)
}

// waitJoined waits until the page is connected and in room.
func (p *pg) waitJoined(room string) {
	p.t.Helper()
	p.waitFor("status connected", `document.getElementById('status').dataset.state === 'connected'`)
	p.waitFor("#"+room+" joined", `document.querySelector('.room-btn[data-room=`+js(room)+`][data-state=joined]')`)
}

// say enters a message into the composer and presses Enter; a "\n" in
// text is typed as Shift+Enter. Each line goes in at once, as from a paste
// or an IME (typing key by key costs three protocol calls per character;
// TestTwoPeopleChat types some by key).
func (p *pg) say(text string) {
	p.t.Helper()
	steps := []chromedp.Action[chromedp.Void]{chromedp.Focus(chromedp.ID("composer-text"))}
	for i, line := range strings.Split(text, "\n") {
		if i > 0 {
			steps = append(steps, pressEnter(true))
		}
		if line != "" {
			steps = append(steps, insertText(line))
		}
	}
	p.do("typing a message", append(steps, pressEnter(false))...)
}

// insertText enters text into the focused field in one go, as a paste or
// an IME does.
func insertText(text string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := cdp.Call(ctx, t, input.InsertText, input.InsertTextParams{Text: text})
		return err
	})
}

// pressEnter presses Enter (with Shift if shift) as a keyboard does: one
// keyDown that carries the text "\r", so that a page which cancels the
// keydown gets no line break (chromedp.KeyEvent sends a separate char event
// that would insert one anyway), then keyUp.
func pressEnter(shift bool) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		var mods int64
		if shift {
			mods = 8 // Shift
		}
		for _, typ := range []input.DispatchKeyEventType{input.DispatchKeyEventTypeKeyDown, input.DispatchKeyEventTypeKeyUp} {
			params := input.DispatchKeyEventParams{
				Type: typ, Key: "Enter", Code: "Enter", Modifiers: mods,
				WindowsVirtualKeyCode: 13, NativeVirtualKeyCode: 13,
			}
			if typ == input.DispatchKeyEventTypeKeyDown {
				params.Text = "\r"
				params.UnmodifiedText = "\r"
			}
			if _, err := cdp.Call(ctx, t, input.DispatchKeyEvent, params); err != nil {
				return err
			}
		}
		return nil
	})
}

// msg is a confirmed message as the page shows it.
type msg struct {
	Seq    string `json:"seq"`
	Author string `json:"author"`
	Name   string `json:"name"`
	Text   string `json:"text"`
}

// transcript returns the confirmed messages of a room in display order
// (not the unsent ones the page keeps in the log where they failed).
// Grouped messages carry no visible author, so the name is that of the
// group's head.
func transcript(p *pg, room string) []msg {
	p.t.Helper()
	return eval[[]msg](p, `(() => {
	  const pane = document.querySelector('.pane[data-room=`+js(room)+`]');
	  if (!pane) return [];
	  let name = '';
	  return [...pane.querySelectorAll('.log > li.msg')].filter((li) => !li.matches('.pending')).map((li) => {
	    const a = li.querySelector('.author');
	    if (a) name = a.textContent;
	    return {seq: li.dataset.seq, author: li.dataset.author, name, text: li.querySelector('.text').textContent};
	  });
	})()`)
}

// texts returns just the texts of transcript.
func texts(ms []msg) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.Text
	}
	return out
}

// pendingStates lists the optimistic (unconfirmed) messages of a room.
func pendingStates(p *pg, room string) []string {
	p.t.Helper()
	return eval[[]string](p, `[...document.querySelectorAll('.pane[data-room=`+js(room)+`] .outbox > li')].map((li) => li.dataset.state + ': ' + li.querySelector('.text').textContent)`)
}

// members returns the names in the member sidebar (of the active room).
func members(p *pg) []string {
	p.t.Helper()
	return eval[[]string](p, `[...document.querySelectorAll('#member-list .member-name')].map((n) => n.textContent)`)
}

// hasText is a JS condition: the room's log shows a confirmed message with
// this text.
func hasText(room, text string) string {
	return `[...document.querySelectorAll('.pane[data-room=` + js(room) + `] .log > li.msg:not(.pending) .text')].some((n) => n.textContent === ` + js(text) + `)`
}

// memberShown is a JS condition: the member list shows this name.
func memberShown(name string) string {
	return `[...document.querySelectorAll('#member-list .member-name')].some((n) => n.textContent === ` + js(name) + `)`
}

// screenshot saves a PNG of the viewport under name in the artifact dir.
func (p *pg) screenshot(dir, name string) []byte {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, stepTimeout)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		p.t.Fatalf("%s: screenshot: %v", p.name, err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		p.t.Fatal(err)
	}
	p.t.Logf("screenshot: %s", path)
	return png
}

// call runs one CDP command on the page's target.
func call[P, R any](p *pg, cmd cdp.Command[P, R], params P) R {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, stepTimeout)
	defer cancel()
	r, err := chromedp.Call(ctx, cmd, params)
	if err != nil {
		p.t.Fatalf("%s: %s: %v", p.name, cmd.Method, err)
	}
	return r
}
