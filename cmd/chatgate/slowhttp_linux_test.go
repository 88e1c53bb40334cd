package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"golang.org/x/sys/unix"

	"github.com/chatgate/chatgate/gateway/protocol"
	"github.com/chatgate/chatgate/internal/gatewaytest"
)

// slowKinds are the requests a slow client trickles to hold a connection:
// a chunked POST whose body never ends, and headers that never end.
var slowKinds = []struct {
	name, start, more string
}{
	{"chunked POST", "POST / HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n", "1\r\na\r\n"},
	{"endless headers", "GET / HTTP/1.1\r\nHost: gw\r\n", "X-Slow: a\r\n"},
}

// slowClient opens a connection from ip to addr, starts a request of kind
// and trickles more of it every interval until the server closes the
// connection or stop is closed. It reports whether the server closed it.
func slowClient(ip, addr string, kind int, interval time.Duration, stop <-chan struct{}) (closedByServer bool, err error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 2 * time.Second}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		return false, err
	}
	defer conn.Close()
	k := slowKinds[kind]
	_ = conn.SetWriteDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.WriteString(conn, k.start); err != nil {
		return true, nil
	}
	// The server's answer or close ends the wait; a write into a closed
	// connection fails soon after too.
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		_, _ = io.Copy(io.Discard, conn)
	}()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			conn.Close()
			<-closed
			return false, nil
		case <-closed:
			return true, nil
		case <-tick.C:
			_ = conn.SetWriteDeadline(time.Now().Add(2 * time.Second))
			if _, err := io.WriteString(conn, k.more); err != nil {
				conn.Close()
				<-closed
				return true, nil
			}
		}
	}
}

// wsChat dials ws://addr/ws from ip, joins room, sends one message and
// waits for its ack.
func wsChat(ip, addr, room string, timeout time.Duration) error {
	d := &websocket.Dialer{HandshakeTimeout: timeout, NetDialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: timeout}).DialContext}
	conn, _, err := d.Dial("ws://"+addr+"/ws?room="+room, nil)
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer conn.Close()
	if err := sendRaw(conn, map[string]any{"type": "send", "room": room, "text": "still here", "ref": "legit"}); err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		envs, err := envelopes(conn)
		if err != nil {
			return err
		}
		for _, e := range envs {
			if e["type"] == "ack" && e["ref"] == "legit" {
				return nil
			}
		}
	}
	return errors.New("no ack")
}

// TestOneAddressCannotExhaustFDs runs the binary with an open-file limit of
// 400 and has one address (127.0.0.2) hold as many connections as it can,
// each trickling a request that never ends (a chunked POST body, or
// headers), reopening every connection the gateway closes. A normal client
// on another address must still connect and chat: the chat listener
// refuses request bodies, times requests out, and caps one address's TCP
// connections at accept (--max-tcp-conns-per-ip, default
// --max-conns-per-ip + 64 = 264).
func TestOneAddressCannotExhaustFDs(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := gatewaytest.Build(t)
	p := gatewaytest.Start(t, bin)
	// Lowered once the process runs: the Go runtime raises its own soft
	// limit to the hard one at start-up, so both are set.
	const nofile = 400
	if err := unix.Prlimit(p.Cmd.Process.Pid, unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: nofile, Max: nofile}, nil); err != nil {
		t.Fatalf("prlimit: %v", err)
	}

	const attackers = 1100
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var attempts, cut atomic.Int64
	for i := 0; i < attackers; i++ {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				attempts.Add(1)
				closed, err := slowClient("127.0.0.2", p.ChatAddr, i%len(slowKinds), 500*time.Millisecond, stop)
				if closed || err != nil {
					cut.Add(1)
					select { // reopen, as an attacker would, without spinning
					case <-stop:
						return
					case <-time.After(250 * time.Millisecond):
					}
				}
			}
		})
	}
	defer func() {
		close(stop)
		wg.Wait()
	}()
	deadline := time.Now().Add(waitTimeout)
	for attempts.Load() < attackers {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d slow connections attempted", attempts.Load(), attackers)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Every attacker has a connection or had one refused; the gateway is
	// at whatever the attack can make it hold. A normal client connects.
	var err error
	for try := 0; try < 3; try++ {
		if err = wsChat("127.0.0.3", p.ChatAddr, "lobby", 5*time.Second); err == nil {
			break
		}
		t.Logf("legitimate client, try %d: %v", try+1, err)
	}
	if err != nil {
		t.Fatalf("a legitimate client could not chat while 127.0.0.2 held slow connections (%d attempts, %d cut): %v", attempts.Load(), cut.Load(), err)
	}
	t.Logf("%d slow connection attempts from one address, %d cut by the gateway", attempts.Load(), cut.Load())
	if v := metricValue(t, p, `chatgate_connections_rejected_total{reason="tcp_per_ip"}`); v < 1 {
		t.Fatalf("tcp_per_ip rejects = %v; the accept-time cap was never reached", v)
	}
}

