package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/chatgate/chatgate/gateway/hub"
)

// TestDrainWhileChatting drains the gateway under the pages while one of
// them is typing, and a replacement takes over the same address.
//
// Phase 1: the two gateways share one hub, like replicas on a backplane.
// Both pages show "reconnecting", come back on their own, rejoin with
// since, and end with every message exactly once and in the order typed —
// including messages typed while disconnected and sends that were in
// flight when the drain closed the socket.
//
// Phase 2: the replacement has a fresh hub (a restart: history lost). The
// pages reconnect again, mark the gap they cannot recover, and chatting
// goes on.
func TestDrainWhileChatting(t *testing.T) {
	shared := hub.New(hub.Config{})
	t.Cleanup(shared.Close)
	cfg1 := testConfig("gw-1")
	// retry_ms is drawn from 300 ms to 3 s: long enough that the typist
	// always gets messages into the gap.
	cfg1.DrainRetryMax = 3 * time.Second
	g1 := startGateway(t, cfg1, "gateway-1.log", shared)

	sam := newPage(t, "sam")
	olive := newPage(t, "olive")
	for _, p := range []*pg{sam, olive} {
		// While the replacement starts, connections may be refused; the
		// browser logs those itself. The page must not log errors.
		p.tolerateNetworkErrors()
	}
	sam.open(g1, "Sam", "ops")
	olive.open(g1, "Olive", "ops")
	olive.waitFor("Sam online", memberShown("Sam"))

	const n = 60
	want := make([]string, n)
	for i := range want {
		want[i] = fmt.Sprintf("update %02d of %d", i+1, n)
	}
	typed := make(chan error, 1)
	go func() { typed <- typeSteadily(sam, want, 40*time.Millisecond) }()

	olive.waitFor("a dozen messages before the drain", `document.querySelectorAll('.pane[data-room=ops] .log > li.msg').length >= 12`)
	g1.drain() // what SIGTERM does
	cfg2 := testConfig("gw-2")
	cfg2.Addr = g1.addr // the page reconnects to the address it came from
	g2 := startGateway(t, cfg2, "gateway-2.log", shared)
	g1.waitStopped(t)
	if err := <-typed; err != nil {
		t.Fatal(err)
	}

	for _, p := range []*pg{sam, olive} {
		p.waitFor("all messages confirmed", `document.querySelectorAll('.pane[data-room=ops] .log > li.msg').length >= `+fmt.Sprint(n)+
			` && !document.querySelector('.pane[data-room=ops] .outbox > li')`)
		p.waitJoined("ops")
		checkTranscript(t, p, "ops", want)
		checkReconnected(t, p)
	}
	// The drain really caught messages on the way: typed while the page
	// was disconnected, or sent and not yet acknowledged when it closed.
	if caught := eval[[]string](sam, `window.__pendingLog.filter((e) => e.startsWith('unknown') || (e.startsWith('queued') && !e.endsWith('connected')))`); len(caught) == 0 {
		t.Errorf("no message was in flight or waiting during the drain (%q); the test proved nothing", eval[[]string](sam, `window.__pendingLog`))
	} else {
		t.Logf("messages caught by the drain: %q", caught)
	}
	if m := gaps(olive, "ops"); len(m) != 0 {
		t.Errorf("olive: the shared hub had every message, yet the page shows %q", m)
	}
	if n := notices(olive); len(n) != 0 {
		t.Errorf("olive: the shared hub had every message, yet the page said %q", n)
	}

	// Phase 2: a restart with a fresh hub.
	g2.drain()
	cfg3 := testConfig("gw-3")
	cfg3.Addr = g1.addr
	startGateway(t, cfg3, "gateway-3.log", nil)
	g2.waitStopped(t)
	for _, p := range []*pg{sam, olive} {
		p.waitFor("reconnected to the restarted gateway", `document.querySelector('.pane[data-room=ops] .log > li.gap')`)
		p.waitJoined("ops")
	}
	olive.waitFor("Sam back online", memberShown("Sam"))
	olive.say("anyone still here?")
	sam.say("yes")
	want = append(want, "anyone still here?", "yes")
	for _, p := range []*pg{sam, olive} {
		p.waitFor("the conversation going on", hasText("ops", "yes")+" && "+hasText("ops", "anyone still here?")+
			` && !document.querySelector('.pane[data-room=ops] .outbox > li')`)
		checkTranscript(t, p, "ops", want)
		if m := gaps(p, "ops"); len(m) != 1 {
			t.Errorf("%s: gap dividers %q, want one", p.name, m)
		}
		if n := notices(p); len(n) != 1 || !strings.Contains(n[0], "could not be recovered in #ops") {
			t.Errorf("%s: notices %q, want one saying messages in #ops could not be recovered", p.name, n)
		}
	}
}

// typeSteadily enters each text into the page's composer (as a paste or an
// IME would, in one go) and presses Enter, one every interval, whatever the
// connection is doing. It runs on its own goroutine, so it reports errors
// instead of failing the test.
func typeSteadily(p *pg, texts []string, interval time.Duration) error {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for _, text := range texts {
		<-tick.C
		ctx, cancel := context.WithTimeout(p.ctx, stepTimeout)
		err := chromedp.Do(ctx, chromedp.Focus(chromedp.ID("composer-text")), insertText(text), pressEnter(false))
		cancel()
		if err != nil {
			return fmt.Errorf("%s: typing %q: %w", p.name, text, err)
		}
	}
	return nil
}

// checkTranscript wants exactly the texts, in order, each once, with seqs
// strictly increasing.
func checkTranscript(t *testing.T, p *pg, room string, want []string) {
	t.Helper()
	got := transcript(p, room)
	if !slices.Equal(texts(got), want) {
		t.Errorf("%s: transcript differs from what was sent\n got: %q\nwant: %q", p.name, texts(got), want)
	}
	for i := 1; i < len(got); i++ {
		if !seqLess(got[i-1].Seq, got[i].Seq) {
			t.Errorf("%s: seq %s follows %s", p.name, got[i].Seq, got[i-1].Seq)
		}
	}
}

// seqLess compares decimal seqs of any size.
func seqLess(a, b string) bool {
	if len(a) != len(b) {
		return len(a) < len(b)
	}
	return a < b
}

// checkReconnected wants the status to have shown "reconnecting" after
// being connected, and to be connected again now.
func checkReconnected(t *testing.T, p *pg) {
	t.Helper()
	log := eval[[]string](p, `window.__statusLog`)
	connected, reconnecting := false, false
	for _, s := range log {
		switch {
		case strings.HasPrefix(s, "connected"):
			connected = true
		case strings.HasPrefix(s, "reconnecting") && connected:
			reconnecting = true
		}
	}
	if !reconnecting || len(log) == 0 || !strings.HasPrefix(log[len(log)-1], "connected") {
		t.Errorf("%s: status went %q; want connected → reconnecting → connected", p.name, log)
	}
}

// gaps returns the texts of the dividers that mark missing history in a
// room.
func gaps(p *pg, room string) []string {
	p.t.Helper()
	return eval[[]string](p, `[...document.querySelectorAll('.pane[data-room=`+js(room)+`] .log > li.gap')].map((m) => m.textContent)`)
}

// notices returns every notice (toast) the page has shown, in order.
func notices(p *pg) []string {
	p.t.Helper()
	return eval[[]string](p, `window.__toastLog`)
}
