package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"

	"github.com/chatgate/chatgate/gateway/protocol"
	"github.com/chatgate/chatgate/internal/gatewaytest"
)

const waitTimeout = 15 * time.Second

var statusClient = &http.Client{Timeout: time.Second}

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// envelopes reads one message and splits it into envelopes.
func envelopes(conn *websocket.Conn) ([]map[string]any, error) {
	_ = conn.SetReadDeadline(time.Now().Add(waitTimeout))
	_, data, err := conn.ReadMessage()
	if err != nil {
		return nil, err
	}
	var out []map[string]any
	for _, line := range strings.Split(string(data), "\n") {
		var env map[string]any
		if err := json.Unmarshal([]byte(line), &env); err != nil {
			return nil, fmt.Errorf("bad envelope %q: %v", line, err)
		}
		out = append(out, env)
	}
	return out, nil
}

// TestSIGTERMDrain runs the real binary: after SIGTERM readiness fails at
// once, new WebSockets are refused, every client gets every acked message
// (including messages sent during the drain delay) and then 1001 with a
// retry hint; the drain is summed up in one log line; /metrics keeps
// serving the final counts after the last client is closed, for
// --drain-linger; and the process exits 0.
func TestSIGTERMDrain(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := gatewaytest.Build(t)
	const linger = 3 * time.Second
	p := gatewaytest.Start(t, bin, "--drain-delay", "2s", "--drain-window", "300ms", "--shutdown-timeout", "10s",
		"--drain-linger", linger.String(), "--send-rate", "1000", "--send-burst", "1000")
	// Ready follows the "listening" line Start waits for: wait for it.
	for deadline := time.Now().Add(waitTimeout); ; {
		got := p.Status(statusClient, "/readyz")
		if got == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz = %d before the drain", got)
		}
		time.Sleep(10 * time.Millisecond)
	}
	url := "ws://" + p.ChatAddr + "/ws?room=r"
	const members, msgs = 3, 30
	conns := make([]*websocket.Conn, members)
	for i := range conns {
		c, _, err := websocket.DefaultDialer.Dial(url+fmt.Sprintf("&name=u%d", i), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns[i] = c
	}
	// Everyone must be joined before the sends, or not all are members.
	var base float64 // the room's seq before the first message
	for i, c := range conns {
		for joined := false; !joined; {
			envs, err := envelopes(c)
			if err != nil {
				t.Fatalf("client %d: %v", i, err)
			}
			for _, e := range envs {
				if e["type"] == "joined" {
					joined, base = true, e["seq"].(float64)
				}
			}
		}
	}
	got := make([][]float64, members)
	for i := 0; i < msgs; i++ {
		b := fmt.Appendf(nil, `{"type":"send","room":"r","text":"m%d","ref":"%d"}`, i, i)
		if err := conns[0].WriteMessage(websocket.TextMessage, b); err != nil {
			t.Fatal(err)
		}
	}
	for acks := 0; acks < msgs; {
		envs, err := envelopes(conns[0])
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range envs {
			switch e["type"] {
			case "ack":
				acks++
			case "message":
				got[0] = append(got[0], e["seq"].(float64))
			}
		}
	}

	if err := p.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(waitTimeout)
	for p.Status(statusClient, "/readyz") != http.StatusServiceUnavailable {
		if time.Now().After(deadline) {
			t.Fatal("/readyz never failed after SIGTERM")
		}
	}
	// Still inside the drain delay: the listener is up but refuses.
	if _, resp, err := websocket.DefaultDialer.Dial(url, nil); err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("dial during the drain delay: err=%v resp=%v; want 503", err, resp)
	}
	// Existing connections still chat: these count in the drain summary.
	const during = 10
	for i := 0; i < during; i++ {
		b := fmt.Appendf(nil, `{"type":"send","room":"r","text":"d%d","ref":"d%d"}`, i, i)
		if err := conns[0].WriteMessage(websocket.TextMessage, b); err != nil {
			t.Fatal(err)
		}
	}
	for acks := 0; acks < during; {
		envs, err := envelopes(conns[0])
		if err != nil {
			t.Fatalf("acks during the drain delay: %v", err)
		}
		for _, e := range envs {
			switch e["type"] {
			case "ack":
				acks++
			case "message":
				got[0] = append(got[0], e["seq"].(float64))
			}
		}
	}

	for i, c := range conns {
		var closeErr *websocket.CloseError
		for closeErr == nil {
			envs, err := envelopes(c)
			if err != nil {
				if !errors.As(err, &closeErr) {
					t.Fatalf("client %d ended with %v; want a close frame", i, err)
				}
				break
			}
			for _, e := range envs {
				if e["type"] == "message" {
					got[i] = append(got[i], e["seq"].(float64))
				}
			}
		}
		if closeErr.Code != protocol.CloseGoingAway {
			t.Fatalf("client %d: close %d %q; want 1001", i, closeErr.Code, closeErr.Text)
		}
		reason, ok := protocol.ParseCloseReason(closeErr.Text)
		if !ok || reason.R != "drain" || reason.RetryMs <= 0 {
			t.Fatalf("client %d: close reason %q", i, closeErr.Text)
		}
		if len(got[i]) != msgs+during {
			t.Fatalf("client %d got %d of %d acked messages", i, len(got[i]), msgs+during)
		}
		for j, seq := range got[i] {
			if seq != base+float64(j+1) {
				t.Fatalf("client %d: message %d has seq %v", i, j, seq)
			}
		}
	}
	lastClosed := time.Now()

	// One summary line: every client closed by the drain, what it delivered.
	sum := p.LogRecord(t, "drain summary", waitTimeout)
	closed, _ := sum["closed"].(map[string]any)
	flushed, _ := sum["messages_flushed"].(float64)
	if sum["clients"] != float64(members) || closed["drain"] != float64(members) || len(closed) != 1 ||
		sum["clean"] != true || flushed < members*during || !(sum["duration_ms"].(float64) > 0) {
		t.Fatalf("drain summary %v; want %d clients, all closed by drain, at least %d messages flushed, clean", sum, members, members*during)
	}
	t.Logf("drain summary: %v", sum)

	// The admin listener outlives the last client: the final counts can
	// still be scraped, for the linger and not much longer.
	final := fmt.Sprintf("chatgate_disconnects_total{reason=\"drain\"} %d\n", members)
	for {
		code, body := p.Get(statusClient, "/metrics")
		if code == http.StatusOK && strings.Contains(body, final) && strings.Contains(body, "chatgate_drain_remaining_connections 0\n") {
			break
		}
		if time.Since(lastClosed) > linger/2 {
			t.Fatalf("/metrics after the last close: %d, final counts not shown (want %q)", code, final)
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(linger / 3) // well inside the linger
	if code, body := p.Get(statusClient, "/metrics"); code != http.StatusOK || !strings.Contains(body, final) {
		t.Fatalf("/metrics %v after the last client closed: %d; want the final counts until the linger (%v) ends", time.Since(lastClosed), code, linger)
	}
	if code := p.Status(statusClient, "/readyz"); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz during the linger: %d; want 503", code)
	}
	select {
	case <-p.Exited:
		if err := p.ExitErr(); err != nil {
			t.Fatalf("gateway exited with %v; want 0", err)
		}
		if took := time.Since(lastClosed); took > linger+2*time.Second {
			t.Fatalf("gateway exited %v after the last close; the linger is %v", took, linger)
		}
	case <-time.After(waitTimeout):
		t.Fatal("gateway did not exit after the drain")
	}
}

