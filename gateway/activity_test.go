package gateway

import (
	"bufio"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/chatgate/chatgate/gateway/protocol"
)

// jsonLogs is a debug-level JSON logger whose records a test can read.
type jsonLogs struct{ logCapture }

func newJSONLogs(t *testing.T) *jsonLogs { return &jsonLogs{logCapture{t: t}} }

func (l *jsonLogs) logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(&l.logCapture, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// records returns the records with message msg, decoded.
func (l *jsonLogs) records(msg string) []map[string]any {
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(l.String()))
	for sc.Scan() {
		var r map[string]any
		if json.Unmarshal(sc.Bytes(), &r) == nil && r["msg"] == msg {
			out = append(out, r)
		}
	}
	return out
}

// waitRecords waits until n records with message msg have been logged.
func (l *jsonLogs) waitRecords(t *testing.T, msg string, n int) []map[string]any {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		if rs := l.records(msg); len(rs) >= n {
			return rs
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %d %q log records; have %d", n, msg, len(l.records(msg)))
		}
		time.Sleep(10 * time.Millisecond) // polling the log, until the deadline
	}
}

// TestActivityLine: the activity line counts what happened since the
// previous one (connections opened, ended and refused by reason, messages,
// request errors by code, guests by outcome), reports the connections open
// now, and starts again from zero; a window with nothing open and nothing
// counted logs nothing.
func TestActivityLine(t *testing.T) {
	logs := newJSONLogs(t)
	rec := newRecObserver()
	cfg := testConfig()
	cfg.AllowedOrigins = []string{"https://chat.example.com"}
	s := startTestServer(t, cfg, Options{Observer: rec, Logger: logs.logger()}, rec)

	alice := s.dial(t, query("room", "r"))
	alice.Expect("joined")
	bob := s.dial(t, "")
	alice.Send(map[string]any{"type": "send", "room": "r", "text": "hi", "ref": "1"})
	alice.Expect("message")
	alice.Expect("ack")
	bob.Send(map[string]any{"type": "send", "room": "nowhere", "text": "hi", "ref": "2"})
	bob.Expect("error")
	resp := s.dialStatus(t, "", http.Header{"Origin": {"https://evil.example.com"}})
	resp.Body.Close()
	_ = bob.Conn().WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	waitClosed(t, s, 1)

	s.srv.activity.log(s.srv.log, time.Minute, s.srv.Conns())
	got := logs.records("activity")
	if len(got) != 1 {
		t.Fatalf("%d activity lines; want 1", len(got))
	}
	want := map[string]any{
		"level": "INFO", "msg": "activity", "window": "1m0s", "conns": 1.0,
		"opened": 2.0, "closed": 1.0, "closed_by": map[string]any{"client_close": 1.0},
		"rejected": 1.0, "rejected_by": map[string]any{"origin": 1.0},
		"messages": 1.0, "request_errors": 1.0, "request_errors_by": map[string]any{"not_joined": 1.0},
		"guests": map[string]any{"new": 2.0},
	}
	delete(got[0], "time")
	if !reflect.DeepEqual(got[0], want) {
		t.Fatalf("activity line\n got %v\nwant %v", got[0], want)
	}

	// The next window starts from zero; alice is still connected.
	s.srv.activity.log(s.srv.log, time.Minute, s.srv.Conns())
	got = logs.records("activity")
	if len(got) != 2 || got[1]["opened"] != 0.0 || got[1]["messages"] != 0.0 || got[1]["conns"] != 1.0 {
		t.Fatalf("second activity line %v; want zero counts and one connection", got[len(got)-1])
	}
	alice.Close()
	waitClosed(t, s, 2)
	s.srv.activity.log(s.srv.log, time.Minute, s.srv.Conns()) // alice's close
	s.srv.activity.log(s.srv.log, time.Minute, s.srv.Conns()) // nothing at all
	if n := len(logs.records("activity")); n != 3 {
		t.Fatalf("%d activity lines; want 3 (an idle window logs nothing)", n)
	}
}

// TestRunLogsActivity: Run logs the activity line every period (a minute;
// shorter here) while it serves.
func TestRunLogsActivity(t *testing.T) {
	logs := newJSONLogs(t)
	cfg := testConfig()
	cfg.Addr, cfg.AdminAddr = "127.0.0.1:0", ""
	cfg.ShutdownTimeout = 5 * time.Second
	srv, err := New(cfg, Options{Broker: testHub(t, 0), Logger: logs.logger()})
	if err != nil {
		t.Fatal(err)
	}
	srv.activity.every = 20 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	listening := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, srv, RunOptions{Listening: func(chat, _ net.Addr) { listening <- chat }})
	}()
	addr := <-listening
	d := &websocket.Dialer{HandshakeTimeout: waitTimeout, Subprotocols: []string{protocol.Subprotocol}}
	conn, _, err := d.Dial("ws://"+addr.String()+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	logs.waitRecords(t, "activity", 2)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// TestConnectionDebugLogs: each connection's open and close are logged at
// debug, with its id, and the close with its reason.
func TestConnectionDebugLogs(t *testing.T) {
	logs := newJSONLogs(t)
	rec := newRecObserver()
	s := startTestServer(t, testConfig(), Options{Observer: rec, Logger: logs.logger()}, rec)
	c := s.dial(t, query("name", "alice"))
	id := s.onlyClient(t).id
	c.Close()
	waitClosed(t, s, 1)
	open := logs.waitRecords(t, "connected", 1)[0]
	closed := logs.waitRecords(t, "disconnected", 1)[0]
	if open["level"] != "DEBUG" || open["conn"] != id || open["user"] == nil || open["ip"] == nil {
		t.Fatalf("open logged as %v; want debug with conn %s, user and ip", open, id)
	}
	if closed["level"] != "DEBUG" || closed["conn"] != id || closed["reason"] != "read_error" && closed["reason"] != "client_close" {
		t.Fatalf("close logged as %v; want debug with conn %s and the reason", closed, id)
	}
}
