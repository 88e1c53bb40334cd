// Package gatewaytest builds and runs the real chatgate binary for
// end-to-end tests: the process is started on loopback ports of its own
// choosing, which are learned from its "listening" log line.
package gatewaytest

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// StartTimeout bounds how long Start waits for the process to listen.
const StartTimeout = 30 * time.Second

// Build compiles cmd/chatgate into the test's temp dir and returns its path.
func Build(t testing.TB) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	out, err := exec.Command(goBin, "env", "GOMOD").Output()
	mod := strings.TrimSpace(string(out))
	if err != nil || mod == "" || mod == "/dev/null" {
		t.Fatalf("finding the module root: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "chatgate")
	cmd := exec.Command(goBin, "build", "-o", bin, "./cmd/chatgate")
	cmd.Dir = filepath.Dir(mod)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/chatgate: %v\n%s", err, out)
	}
	return bin
}

// Proc is a running gateway process.
type Proc struct {
	Cmd       *exec.Cmd
	ChatAddr  string // host:port of --addr
	AdminAddr string // host:port of --admin-addr
	APIAddr   string // host:port of --api-addr, when given
	// Exited is closed once the process has exited and its log is read.
	Exited  chan struct{}
	exitErr error

	mu      sync.Mutex
	records []map[string]any // the JSON log lines so far; guarded by mu
	logged  chan struct{}    // closed and replaced when records grows; guarded by mu
}

// LogRecord waits until the process has logged a JSON line whose msg is
// msg and returns it; it fails the test if the process exits or timeout
// passes first.
func (p *Proc) LogRecord(t testing.TB, msg string, timeout time.Duration) map[string]any {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		p.mu.Lock()
		for _, rec := range p.records {
			if rec["msg"] == msg {
				p.mu.Unlock()
				return rec
			}
		}
		logged := p.logged
		p.mu.Unlock()
		select {
		case <-logged:
		case <-p.Exited:
			p.mu.Lock()
			for _, rec := range p.records {
				if rec["msg"] == msg {
					p.mu.Unlock()
					return rec
				}
			}
			p.mu.Unlock()
			t.Fatalf("the gateway exited without logging %q", msg)
		case <-deadline.C:
			t.Fatalf("the gateway did not log %q within %v", msg, timeout)
		}
	}
}

// ExitErr is the process's exit error (nil for status 0); valid once
// Exited is closed.
func (p *Proc) ExitErr() error {
	<-p.Exited
	return p.exitErr
}

// Start runs bin with JSON logs on loopback ports (args may add flags) and
// waits until it listens. Its log goes to t.Logf; the test's cleanup kills
// it if it is still running.
func Start(t testing.TB, bin string, args ...string) *Proc {
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
	p := &Proc{Cmd: cmd, Exited: make(chan struct{}), logged: make(chan struct{})}
	listening := make(chan map[string]any, 1)
	logged := make(chan struct{})
	go func() {
		defer close(logged)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			t.Logf("gateway: %s", line)
			var rec map[string]any
			if json.Unmarshal([]byte(line), &rec) != nil {
				continue
			}
			p.mu.Lock()
			p.records = append(p.records, rec)
			close(p.logged)
			p.logged = make(chan struct{})
			p.mu.Unlock()
			if rec["msg"] == "listening" {
				select {
				case listening <- rec:
				default:
				}
			}
		}
	}()
	go func() {
		<-logged
		p.exitErr = cmd.Wait()
		close(p.Exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.Exited
	})
	select {
	case rec := <-listening:
		p.ChatAddr, _ = rec["addr"].(string)
		p.AdminAddr, _ = rec["admin_addr"].(string)
		p.APIAddr, _ = rec["api_addr"].(string)
	case <-p.Exited:
		t.Fatalf("gateway exited before listening: %v", p.exitErr)
	case <-time.After(StartTimeout):
		t.Fatal("gateway did not log that it listens")
	}
	return p
}

// Status GETs path on the admin listener and returns the HTTP status, or
// 0 if the request failed.
func (p *Proc) Status(hc *http.Client, path string) int {
	resp, err := hc.Get("http://" + p.AdminAddr + path)
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// Get GETs path on the admin listener and returns the HTTP status and the
// body; status 0 if the request failed.
func (p *Proc) Get(hc *http.Client, path string) (int, string) {
	resp, err := hc.Get("http://" + p.AdminAddr + path)
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, ""
	}
	return resp.StatusCode, string(body)
}