// metricValue scrapes one sample from the process's /metrics.
func metricValue(t *testing.T, p *gatewaytest.Proc, series string) float64 {
	t.Helper()
	resp, err := statusClient.Get("http://" + p.AdminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			var f float64
			if _, err := fmt.Sscan(v, &f); err == nil {
				return f
			}
		}
	}
	t.Fatalf("no %s in /metrics", series)
	return 0
}

// TestSlowHTTPDoesNotStallDrain: ten WebSocket clients and connections
// that trickle plain HTTP requests (a chunked POST body, endless headers).
// On SIGTERM every WebSocket client gets its 1001 on the documented
// timeline, the plain HTTP connections are cut, and the process exits 0:
// a plain HTTP client cannot hold up the drain until the hard deadline.
func TestSlowHTTPDoesNotStallDrain(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := gatewaytest.Build(t)
	p := gatewaytest.Start(t, bin, "--drain-delay", "1s", "--drain-window", "1s", "--shutdown-timeout", "4s")
	var clients []*websocket.Conn
	for i := 0; i < 10; i++ {
		c, _, err := websocket.DefaultDialer.Dial("ws://"+p.ChatAddr+"/ws?room=r", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		clients = append(clients, c)
	}
	stop := make(chan struct{})
	defer close(stop)
	slowDone := make(chan bool, len(slowKinds))
	for k := range slowKinds {
		go func() {
			closed, err := slowClient("127.0.0.1", p.ChatAddr, k, 200*time.Millisecond, stop)
			if err != nil {
				t.Errorf("%s: %v", slowKinds[k].name, err)
			}
			slowDone <- closed
		}()
	}
	// Both slow requests are in flight before the signal.
	if got := p.Status(statusClient, "/readyz"); got != http.StatusOK {
		t.Fatalf("/readyz = %d", got)
	}
	if err := p.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for i, c := range clients {
		var ce *websocket.CloseError
		for {
			_, err := envelopes(c)
			if err == nil {
				continue
			}
			if !errors.As(err, &ce) {
				t.Fatalf("client %d ended with %v; want a 1001 close", i, err)
			}
			break
		}
		if ce.Code != protocol.CloseGoingAway {
			t.Fatalf("client %d: close %d %q; want 1001", i, ce.Code, ce.Text)
		}
	}
	for range slowKinds {
		select {
		case closed := <-slowDone:
			if !closed {
				t.Fatal("a slow plain HTTP client was not cut by the drain")
			}
		case <-time.After(waitTimeout):
			t.Fatal("a slow plain HTTP client is still connected after the drain")
		}
	}
	select {
	case <-p.Exited:
		if err := p.ExitErr(); err != nil {
			t.Fatalf("gateway exited with %v; want 0", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("gateway did not exit after the drain")
	}
}
