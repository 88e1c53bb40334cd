package gateway

import (
	"net"
	"net/http"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/chatgate/chatgate/gateway/observe"
)

// tcpLimitListener caps the TCP connections open at once from one client
// address on the chat listener, at accept time, whatever they are for: a
// WebSocket, a page load, or a request that never finishes. The per-IP
// WebSocket limit (--max-conns-per-ip) is only checked once a request has
// been read, so without this one address could hold every file descriptor
// with connections that trickle their requests.
//
// Addresses are counted like the per-IP limits (IPv6 by prefix). A peer in
// --trusted-proxies is not counted: it carries many clients, and the proxy
// has to bound them itself. A connection over the cap is closed at once and
// counted as a tcp_per_ip reject.
type tcpLimitListener struct {
	net.Listener
	// static after construction
	max     int
	v6Bits  int
	trusted []netip.Prefix
	obs     observe.Observer

	mu    sync.Mutex
	perIP map[string]int // guarded by mu
}

func newTCPLimitListener(ln net.Listener, cfg *Config, obs observe.Observer) *tcpLimitListener {
	return &tcpLimitListener{
		Listener: ln,
		max:      cfg.TCPConnsPerIP(),
		v6Bits:   cfg.IPv6PrefixLen,
		trusted:  cfg.TrustedProxies,
		obs:      obs,
		perIP:    make(map[string]int),
	}
}

func (l *tcpLimitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		peer := peerAddr(c.RemoteAddr().String())
		if !peer.IsValid() || isTrusted(peer, l.trusted) {
			return c, nil
		}
		key := ipLimitKey(peer.String(), l.v6Bits)
		l.mu.Lock()
		if l.perIP[key] >= l.max {
			l.mu.Unlock()
			// A reset rather than a FIN: nothing is kept for it.
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetLinger(0)
			}
			_ = c.Close()
			l.obs.ConnRejected(observe.RejectTCPPerIP)
			continue
		}
		l.perIP[key]++
		l.mu.Unlock()
		return &countedConn{Conn: c, l: l, key: key}, nil
	}
}

// open reports how many connections from key's address are counted.
func (l *tcpLimitListener) open(key string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.perIP[key]
}

// countedConn is an accepted connection that gives its address's slot back
// when it is closed, by whoever closes it (the HTTP server, or the gateway
// after a hijack).
type countedConn struct {
	net.Conn
	l    *tcpLimitListener
	key  string
	once sync.Once
}

// SyscallConn exposes the socket, for the event loop.
func (c *countedConn) SyscallConn() (syscall.RawConn, error) {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return nil, errNoSyscallConn
	}
	return sc.SyscallConn()
}

func (c *countedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.l.mu.Lock()
		decrement(c.l.perIP, c.key)
		c.l.mu.Unlock()
	})
	return err
}

// chatOnly serves the chat listener's methods and refuses request bodies:
// everything there is GET (or HEAD), the WebSocket handshake included, so a
// body can only be an attempt to hold the connection open. The refusal
// (405 or 413) is sent and the connection closed without reading the body.
// A refused request for the WebSocket endpoint counts as a bad_request
// reject, like any other handshake that is not one.
func chatOnly(next http.Handler, obs observe.Observer) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		status, msg := 0, ""
		switch {
		case r.Method != http.MethodGet && r.Method != http.MethodHead:
			w.Header().Set("Allow", "GET, HEAD")
			status, msg = http.StatusMethodNotAllowed, "only GET and HEAD are served here"
		case r.ContentLength != 0: // a declared or chunked body
			status, msg = http.StatusRequestEntityTooLarge, "request bodies are not accepted"
		default:
			next.ServeHTTP(w, r)
			return
		}
		if r.URL.Path == WebSocketPath {
			obs.ConnRejected(observe.RejectBadRequest)
		}
		refuseRequest(w, status, msg)
	})
}

// refuseRequest answers with status and closes the connection once the
// answer is written, without reading what is left of the request: the read
// deadline is set in the past, so the server's attempt to drain the body
// fails at once instead of waiting for a client that trickles it.
func refuseRequest(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Connection", "close")
	http.Error(w, msg, status)
	_ = http.NewResponseController(w).SetReadDeadline(time.Now())
}