func TestMainConfigErrors(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := gatewaytest.Build(t)
	cases := []struct {
		name string
		args []string
		env  []string
		code int
		want string
	}{
		{"help", []string{"--help"}, nil, 0, "CHATGATE_SEND_RATE"},
		{"bad flag value", []string{"--send-rate", "-1"}, nil, 2, "--send-rate must be positive"},
		{"bad env value", nil, []string{"CHATGATE_PONG_TIMEOUT=soon"}, 2, "CHATGATE_PONG_TIMEOUT"},
		{"unknown flag", []string{"--nope"}, nil, 2, "chatgate: unknown flag --nope\nRun 'chatgate --help' for the flags.\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(bin, tc.args...)
			cmd.Env = append(os.Environ(), tc.env...)
			out, err := cmd.CombinedOutput()
			code := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tc.code || !strings.Contains(string(out), tc.want) {
				t.Fatalf("exit %d, output:\n%s\nwant exit %d and %q", code, out, tc.code, tc.want)
			}
			// A bad setting is one line and the hint, never the usage.
			if lines := strings.Split(strings.TrimSpace(string(out)), "\n"); code == 2 && (len(lines) != 2 || lines[1] != "Run 'chatgate --help' for the flags.") {
				t.Fatalf("a bad setting printed:\n%s", out)
			}
		})
	}
}
