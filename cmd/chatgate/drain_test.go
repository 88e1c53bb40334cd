package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"

	"github.com/chatgate/chatgate/gateway/protocol"
)

const waitTimeout = 15 * time.Second

var (
	binDir   string
	binOnce  sync.Once
	binPath  string
	binError error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "chatgate-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// buildBinary compiles the command once for the whole test binary.
func buildBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		goBin, err := exec.LookPath("go")
		if err != nil {
			goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
		}
		binPath = filepath.Join(binDir, "chatgate")
		out, err := exec.Command(goBin, "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			binError = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binError != nil {
		t.Fatal(binError)
	}
	return binPath
}

// gatewayProc is the real binary running as a subprocess.
type gatewayProc struct {
	cmd       *exec.Cmd
	chatAddr  string
	adminAddr string
	exited    chan struct{} // closed when the process has exited
	exitErr   error         // valid once exited is closed
}

func startGateway(t *testing.T, bin string, args ...string) *gatewayProc {
	t.Helper()
	args = append([]string{"--addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--log-format", "json"}, args...)
	cmd := exec.Command(bin, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &gatewayProc{cmd: cmd, exited: make(chan struct{})}
	listening := make(chan map[string]any, 1)
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			t.Logf("gateway: %s", line)
			var rec map[string]any
			if json.Unmarshal([]byte(line), &rec) == nil && rec["msg"] == "listening" {
				listening <- rec
			}
		}
	}()
	go func() {
		<-copied
		p.exitErr = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		select {
		case <-p.exited:
		case <-time.After(waitTimeout):
		}
	})
	select {
	case rec := <-listening:
		p.chatAddr, _ = rec["addr"].(string)
		p.adminAddr, _ = rec["admin_addr"].(string)
	case <-p.exited:
		t.Fatalf("gateway exited before listening: %v", p.exitErr)
	case <-time.After(waitTimeout):
		t.Fatal("gateway did not report listening")
	}
	return p
}

func (p *gatewayProc) status(t *testing.T, path string) int {
	t.Helper()
	c := &http.Client{Timeout: time.Second}
	resp, err := c.Get("http://" + p.adminAddr + path)
	if err != nil {
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

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
// and then 1001 with a retry hint, and the process exits 0.
func TestSIGTERMDrain(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	p := startGateway(t, bin, "--drain-delay", "1s", "--drain-window", "300ms", "--shutdown-timeout", "10s", "--send-rate", "1000", "--send-burst", "1000")
	if got := p.status(t, "/readyz"); got != http.StatusOK {
		t.Fatalf("/readyz = %d before the drain", got)
	}
	url := "ws://" + p.chatAddr + "/ws?room=r"
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

	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(waitTimeout)
	for p.status(t, "/readyz") != http.StatusServiceUnavailable {
		if time.Now().After(deadline) {
			t.Fatal("/readyz never failed after SIGTERM")
		}
	}
	// Still inside the drain delay: the listener is up but refuses.
	if _, resp, err := websocket.DefaultDialer.Dial(url, nil); err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("dial during the drain delay: err=%v resp=%v; want 503", err, resp)
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
		if len(got[i]) != msgs {
			t.Fatalf("client %d got %d of %d acked messages", i, len(got[i]), msgs)
		}
		for j, seq := range got[i] {
			if seq != base+float64(j+1) {
				t.Fatalf("client %d: message %d has seq %v", i, j, seq)
			}
		}
	}
	select {
	case <-p.exited:
		if p.exitErr != nil {
			t.Fatalf("gateway exited with %v; want 0", p.exitErr)
		}
	case <-time.After(waitTimeout):
		t.Fatal("gateway did not exit after the drain")
	}
}

func TestMainConfigErrors(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
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
		{"unknown flag", []string{"--nope"}, nil, 2, "flag provided but not defined"},
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
		})
	}
}
