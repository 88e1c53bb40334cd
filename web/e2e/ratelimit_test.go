package e2e

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/chatgate/chatgate/gateway"
	"github.com/chatgate/chatgate/gateway/observe"
)

// rateObserver counts the sends and joins the gateway refused for a rate
// limit.
type rateObserver struct {
	observe.Nop
	rateLimited atomic.Int64
}

func (o *rateObserver) RequestRejected(code string) {
	if code == "rate_limited" {
		o.rateLimited.Add(1)
	}
}

// typeQuickly enters each text and presses Enter, in one go.
func typeQuickly(p *pg, texts ...string) {
	p.t.Helper()
	steps := []chromedp.Action[chromedp.Void]{chromedp.Focus(chromedp.ID("composer-text"))}
	for _, m := range texts {
		steps = append(steps, insertText(m), pressEnter(false))
	}
	p.do("typing "+strings.Join(texts, ", "), steps...)
}

// pendingLog returns every state an unconfirmed message went through.
func pendingLog(p *pg) []string {
	p.t.Helper()
	return eval[[]string](p, `window.__pendingLog`)
}

var countdownRE = regexp.MustCompile(`in (\d+)s$`)

// countdowns returns the distinct second counts the rate-limit notice
// showed whose text contains words.
func countdowns(p *pg, words string) []string {
	p.t.Helper()
	var out []string
	for _, h := range eval[[]string](p, `window.__holdLog`) {
		if m := countdownRE.FindStringSubmatch(h); m != nil && strings.Contains(h, words) && !slices.Contains(out, m[1]) {
			out = append(out, m[1])
		}
	}
	return out
}

// Writing faster than --send-rate/--send-burst: the page paces its sends
// by the limits welcome announced, so the gateway never has to refuse one.
// The messages over the burst wait their turn in the order they were
// written, under a notice whose countdown ticks, and all arrive in order.
func TestRateLimitPacedInOrder(t *testing.T) {
	cfg := testConfig("gw-pace")
	cfg.SendRate, cfg.SendBurst = 0.5, 2 // a token every 2 s, 2 at once
	cfg.UserSendRate, cfg.UserSendBurst = 1, 4
	obs := &rateObserver{}
	g := startGatewayWith(t, cfg, "gateway.log", gateway.Options{Observer: obs})
	rita := newPage(t, "rita")
	rita.open(g, "Rita", "lobby")

	want := []string{"one", "two", "three", "four"}
	typeQuickly(rita, want...)
	rita.waitFor("one and two delivered", hasText("lobby", "one")+" && "+hasText("lobby", "two"))
	rita.waitFor("the pacing notice", `!document.getElementById('ratelimit').hidden`)
	if got := pendingStates(rita, "lobby"); !slices.Equal(got, []string{"queued: three", "queued: four"}) {
		t.Errorf("while paced, the outbox shows %q, want three then four waiting", got)
	}
	rita.screenshot(artifactDir(t), "paced.png")
	rita.waitFor("all delivered", hasText("lobby", "four")+` && !document.querySelector('.outbox > li')`)
	rita.waitFor("notice gone", `document.getElementById('ratelimit').hidden`)

	checkTranscript(t, rita, "lobby", want)
	if n := obs.rateLimited.Load(); n != 0 {
		t.Errorf("the gateway refused %d sends; the page should have paced them", n)
	}
	for _, s := range pendingLog(rita) {
		if strings.HasPrefix(s, "failed") || strings.HasPrefix(s, "retrying") {
			t.Errorf("a message went %q", s)
		}
	}
	// "four" waited about 4 s: the countdown showed several values.
	if c := countdowns(rita, "writing faster"); len(c) < 2 {
		t.Errorf("the notice counted down %q; want a live countdown (several values) in %q", c, eval[[]string](rita, `window.__holdLog`))
	}
}

// Two people on one address (two browsers on one machine, or tabs) share
// its send budget (--user-send-rate/--user-send-burst): together they
// write faster than it allows, so the gateway refuses some sends. A refused message is sent
// again by itself after retry_after_ms, before anything written after it:
// each person's messages arrive in the order they were written, nothing
// is left "not sent", and the waiting message counts down.
func TestRateLimitSharedBudgetKeepsOrder(t *testing.T) {
	cfg := testConfig("gw-shared")
	cfg.SendRate, cfg.SendBurst = 20, 20 // each tab alone is never limited
	cfg.UserSendRate, cfg.UserSendBurst = 1, 2
	obs := &rateObserver{}
	g := startGatewayWith(t, cfg, "gateway.log", gateway.Options{Observer: obs})
	ann := newPage(t, "ann")
	ann.open(g, "Ann", "lobby")
	ben := newPage(t, "ben")
	ben.open(g, "Ben", "lobby")
	ann.waitFor("Ben online", memberShown("Ben"))

	const n = 4
	var annSays, benSays []string
	for i := 1; i <= n; i++ {
		a, b := fmt.Sprintf("ann %d", i), fmt.Sprintf("ben %d", i)
		annSays, benSays = append(annSays, a), append(benSays, b)
		typeQuickly(ann, a)
		typeQuickly(ben, b)
	}
	for _, p := range []*pg{ann, ben} {
		p.waitFor("every message delivered", hasText("lobby", annSays[n-1])+" && "+hasText("lobby", benSays[n-1])+
			` && !document.querySelector('.pane[data-room=lobby] .outbox > li')`)
	}
	if obs.rateLimited.Load() == 0 {
		t.Fatal("the gateway refused nothing: the shared budget was not exceeded and the test proved nothing")
	}
	for _, p := range []*pg{ann, ben} {
		got := transcript(p, "lobby")
		if len(got) != 2*n {
			t.Errorf("%s sees %d messages (%q), want %d", p.name, len(got), texts(got), 2*n)
		}
		var fromAnn, fromBen []string
		for _, m := range got {
			switch m.Name {
			case "Ann":
				fromAnn = append(fromAnn, m.Text)
			case "Ben":
				fromBen = append(fromBen, m.Text)
			}
		}
		if !slices.Equal(fromAnn, annSays) || !slices.Equal(fromBen, benSays) {
			t.Errorf("%s sees Ann %q and Ben %q; each in the order written", p.name, fromAnn, fromBen)
		}
		if k := eval[int](p, `document.querySelectorAll('li.failed').length`); k != 0 {
			t.Errorf("%s: %d messages marked not sent", p.name, k)
		}
	}
	// Whoever was refused saw the message wait and count down, and it went
	// again by itself.
	refused := 0
	for _, p := range []*pg{ann, ben} {
		log := pendingLog(p)
		if !slices.ContainsFunc(log, func(s string) bool { return strings.HasPrefix(s, "retrying") }) {
			continue
		}
		refused++
		if c := countdowns(p, "asked this page to slow down"); len(c) == 0 {
			t.Errorf("%s: a message was refused but the notice never counted down (%q)", p.name, eval[[]string](p, `window.__holdLog`))
		}
	}
	if refused == 0 {
		t.Errorf("the gateway refused %d sends but neither page showed a message waiting to go again", obs.rateLimited.Load())
	}
}
