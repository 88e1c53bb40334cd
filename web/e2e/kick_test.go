package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/chatgate/chatgate/gateway/broker"
	"github.com/chatgate/chatgate/gateway/hub"
)

// A user the application's backend disconnects through the server API
// (4403 kicked) is told so and the page does not reconnect on its own, as
// protocol.md asks of clients; its Reconnect button brings it back.
func TestKickedPageStaysDisconnected(t *testing.T) {
	h := hub.New(hub.Config{})
	t.Cleanup(h.Close)
	g := startGateway(t, testConfig("kick"), "kick-gateway.log", h)
	p := newRecordedPage(t, "kicked")
	p.tolerateNetworkErrors()
	p.open(g, "Dana", "lobby")

	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	pres, perr := h.Presence(ctx, "lobby")
	if perr != nil || len(pres.Users) != 1 {
		t.Fatalf("presence of lobby: %+v, %v; want the page's one user", pres, perr)
	}
	if n, perr := h.Disconnect(ctx, broker.Target{User: pres.Users[0].ID}); perr != nil || n != 1 {
		t.Fatalf("Disconnect: %d connections, %v; want 1", n, perr)
	}

	p.waitFor("status kicked", `document.getElementById('status').dataset.state === 'kicked'`)
	p.waitFor("the Reconnect button", `!document.getElementById('retry-now').hidden && document.getElementById('retry-now').textContent === 'Reconnect'`)
	p.waitFor("the notice", `!document.getElementById('toast').hidden && document.getElementById('toast-text').textContent.includes('The service disconnected you')`)
	if s := sockets(p); len(s) != 1 || s[0].Close != `4403 {"r":"kicked"}` {
		t.Fatalf("sockets = %+v, want one closed with 4403 kicked", s)
	}
	time.Sleep(2 * time.Second) // a bounded window in which a reconnect would show
	if n := len(sockets(p)); n != 1 {
		t.Fatalf("after the kick the page opened %d sockets, want no new attempt", n)
	}

	p.do("pressing Reconnect", chromedp.Click(chromedp.ID("retry-now")))
	p.waitJoined("lobby")
	if n := len(sockets(p)); n != 2 {
		t.Fatalf("after Reconnect the page opened %d sockets in all, want 2", n)
	}
}
