package e2e

import (
	"fmt"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// A single-node restart loses the rooms' history. The page, in three
// rooms, rejoins each with since and learns three times that the gap
// could not be recovered; it is one event, so the page says so once, in
// one notice naming the three rooms, and marks in each room only where
// messages are missing.
func TestOneNoticeAfterRestart(t *testing.T) {
	g := startGateway(t, testConfig("gw-before"), "gateway-before.log", nil)
	rooms := []string{"lobby", "ops", "dev"}
	nia := newPage(t, "nia")
	nia.tolerateNetworkErrors() // the restarting gateway refuses connections for a moment
	nia.open(g, "Nia", rooms[0])
	for _, r := range rooms[1:] {
		nia.do("joining #"+r, chromedp.SendKeys(chromedp.ID("join-room"), r+"\r"))
		nia.waitJoined(r)
	}
	for _, r := range rooms {
		nia.do("opening #"+r, chromedp.Click(chromedp.CSS(`.room-btn[data-room=`+r+`]`)))
		nia.say("before the restart in " + r)
		nia.waitFor("confirmed", hasText(r, "before the restart in "+r)+` && !document.querySelector('.outbox > li')`)
	}

	g.stop(t)
	cfg := testConfig("gw-after")
	cfg.Addr = g.addr // the page reconnects to the address it came from
	startGateway(t, cfg, "gateway-after.log", nil)

	for _, r := range rooms {
		nia.waitFor("#"+r+" rejoined with its gap marked", `document.querySelector('.room-btn[data-room=`+r+`][data-state=joined]') && `+
			`document.querySelector('.pane[data-room=`+r+`] .log > li:is(.gap, .marker)')`)
	}
	// One notice, or (as an older page did) a notice in every room.
	nia.waitFor("the page saying so", `window.__toastLog.some((t) => t.includes('could not be recovered')) || `+
		`document.querySelectorAll('.pane li.marker').length >= `+fmt.Sprint(len(rooms)))
	nia.screenshot(artifactDir(t), "after-restart.png")

	// Everything the page said about it, as notices or in the logs.
	said := eval[[]string](nia, `[...window.__toastLog, ...[...document.querySelectorAll('.pane li')].map((li) => li.textContent)]
	  .filter((t) => /disconnected|could not be recovered|restarted/.test(t))`)
	if len(said) != 1 {
		t.Fatalf("the page said %d things about one restart, want one notice: %q", len(said), said)
	}
	for _, r := range rooms {
		if !strings.Contains(said[0], "#"+r) {
			t.Errorf("the notice %q does not name #%s", said[0], r)
		}
		if gs := gaps(nia, r); len(gs) != 1 {
			t.Errorf("#%s has %d gap dividers (%q), want one", r, len(gs), gs)
		}
	}

	// Chatting goes on in every room.
	for _, r := range rooms {
		nia.do("opening #"+r, chromedp.Click(chromedp.CSS(`.room-btn[data-room=`+r+`]`)))
		nia.say("after the restart in " + r)
		nia.waitFor("confirmed", hasText(r, "after the restart in "+r)+` && !document.querySelector('.outbox > li')`)
		checkTranscript(t, nia, r, []string{"before the restart in " + r, "after the restart in " + r})
	}
}
