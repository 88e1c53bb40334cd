package wstest

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// script serves one connection: it sends each message (a string is one
// text message, envelopes '\n'-separated), where "echo" sends back the
// next message it reads and "wait" reads one, and ends with a close frame
// of code, or lingers until the client goes when code is 0.
func script(t *testing.T, code int, msgs ...string) string {
	t.Helper()
	up := websocket.Upgrader{Subprotocols: []string{"chatgate.v1"}}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer conn.Close()
		for _, m := range msgs {
			if m == "echo" || m == "wait" {
				_, data, err := conn.ReadMessage()
				if err != nil {
					return
				}
				if m == "wait" {
					continue
				}
				m = string(data)
			}
			if conn.WriteMessage(websocket.TextMessage, []byte(m)) != nil {
				return
			}
		}
		if code != 0 {
			_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, "bye"), time.Now().Add(time.Second))
		}
		_, _, _ = conn.ReadMessage() // until the client goes
	}))
	t.Cleanup(ts.Close)
	return "ws" + strings.TrimPrefix(ts.URL, "http")
}

func TestInOrder(t *testing.T) {
	for _, bg := range []bool{false, true} {
		name := "manual"
		if bg {
			name = "background"
		}
		t.Run(name, func(t *testing.T) {
			u := script(t, 4008,
				`{"type":"welcome","user":{"id":"u1"}}`,
				`{"type":"presence","room":"r"}`+"\n"+`{"type":"joined","room":"r","seq":5}`,
				"echo", "wait",
				`{"type":"message","room":"r","seq":6}`+"\n"+`{"type":"ack","room":"r","seq":6,"ref":"a"}`)
			c := Dial(t, u, Options{Background: bg, Welcome: true, Timeout: 5 * time.Second})
			if c.UserID() != "u1" {
				t.Fatalf("user id %q from the welcome", c.UserID())
			}
			if j := c.Expect("joined"); j.U64("seq") != 5 {
				t.Fatalf("joined %v", j)
			}
			c.Send(map[string]any{"type": "pong"})
			if e := c.Next(); e.Type() != "pong" {
				t.Fatalf("the echo is %v", e)
			}
			if r := c.SendWait("r", "x", "a"); r.Seq != 6 || r.Closed {
				t.Fatalf("SendWait %+v; want the ack of seq 6", r)
			}
			c.Next()
			c.Next()
			if reason := c.ExpectClose(4008); reason != "bye" {
				t.Fatalf("close reason %q", reason)
			}
			if got := Seqs(c.Snapshot(), "r"); len(got) != 1 || got[0] != 6 {
				t.Fatalf("Seqs %v", got)
			}
			if closed, code := c.Closed(); !closed || code != 4008 {
				t.Fatalf("Closed %v %d", closed, code)
			}
		})
	}
}

func TestWaits(t *testing.T) {
	u := script(t, 0, `{"type":"joined","room":"r","online":1,"members":[{"id":"a"}]}`,
		`{"type":"presence","room":"r","online":2,"joined":[{"id":"b"}]}`)
	c := Dial(t, u, Options{Timeout: 300 * time.Millisecond})
	c.WaitEnv("b's presence", func(e Env) bool { return e.Type() == "presence" })
	if set, online := Members(c.Snapshot(), "r"); !set["a"] || !set["b"] || online != 2 {
		t.Fatalf("Members %v %d", set, online)
	}
	if _, err := c.TryNext(); err != nil {
		t.Fatal(err)
	}
	c.Next()
	if _, err := c.TryNext(); !errors.Is(err, ErrTimeout) {
		t.Fatalf("TryNext with nothing coming: %v; want ErrTimeout", err)
	}
}

// A send on a connection the server has closed (a client racing a drain)
// reports Closed instead of failing the test.
func TestSendWaitOnClosedConnection(t *testing.T) {
	u := script(t, websocket.CloseGoingAway, `{"type":"welcome","user":{"id":"u1"}}`)
	c := Dial(t, u, Options{Background: true, Welcome: true, Timeout: 5 * time.Second})
	if code := c.WaitClosed(); code != websocket.CloseGoingAway {
		t.Fatalf("closed with %d; want %d", code, websocket.CloseGoingAway)
	}
	if r := c.SendWait("r", "x", "a"); !r.Closed || r.Seq != 0 || r.Code != "" {
		t.Fatalf("SendWait on a closed connection: %+v; want Closed", r)
	}
}
