package e2e

import (
	"slices"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/target"
	"github.com/chromedp/chromedp"
)

// meName is the name the page shows for its user.
func meName(p *pg) string {
	p.t.Helper()
	return eval[string](p, `document.getElementById('me-name').textContent`)
}

// welcomeShown loads the page in a new tab, wants the welcome form and
// returns what its name field holds.
func welcomeShown(p *pg, g *gw) string {
	p.t.Helper()
	p.do("loading the page", chromedp.Navigate(g.url()))
	p.waitFor("the welcome form or the chat", `!document.getElementById('welcome').hidden || !document.getElementById('shell').hidden`)
	if eval[bool](p, `document.getElementById('welcome').hidden`) {
		p.t.Fatalf("%s skipped the welcome form and chats as %q", p.name, meName(p))
	}
	return eval[string](p, `document.getElementById('welcome-name').value`)
}

// The README's quick start, followed literally: open the page in two tabs
// of one browser, join the same room in both and chat. The tabs share
// localStorage, as real tabs do, yet they are two people: the second tab
// asks who it is instead of reusing the first tab's name, and by default
// (just pressing Enter) it is someone else. A reload keeps a tab's person;
// a copy of a tab is someone new; a new tab suggests the last name typed
// only when no open tab uses it.
func TestQuickStartTwoTabs(t *testing.T) {
	g := startGateway(t, testConfig("gw-quickstart"), "gateway.log", nil)
	checkServes(t, g)

	// Tab 1: the first visit. Nothing to suggest yet.
	tab1 := newPage(t, "tab 1")
	if v := welcomeShown(tab1, g); v != "" {
		t.Errorf("tab 1: a first visit suggests the name %q", v)
	}
	if v := eval[string](tab1, `document.getElementById('welcome-room').value`); v != "lobby" {
		t.Errorf("tab 1: room field %q, want lobby", v)
	}
	tab1.do("typing a name and pressing Enter",
		chromedp.Focus(chromedp.ID("welcome-name")), insertText("Alice"), pressEnter(false))
	tab1.waitJoined("lobby")

	// Tab 2 of the same browser: the welcome form again, with the same
	// room suggested and without Alice's name, which tab 1 is using.
	tab2 := tab1.newTab("tab 2")
	if v := welcomeShown(tab2, g); v != "" {
		t.Errorf("tab 2: name field %q; Alice is chatting in tab 1, so the second tab must not be Alice by default", v)
	}
	if v := eval[string](tab2, `document.getElementById('welcome-room').value`); v != "lobby" {
		t.Errorf("tab 2: room field %q, want the room of tab 1 (lobby)", v)
	}
	if help := eval[string](tab2, `document.getElementById('welcome-name-help').textContent`); !strings.Contains(help, "“Alice” is chatting in another tab") {
		t.Errorf("tab 2: the name help says %q; want it to say why Alice is not suggested", help)
	}
	tab2.screenshot(artifactDir(t), "second-tab.png")
	tab2.do("pressing Enter", chromedp.Focus(chromedp.ID("welcome-name")), pressEnter(false))
	tab2.waitJoined("lobby")

	// Two people, and they chat.
	tab2.waitFor("a guest name", `document.getElementById('me-name').textContent.startsWith('guest-')`)
	guest := meName(tab2)
	if got := meName(tab1); got != "Alice" {
		t.Errorf("tab 1 is %q, want Alice", got)
	}
	tab1.waitFor("the guest in tab 1's member list", memberShown(guest))
	tab2.waitFor("Alice in tab 2's member list", memberShown("Alice"))
	tab1.waitFor("two online", `document.getElementById('online-count').textContent === '2'`)
	tab1.say("hello from tab 1")
	tab2.waitFor("tab 1's message in tab 2", hasText("lobby", "hello from tab 1"))
	tab2.say("hello from tab 2")
	tab1.waitFor("tab 2's reply in tab 1", hasText("lobby", "hello from tab 2"))
	for _, p := range []*pg{tab1, tab2} {
		got := transcript(p, "lobby")
		if len(got) != 2 || got[0].Name != "Alice" || got[1].Name != guest || got[0].Author == got[1].Author {
			t.Errorf("%s sees %+v; want Alice's message then the guest's, by two user ids", p.name, got)
		}
	}

	// A reload is the same person, back in the same room, without a form.
	tab1.do("reloading tab 1", chromedp.Reload())
	tab1.waitJoined("lobby")
	if !eval[bool](tab1, `document.getElementById('welcome').hidden`) || meName(tab1) != "Alice" {
		t.Errorf("after a reload tab 1 is %q (welcome form hidden: %v), want Alice without a form",
			meName(tab1), eval[bool](tab1, `document.getElementById('welcome').hidden`))
	}

	// A copy of tab 1 (window.open copies sessionStorage, as the browser's
	// "Duplicate tab" does) is not Alice a second time.
	opened := chromedp.WaitNewTarget(tab1.ctx, func(i *target.Info) bool { return i.Type == "page" && strings.HasPrefix(i.URL, g.url()) })
	tab1.do("opening a copy of the tab", chromedp.Evaluate[chromedp.Void](`void window.open(location.href)`))
	var copyID target.ID
	select {
	case copyID = <-opened:
	case <-tab1.ctx.Done():
		t.Fatal("no copy opened")
	}
	dup := tab1.attachTab("copy of tab 1", copyID)
	dup.waitFor("the copy's welcome form", `!document.getElementById('welcome').hidden`)
	if !eval[bool](dup, `sessionStorage.getItem('chatgate.tab.id') !== null`) {
		t.Error("the copy has no tab id: window.open did not copy sessionStorage, so the test proved nothing")
	}
	if v := eval[string](dup, `document.getElementById('welcome-name').value`); v != "" {
		t.Errorf("the copy of tab 1 suggests %q, the name tab 1 is using", v)
	}
	dup.close()

	// Tab 2 takes a name; once tab 2 is closed, a new tab suggests it.
	tab2.do("changing the name",
		chromedp.Click(chromedp.ID("change-name")), chromedp.WaitVisible(chromedp.ID("name-input")),
		chromedp.Clear(chromedp.ID("name-input")), chromedp.Focus(chromedp.ID("name-input")), insertText("Bob"), pressEnter(false))
	tab2.waitFor("tab 2 is Bob", `document.getElementById('me-name').textContent === 'Bob'`)
	tab2.waitJoined("lobby")
	tab3 := tab1.newTab("tab 3")
	if v := welcomeShown(tab3, g); v != "" {
		t.Errorf("tab 3 suggests %q while tab 2 chats as Bob", v)
	}
	tab2.close()
	// The browser releases a closed tab's locks as it tears the tab down.
	tab1.waitForAsync("tab 2's name released", `navigator.locks.query().then((s) => !s.held.some((l) => l.name.startsWith('chatgate.as.') && l.name.endsWith('.Bob')))`)
	tab4 := tab1.newTab("tab 4")
	if v := welcomeShown(tab4, g); v != "Bob" {
		t.Errorf("tab 4 suggests %q; with tab 2 closed, want Bob, the last name typed", v)
	}
	tab4.do("pressing Enter", chromedp.Focus(chromedp.ID("welcome-name")), pressEnter(false))
	tab4.waitJoined("lobby")
	tab1.waitFor("Bob back", memberShown("Bob"))
	if got := members(tab1); !slices.Contains(got, "Alice") || !slices.Contains(got, "Bob") || len(got) != 2 {
		t.Errorf("tab 1's member list = %q, want Alice and Bob", got)
	}
}
