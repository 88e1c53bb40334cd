package k8s_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/chatgate/chatgate/gateway"
	"github.com/chatgate/chatgate/gateway/protocol"
	"github.com/chatgate/chatgate/internal/gatewaytest"
	"github.com/chatgate/chatgate/internal/natstest"
)

// TestEntrypointDrain runs the real binary the way the Deployment does:
// its command and args, the ConfigMap as environment (the backplane pointed
// at an embedded single-node JetStream server), then checks readiness and
// that SIGTERM drains and exits 0 within terminationGracePeriodSeconds.
func TestEntrypointDrain(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the gateway")
	}
	_, dep, cm := base(t)
	c := gatewayContainer(t, dep)
	if len(c.Command) > 0 {
		t.Fatalf("the image's ENTRYPOINT runs the gateway; the container must not override command, got %v", c.Command)
	}

	ns := natstest.Start(t, "k8s-test")

	for k, v := range cm.Data {
		t.Setenv(k, v)
	}
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			t.Setenv(e.Name, e.Value)
		}
	}
	t.Setenv("CHATGATE_BACKPLANE", ns.URL())
	t.Setenv("CHATGATE_STREAM_REPLICAS", "1") // one embedded server
	// gatewaytest.Start listens on loopback ports of its choosing (its
	// --addr/--admin-addr flags win over the ConfigMap's :8080/:9090).
	bin := gatewaytest.Build(t)
	p := gatewaytest.Start(t, bin, c.Args...)

	hc := &http.Client{Timeout: 2 * time.Second}
	ready := time.Now().Add(20 * time.Second)
	for p.Status(hc, "/readyz") != http.StatusOK {
		if time.Now().After(ready) {
			t.Fatal("/readyz never returned 200")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got := p.Status(hc, "/livez"); got != http.StatusOK {
		t.Fatalf("/livez = %d", got)
	}

	// A user in a room, with a message acknowledged before the drain.
	ws := dialUser(t, p.ChatAddr)
	ws.waitFor(t, "joined")
	if err := ws.conn.WriteMessage(websocket.TextMessage, []byte(`{"type":"send","room":"lobby","text":"before the drain","ref":"r1"}`)); err != nil {
		t.Fatal(err)
	}
	ws.waitFor(t, "ack")

	start := time.Now()
	if err := p.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// Readiness must fail during the drain delay while the process keeps serving.
	notReady := time.Now().Add(3 * time.Second)
	for p.Status(hc, "/readyz") == http.StatusOK {
		if time.Now().After(notReady) {
			t.Fatal("/readyz still 200 after SIGTERM")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := p.Status(hc, "/livez"); got != http.StatusOK {
		t.Errorf("/livez = %d during the drain delay, want 200 (the kubelet must not restart a draining pod)", got)
	}

	// The user is closed with 1001 and a reconnect hint, after its own
	// acknowledged message was delivered.
	code, reason := ws.waitClose(t)
	if code != websocket.CloseGoingAway || !strings.Contains(reason, `"r":"drain"`) || !strings.Contains(reason, `"retry_ms"`) {
		t.Errorf("drained user closed with %d %q, want 1001 with a drain reason and retry_ms", code, reason)
	}
	if !ws.saw["message"] {
		t.Error("the acknowledged message never reached its sender before the drain closed it")
	}

	grace := time.Duration(*dep.Spec.Template.Spec.TerminationGracePeriodSeconds) * time.Second
	select {
	case <-p.Exited:
	case <-time.After(grace):
		t.Fatalf("gateway did not exit within terminationGracePeriodSeconds (%v) of SIGTERM", grace)
	}
	if err := p.ExitErr(); err != nil {
		t.Fatalf("gateway exited with %v after SIGTERM, want status 0", err)
	}
	took := time.Since(start)
	t.Logf("SIGTERM to exit: %v (grace %v)", took, grace)
	if d := mustDuration(t, cm, "CHATGATE_DRAIN_DELAY"); took < d {
		t.Errorf("exited after %v, before the drain delay %v", took, d)
	}
}

// user is a WebSocket client of the running binary.
type user struct {
	conn *websocket.Conn
	saw  map[string]bool // envelope types received
}

func dialUser(t *testing.T, chatAddr string) *user {
	t.Helper()
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second, Subprotocols: []string{protocol.Subprotocol}}
	conn, _, err := d.Dial("ws://"+chatAddr+gateway.WebSocketPath+"?room=lobby", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &user{conn: conn, saw: map[string]bool{}}
}

// read reads one WebSocket message and records the types of the
// newline-separated envelopes it carries.
func (u *user) read(deadline time.Time) error {
	_ = u.conn.SetReadDeadline(deadline)
	_, msg, err := u.conn.ReadMessage()
	if err != nil {
		return err
	}
	for _, line := range bytes.Split(msg, []byte("\n")) {
		var env struct {
			Type string `json:"type"`
		}
		if json.Unmarshal(line, &env) == nil {
			u.saw[env.Type] = true
		}
	}
	return nil
}

func (u *user) waitFor(t *testing.T, typ string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !u.saw[typ] {
		if err := u.read(deadline); err != nil {
			t.Fatalf("waiting for %s: %v", typ, err)
		}
	}
}

// waitClose reads until the gateway closes the connection and returns the
// close code and reason.
func (u *user) waitClose(t *testing.T) (int, string) {
	t.Helper()
	deadline := time.Now().Add(40 * time.Second)
	for {
		err := u.read(deadline)
		if err == nil {
			continue
		}
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			return ce.Code, ce.Text
		}
		t.Fatalf("connection ended without a close frame: %v", err)
	}
}
