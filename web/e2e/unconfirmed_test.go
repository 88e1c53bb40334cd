package e2e

import (
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestUnconfirmedSendsAfterADrop covers the sends a dropped connection
// leaves unconfirmed, where the page cannot know whether the server got
// them. A proxy between the page and the gateway swallows traffic and then
// cuts the connection without a close frame (the browser reports 1006):
//
//   - the server sequenced the message but its echo and ack were lost: the
//     page finds it in the replay after rejoining with since (it carries
//     her user id, the same again: the page offers its guest credential)
//     and does not send it again;
//   - the message never reached the server: the replay is complete without
//     it, so the page sends it again.
//
// Either way both people end up with every message exactly once.
//
// Then the gateway restarts (history lost) while an ack is lost: no one
// can tell whether that message was delivered. The page gives up on it
// where it was written, in the log above what is written next (never
// below it, out of order), and "Send again" posts it anew at the end.
func TestUnconfirmedSendsAfterADrop(t *testing.T) {
	g := startGateway(t, testConfig("gw-drop"), "gateway.log", nil)
	px := startProxy(t, g.addr)

	uma := newPage(t, "uma")
	uma.tolerateNetworkErrors()
	obi := newPage(t, "obi")
	// The restart in part 3 refuses connections for a moment.
	obi.tolerateNetworkErrors()
	uma.open(&gw{addr: px.addr()}, "Uma", "lobby") // through the proxy
	obi.open(g, "Obi", "lobby")
	obi.waitFor("Uma online", memberShown("Uma"))

	uma.say("before the trouble")
	uma.waitFor("first message confirmed", hasText("lobby", "before the trouble")+` && !document.querySelector('.outbox > li')`)

	// 1. The server gets the message; its echo and ack never come back.
	px.blockDown.Store(true)
	uma.say("sent, but the ack was lost")
	obi.waitFor("the server delivered it", hasText("lobby", "sent, but the ack was lost"))
	uma.waitFor("still unconfirmed at Uma", `document.querySelector('.outbox > li[data-state=sending]')`)
	px.cut()
	px.blockDown.Store(false)
	uma.waitFor("found in the replay, not sent again", hasText("lobby", "sent, but the ack was lost")+` && !document.querySelector('.outbox > li')`)
	uma.waitJoined("lobby")

	// 2. The message never reaches the server.
	px.blockUp.Store(true)
	uma.say("this one never arrived")
	uma.waitFor("unconfirmed", `document.querySelector('.outbox > li[data-state=sending]')`)
	px.cut()
	px.blockUp.Store(false)
	obi.waitFor("sent again after the reconnect", hasText("lobby", "this one never arrived"))
	uma.waitFor("confirmed at Uma", hasText("lobby", "this one never arrived")+` && !document.querySelector('.outbox > li')`)

	want := []string{"before the trouble", "sent, but the ack was lost", "this one never arrived"}
	for _, p := range []*pg{uma, obi} {
		checkTranscript(t, p, "lobby", want)
		if m := gaps(p, "lobby"); len(m) != 0 {
			t.Errorf("%s: nothing was lost, yet the page shows %q", p.name, m)
		}
	}
	// Uma offers her guest credential on each reconnect: all three are
	// hers under one user id.
	if got := transcript(obi, "lobby"); len(got) == 3 && (got[0].Author != got[1].Author || got[1].Author != got[2].Author) {
		t.Errorf("Uma's messages carry several user ids across the drops: %+v", got)
	}
	checkReconnected(t, uma)
	if !slices.ContainsFunc(eval[[]string](uma, `window.__pendingLog`), func(s string) bool { return s == "unknown sent, but the ack was lost reconnecting" }) {
		t.Errorf("the lost-ack message never showed as unknown: %q", eval[[]string](uma, `window.__pendingLog`))
	}

	// 3. The ack is lost and the gateway restarts with an empty history.
	px.blockDown.Store(true)
	const lost = "lost with the old server"
	uma.say(lost)
	obi.waitFor("the old gateway delivered it", hasText("lobby", lost))
	uma.waitFor("unconfirmed", `document.querySelector('.outbox > li[data-state=sending]')`)
	g.stop(t)
	px.blockDown.Store(false)
	cfg := testConfig("gw-restarted")
	cfg.Addr = g.addr
	startGateway(t, cfg, "gateway-restarted.log", nil)
	const failed = `document.querySelector('.pane[data-room=lobby] .log > li.failed')`
	uma.waitFor("given up, in the log", failed)
	uma.waitJoined("lobby")
	if why := eval[string](uma, failed+`.querySelector('.why').textContent`); !strings.Contains(why, "may not have been delivered") {
		t.Errorf("the failed message says %q", why)
	}
	uma.say("after the restart")
	uma.waitFor("the next message confirmed", hasText("lobby", "after the restart")+` && !document.querySelector('.outbox > li')`)
	if !eval[bool](uma, `(() => {
	  const items = [...document.querySelectorAll('.pane[data-room=lobby] .log > li.msg')];
	  const f = items.findIndex((li) => li.matches('.failed'));
	  const next = items.findIndex((li) => li.textContent.includes('after the restart'));
	  return f >= 0 && next > f;
	})()`) {
		t.Errorf("the failed message is not above the message written after it: %q", eval[[]string](uma,
			`[...document.querySelectorAll('.pane[data-room=lobby] li')].map((li) => li.className + ': ' + (li.querySelector('.text') || li).textContent)`))
	}
	uma.do("sending it again", chromedp.Click(chromedp.CSS(`.pane[data-room=lobby] .log > li.failed button`)))
	uma.waitFor("sent again, at the end", hasText("lobby", lost)+` && !`+failed+` && !document.querySelector('.outbox > li')`)
	checkTranscript(t, uma, "lobby", append(want, "after the restart", lost))
	obi.waitFor("obi gets it again", `[...document.querySelectorAll('.pane[data-room=lobby] .log > li.msg .text')].filter((n) => n.textContent === `+js(lost)+`).length === 2`)
}

// proxy forwards TCP connections to a gateway and can swallow either
// direction and cut every connection, to stage network trouble.
type proxy struct {
	ln        net.Listener
	target    string
	blockUp   atomic.Bool // drop page → gateway bytes
	blockDown atomic.Bool // drop gateway → page bytes
	mu        sync.Mutex
	conns     []net.Conn
	wg        sync.WaitGroup
}

func startProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	px := &proxy{ln: ln, target: target}
	px.wg.Add(1)
	go px.accept()
	t.Cleanup(func() {
		ln.Close()
		px.cut()
		px.wg.Wait()
	})
	return px
}

func (px *proxy) addr() string { return px.ln.Addr().String() }

func (px *proxy) accept() {
	defer px.wg.Done()
	for {
		c, err := px.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.DialTimeout("tcp", px.target, 5*time.Second)
		if err != nil {
			c.Close()
			continue
		}
		px.mu.Lock()
		px.conns = append(px.conns, c, up)
		px.mu.Unlock()
		px.wg.Add(2)
		go px.pipe(up, c, &px.blockUp)
		go px.pipe(c, up, &px.blockDown)
	}
}

// pipe copies src to dst, dropping what arrives while block is set.
func (px *proxy) pipe(dst, src net.Conn, block *atomic.Bool) {
	defer px.wg.Done()
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !block.Load() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if err != io.EOF {
				src.Close()
			}
			return
		}
	}
}

// cut closes every proxied connection at once, with no WebSocket close
// frame: the page sees an abnormal closure (1006).
func (px *proxy) cut() {
	px.mu.Lock()
	conns := px.conns
	px.conns = nil
	px.mu.Unlock()
	for _, c := range conns {
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0) // reset, not a graceful FIN
		}
		c.Close()
	}
}
