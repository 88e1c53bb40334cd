package gateway

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/chatgate/chatgate/gateway/observe"
)

// rawRequest opens a TCP connection to addr, writes req and returns the
// connection and a reader for the response.
func rawRequest(t *testing.T, addr, req string) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, waitTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(waitTimeout))
	if _, err := conn.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	return conn, bufio.NewReader(conn)
}

// The chat listener serves GET and HEAD without a body only. A request with
// a body is answered at once and its connection closed without waiting for
// the body, however slowly the client sends it.
func TestChatListenerRefusesBodies(t *testing.T) {
	s := newTestServer(t, nil)
	addr := s.ts.Listener.Addr().String()
	cases := []struct {
		name, req string
		status    int
		ws        bool // a request for the WebSocket endpoint: counted as bad_request
	}{
		{"chunked POST never finished", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n", http.StatusMethodNotAllowed, false},
		{"POST with a long declared body", "POST /ws HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\nabc", http.StatusMethodNotAllowed, true},
		{"PUT without a body", "PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", http.StatusMethodNotAllowed, false},
		{"GET with a declared body", "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc", http.StatusRequestEntityTooLarge, false},
		{"GET with a chunked body", "GET /ws HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n", http.StatusRequestEntityTooLarge, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := rejectCount(s, observe.RejectBadRequest)
			_, br := rawRequest(t, addr, tc.req)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d; want %d", resp.StatusCode, tc.status)
			}
			if tc.status == http.StatusMethodNotAllowed && resp.Header.Get("Allow") != "GET, HEAD" {
				t.Fatalf("Allow %q", resp.Header.Get("Allow"))
			}
			// The server closes the connection now, not when the body
			// (never sent) would have ended.
			if _, err := br.ReadByte(); !errors.Is(err, io.EOF) && !isReset(err) {
				t.Fatalf("after the refusal the connection gave %v; want it closed", err)
			}
			want := before
			if tc.ws {
				want++
			}
			if n := rejectCount(s, observe.RejectBadRequest); n != want {
				t.Fatalf("bad_request rejects %d; want %d", n, want)
			}
		})
	}
	t.Run("GET and HEAD are served", func(t *testing.T) {
		for _, m := range []string{http.MethodGet, http.MethodHead} {
			req, _ := http.NewRequest(m, s.ts.URL+"/", nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusNotFound { // the test's web handler
				t.Fatalf("%s /: %d; want the web handler's 404", m, resp.StatusCode)
			}
		}
	})
}

func isReset(err error) bool {
	var ne *net.OpError
	return errors.As(err, &ne) && !ne.Timeout()
}

// The chat listener caps the TCP connections of one address at accept,
// whatever they are for; closing one frees its slot, other addresses and
// trusted proxies are not affected, and refusals are counted.
func TestTCPLimitListener(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	obs := newRecObserver()
	cfg := testConfig()
	cfg.MaxConnsPerIP, cfg.MaxTCPConnsPerIP = 2, 3
	cfg.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.9/32")}
	l := newTCPLimitListener(ln, &cfg, obs)
	accepted := make(chan net.Conn, 100)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	dial := func(ip string) net.Conn {
		t.Helper()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: waitTimeout}
		c, err := d.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	next := func() net.Conn {
		t.Helper()
		select {
		case c := <-accepted:
			return c
		case <-time.After(waitTimeout):
			t.Fatal("no connection accepted")
			return nil
		}
	}
	// refusedByServer dials from ip and waits until the server side has
	// closed the connection. The server resets it (linger 0) at accept,
	// which on a loaded machine can reach the client before its dial has
	// completed: a dial that fails with a reset was refused too.
	refusedByServer := func(ip string) {
		t.Helper()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: waitTimeout}
		c, err := d.Dial("tcp", ln.Addr().String())
		if errors.Is(err, syscall.ECONNRESET) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(waitTimeout))
		if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("the connection over the cap is still open: %v", err)
		}
	}

	var mine []net.Conn
	for i := 0; i < 3; i++ {
		dial("127.0.0.2")
		mine = append(mine, next())
	}
	if n := l.open("127.0.0.2"); n != 3 {
		t.Fatalf("%d counted; want 3", n)
	}
	refusedByServer("127.0.0.2")
	obs.waitFor(t, "a tcp_per_ip reject", func() bool { return obs.rejects[observe.RejectTCPPerIP] == 1 })

	dial("127.0.0.3") // another address has its own allowance
	next()
	for i := 0; i < 5; i++ { // a trusted proxy is not capped
		dial("127.0.0.9")
		next()
	}
	if n := l.open("127.0.0.9"); n != 0 {
		t.Fatalf("a trusted proxy's connections are counted: %d", n)
	}

	// Closing gives the slot back, once, however often it is closed.
	mine[0].Close()
	mine[0].Close()
	if n := l.open("127.0.0.2"); n != 2 {
		t.Fatalf("%d counted after a close; want 2", n)
	}
	dial("127.0.0.2")
	next()
	refusedByServer("127.0.0.2")
	obs.waitFor(t, "a second tcp_per_ip reject", func() bool { return obs.rejects[observe.RejectTCPPerIP] == 2 })
}
