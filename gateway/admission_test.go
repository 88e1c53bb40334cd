package gateway

// Integration tests for everything decided before and during the upgrade:
// the pre-upgrade HTTP statuses, capacity and its release, failed upgrades,
// subprotocol negotiation and the welcome frame.

import (
	"bufio"
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/chatgate/chatgate/gateway/observe"
	"github.com/chatgate/chatgate/gateway/protocol"
)

// noKeepAliveClient is a plain HTTP client whose connections do not outlive
// their request (so goleak sees no idle transport goroutines).
func noKeepAliveClient(t testing.TB) *http.Client {
	t.Helper()
	tr := &http.Transport{DisableKeepAlives: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: waitTimeout}
}

// doWSRequest sends method /ws with header through net/http and returns the
// status, the response header and body.
func doWSRequest(t testing.TB, s *testServer, method string, header http.Header) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, s.ts.URL+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := noKeepAliveClient(t).Do(req)
	if err != nil {
		t.Fatalf("%s /ws: %v", method, err)
	}
	defer resp.Body.Close()
	var body strings.Builder
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		body.WriteString(sc.Text())
	}
	return resp.StatusCode, resp.Header, body.String()
}

// checkRetryAfter asserts h carries a Retry-After of whole seconds in
// [lo, hi].
func checkRetryAfter(t testing.TB, h http.Header, lo, hi int) {
	t.Helper()
	v := h.Get("Retry-After")
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		t.Fatalf("Retry-After %q; want whole seconds in [%d, %d]", v, lo, hi)
	}
}

// expectRefused dials, expects the handshake refused with status, and
// checks the Retry-After header is present (retry) or absent.
func expectRefused(t testing.TB, s *testServer, header http.Header, status int, retry bool) *http.Response {
	t.Helper()
	resp := s.dialStatus(t, "", header)
	if resp.StatusCode != status {
		t.Fatalf("handshake answered %d; want %d", resp.StatusCode, status)
	}
	if retry {
		checkRetryAfter(t, resp.Header, 1, 5)
	} else if v := resp.Header.Get("Retry-After"); v != "" {
		t.Fatalf("status %d with Retry-After %q; want none", status, v)
	}
	return resp
}

func rejectCount(s *testServer, r observe.RejectReason) int {
	s.obs.mu.Lock()
	defer s.obs.mu.Unlock()
	return s.obs.rejects[r]
}

func closedCount(s *testServer) int {
	s.obs.mu.Lock()
	defer s.obs.mu.Unlock()
	return s.obs.closed
}

// closeAndWait closes c from the client side and waits until the server
// has finished with the connection.
func closeAndWait(t testing.TB, s *testServer, c *wsClient) {
	t.Helper()
	before := closedCount(s)
	_ = c.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(waitTimeout))
	c.conn.Close()
	s.obs.waitFor(t, "the server to close the connection", func() bool { return s.obs.closed > before })
}

// dialerFrom returns a dialer whose connections come from the loopback
// address ip (any 127/8 address works on Linux).
func dialerFrom(ip string) *websocket.Dialer {
	nd := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	return &websocket.Dialer{NetDialContext: nd.DialContext, HandshakeTimeout: waitTimeout}
}

func TestAdmissionNotAnUpgrade(t *testing.T) {
	s := newTestServer(t, nil)
	cases := []struct {
		name   string
		method string
		header http.Header
	}{
		{"plain GET", http.MethodGet, nil},
		{"plain POST", http.MethodPost, nil},
		{"HEAD", http.MethodHead, nil},
		{"Upgrade without Connection", http.MethodGet, http.Header{"Upgrade": {"websocket"}}},
		{"Connection without Upgrade", http.MethodGet, http.Header{"Connection": {"Upgrade"}}},
		{"upgrade to another protocol", http.MethodGet, http.Header{"Connection": {"Upgrade"}, "Upgrade": {"h2c"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := rejectCount(s, observe.RejectBadRequest)
			status, h, _ := doWSRequest(t, s, tc.method, tc.header)
			if status != http.StatusBadRequest {
				t.Fatalf("%s: %d; want 400", tc.name, status)
			}
			if v := h.Get("Retry-After"); v != "" {
				t.Fatalf("400 with Retry-After %q", v)
			}
			if n := rejectCount(s, observe.RejectBadRequest); n != before+1 {
				t.Fatalf("bad_request rejects %d -> %d; want +1", before, n)
			}
		})
	}
	s.dial(t, "") // the endpoint still serves WebSockets
	if n := closedCount(s); n != 0 {
		t.Fatalf("%d connections closed", n)
	}
}

func TestAdmissionFailedUpgradeKeepsServing(t *testing.T) {
	// One slot in all: a slot the failed upgrade kept would refuse the
	// dial that follows it.
	oneSlot := func(c *Config) { c.MaxConns, c.MaxConnsPerIP = 1, 1 }
	upgrade := func(version, key string) http.Header {
		h := http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket"}, "Sec-Websocket-Version": {version}}
		if key != "" {
			h["Sec-Websocket-Key"] = []string{key}
		}
		return h
	}
	const goodKey = "dGhlIHNhbXBsZSBub25jZQ=="
	cases := []struct {
		name   string
		method string
		header http.Header
		status int
	}{
		{"unsupported version", http.MethodGet, upgrade("12", goodKey), http.StatusBadRequest},
		{"missing version", http.MethodGet, http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket"}, "Sec-Websocket-Key": {goodKey}}, http.StatusBadRequest},
		{"missing key", http.MethodGet, upgrade("13", ""), http.StatusBadRequest},
		{"key not 16 bytes", http.MethodGet, upgrade("13", "c2hvcnQ="), http.StatusBadRequest},
		{"key not base64", http.MethodGet, upgrade("13", "!!!!!!!!!!!!!!!!!!!!!!!="), http.StatusBadRequest},
		{"upgrade by POST", http.MethodPost, upgrade("13", goodKey), http.StatusMethodNotAllowed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newTestServer(t, oneSlot)
			for i := 1; i <= 3; i++ {
				status, _, _ := doWSRequest(t, s, tc.method, tc.header)
				if status != tc.status {
					t.Fatalf("%d; want %d", status, tc.status)
				}
				if n := rejectCount(s, observe.RejectBadRequest); n != i {
					t.Fatalf("%d bad_request rejects; want %d", n, i)
				}
			}
			c := s.dial(t, "") // the server still serves, and the slot is free
			assertUsable(t, c)
		})
	}

	// RFC 6455 §4.2.2: a version mismatch MUST be answered with the
	// versions the server understands.
	t.Run("unsupported version names the supported one", func(t *testing.T) {
		s := newTestServer(t, nil)
		_, h, _ := doWSRequest(t, s, http.MethodGet, upgrade("12", goodKey))
		if v := h.Get("Sec-WebSocket-Version"); v != "13" {
			t.Errorf("Sec-WebSocket-Version %q on a version mismatch; want \"13\"", v)
		}
	})

	// A client that sends frames before the handshake completes gets no
	// 101 and its hijacked connection is dropped. The server's handler
	// outlives what the client can see here (it logs after the socket is
	// gone), so this server does not log to t.
	t.Run("data before the handshake completes", func(t *testing.T) {
		s := newCustomTestServer(t, nil, nil, slog.New(slog.DiscardHandler))
		conn, err := net.DialTimeout("tcp", s.ts.Listener.Addr().String(), waitTimeout)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(waitTimeout))
		req := "GET /ws HTTP/1.1\r\nHost: " + s.ts.Listener.Addr().String() +
			"\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + goodKey + "\r\n\r\n" +
			"\x81\x85\x00\x00\x00\x00hello" // a masked text frame, too early
		if _, err := conn.Write([]byte(req)); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusSwitchingProtocols {
				t.Fatalf("upgraded a connection that sent data before the handshake completed")
			}
		}
		s.obs.waitFor(t, "a bad_request reject", func() bool { return s.obs.rejects[observe.RejectBadRequest] > 0 })
		s.dial(t, "")
	})
}

func TestAdmissionMaxConns(t *testing.T) {
	s := newTestServer(t, func(c *Config) { c.MaxConns = 2 })
	a := s.dial(t, "")
	b := s.dial(t, "")
	for i := 1; i <= 3; i++ {
		expectRefused(t, s, nil, http.StatusServiceUnavailable, true)
		if n := rejectCount(s, observe.RejectCapacity); n != i {
			t.Fatalf("%d capacity rejects; want %d", n, i)
		}
	}
	// The open connections are unaffected.
	b.join("room")
	sendAndAck(t, b, "room", "hi", "r1")

	// Refused attempts held no slot; a closed connection frees its own.
	closeAndWait(t, s, a)
	c := s.dial(t, "")
	expectRefused(t, s, nil, http.StatusServiceUnavailable, true)
	closeAndWait(t, s, b)
	closeAndWait(t, s, c)
	s.dial(t, "")
	s.dial(t, "")
	expectRefused(t, s, nil, http.StatusServiceUnavailable, true)
	if n := rejectCount(s, observe.RejectPerIP); n != 0 {
		t.Fatalf("%d per-IP rejects; the per-IP limit was never reached", n)
	}
}

func TestAdmissionMaxConnsPerIP(t *testing.T) {
	s := newTestServer(t, func(c *Config) { c.MaxConns, c.MaxConnsPerIP = 100, 2 })
	a := s.dial(t, "")
	s.dial(t, "")
	expectRefused(t, s, nil, http.StatusTooManyRequests, true)
	if n := rejectCount(s, observe.RejectPerIP); n != 1 {
		t.Fatalf("%d per-IP rejects; want 1", n)
	}
	// Another address has its own allowance.
	other := dialOpts{dialer: dialerFrom("127.0.0.2")}
	s.dialWith(t, other)
	s.dialWith(t, other)
	resp, err := func() (*http.Response, error) {
		conn, resp, err := dialerFrom("127.0.0.2").Dial(s.wsURL(""), nil)
		if err == nil {
			conn.Close()
		}
		return resp, err
	}()
	if err == nil || resp == nil || resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("third connection from 127.0.0.2: %v; want 429", err)
	}
	checkRetryAfter(t, resp.Header, 1, 5)

	// Closing frees the address's slot.
	closeAndWait(t, s, a)
	s.dial(t, "")
	expectRefused(t, s, nil, http.StatusTooManyRequests, true)
	if n := rejectCount(s, observe.RejectCapacity); n != 0 {
		t.Fatalf("%d capacity rejects; max-conns was never reached", n)
	}
}

func TestAdmissionHandshakeRate(t *testing.T) {
	s := newTestServer(t, func(c *Config) { c.HandshakeRate, c.HandshakeBurst = 0.001, 1 })
	c := s.dial(t, "")
	expectRefused(t, s, nil, http.StatusServiceUnavailable, true)
	expectRefused(t, s, nil, http.StatusServiceUnavailable, true)
	if n := rejectCount(s, observe.RejectRate); n != 2 {
		t.Fatalf("%d rate rejects; want 2", n)
	}
	if n := rejectCount(s, observe.RejectCapacity); n != 0 {
		t.Fatalf("%d capacity rejects", n)
	}
	// Requests refused earlier for other reasons keep their own status.
	expectRefused(t, s, http.Header{"Origin": {"http://evil.example"}}, http.StatusForbidden, false)
	if status, _, _ := doWSRequest(t, s, http.MethodGet, nil); status != http.StatusBadRequest {
		t.Fatalf("plain GET: %d; want 400", status)
	}
	c.join("still")
	sendAndAck(t, c, "still", "open", "r1")
}

func TestAdmissionDraining(t *testing.T) {
	s := newTestServer(t, nil)
	c := s.dial(t, "")
	c.join("r")
	s.srv.BeginDrain()
	resp := expectRefused(t, s, nil, http.StatusServiceUnavailable, true)
	if v := resp.Header.Get("Retry-After"); v != "1" {
		t.Fatalf("Retry-After %q while draining; want 1", v)
	}
	// Draining is checked before the origin (docs/protocol.md).
	expectRefused(t, s, http.Header{"Origin": {"http://evil.example"}}, http.StatusServiceUnavailable, true)
	if n := rejectCount(s, observe.RejectDraining); n != 2 {
		t.Fatalf("%d draining rejects; want 2", n)
	}
	if n := rejectCount(s, observe.RejectOrigin); n != 0 {
		t.Fatalf("%d origin rejects while draining", n)
	}
	// Draining refuses new connections only: an open one keeps working
	// until it is closed with 1001.
	sendAndAck(t, c, "r", "during drain", "r1")
	rec := httptest.NewRecorder()
	s.srv.AdminHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz while draining: %d", rec.Code)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	s.srv.CloseClients(ctx, 0)
	expectCloseWith(t, s, c, protocol.CloseGoingAway, "drain", observe.DisconnectDrain)
}

// newCustomTestServer is newTestServer with a chosen observer (which must
// wrap a *recObserver; nil means a plain one) and logger (nil logs to t).
func newCustomTestServer(t *testing.T, mutate func(*Config), obs interface {
	observe.Observer
	rec() *recObserver
}, logger *slog.Logger) *testServer {
	t.Helper()
	cfg := testConfig()
	if mutate != nil {
		mutate(&cfg)
	}
	if obs == nil {
		obs = plainRec{newRecObserver()}
	}
	return startTestServer(t, cfg, Options{Logger: logger, Observer: obs}, obs.rec())
}

type plainRec struct{ *recObserver }

func (p plainRec) rec() *recObserver { return p.recObserver }

func (o *slotObserver) rec() *recObserver { return o.recObserver }

// slotObserver records, whenever a connection is reported closed, how many
// admission slots are still held.
type slotObserver struct {
	*recObserver
	srv         atomic.Pointer[Server]
	mu          sync.Mutex
	heldAtClose []int64
}

func (o *slotObserver) ConnClosed() {
	if s := o.srv.Load(); s != nil {
		o.mu.Lock()
		o.heldAtClose = append(o.heldAtClose, s.adm.conns.Load())
		o.mu.Unlock()
	}
	o.recObserver.ConnClosed()
}

// When ConnClosed is reported (and the client has seen its socket close),
// the connection's admission slot must already be free: a client that
// reconnects at once must not be refused for a connection that is gone.
func TestAdmissionSlotFreeWhenCloseReported(t *testing.T) {
	obs := &slotObserver{recObserver: newRecObserver()}
	s := newCustomTestServer(t, func(c *Config) { c.MaxConns, c.MaxConnsPerIP = 1, 1 }, obs, nil)
	obs.srv.Store(s.srv)
	for i := 0; i < 3; i++ {
		closeAndWait(t, s, s.dial(t, ""))
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if len(obs.heldAtClose) != 3 {
		t.Fatalf("%d closes observed; want 3", len(obs.heldAtClose))
	}
	for i, held := range obs.heldAtClose {
		if held != 0 {
			t.Errorf("connection %d reported closed while it still held its admission slot (%d held)", i, held)
		}
	}
}

func TestAdmissionSubprotocol(t *testing.T) {
	s := newTestServer(t, nil)
	cases := []struct {
		name    string
		offered []string
		want    string
	}{
		{"chatgate.v1 offered", []string{"chatgate.v1"}, "chatgate.v1"},
		{"chatgate.v1 among others", []string{"other", "chatgate.v1"}, "chatgate.v1"},
		{"none offered", nil, ""},
		{"only unknown offered", []string{"chatgate.v2", "mqtt"}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := &websocket.Dialer{HandshakeTimeout: waitTimeout, Subprotocols: tc.offered}
			c := s.dialWith(t, dialOpts{dialer: d})
			if got := c.conn.Subprotocol(); got != tc.want {
				t.Fatalf("selected subprotocol %q; want %q", got, tc.want)
			}
			assertUsable(t, c)
		})
	}
}

// dialWelcome dials and returns the client with the first envelope, which
// must be the welcome.
func dialWelcome(t testing.TB, s *testServer, q string) (*wsClient, map[string]any) {
	t.Helper()
	d := &websocket.Dialer{HandshakeTimeout: waitTimeout, Subprotocols: []string{protocol.Subprotocol}}
	conn, _, err := d.Dial(s.wsURL(q), nil)
	if err != nil {
		t.Fatalf("dial %q: %v", q, err)
	}
	t.Cleanup(func() { conn.Close() })
	c := &wsClient{t: t, conn: conn}
	env := c.next()
	if env["type"] != "welcome" {
		t.Fatalf("first envelope %v; want welcome", env)
	}
	return c, env
}

func TestAdmissionWelcome(t *testing.T) {
	s := newTestServer(t, func(c *Config) {
		c.NodeID = "node-7"
		c.SendRate, c.SendBurst = 7.5, 9
		c.MaxTextBytes = 1000
		c.MaxRoomsPerConn = 3
		c.QueueBytes, c.WriteTimeout = 65536, 2500*time.Millisecond
	})
	connRe := regexp.MustCompile(`^c_[0-9a-f]{16}$`)
	userRe := regexp.MustCompile(`^u_[0-9a-f]{16}$`)
	guest := "(guest)"
	cases := []struct {
		name string
		q    string
		want string
	}{
		{"plain", query("name", "alice"), "alice"},
		{"trimmed", query("name", "  bob \t"), "bob"},
		{"inner spaces kept", query("name", "Zoë 🎉 M"), "Zoë 🎉 M"},
		{"32 runes", query("name", strings.Repeat("é", 32)), strings.Repeat("é", 32)},
		{"32 runes after trimming", query("name", " "+strings.Repeat("n", 32)+" "), strings.Repeat("n", 32)},
		{"33 runes", query("name", strings.Repeat("é", 33)), guest},
		{"40 runes", query("name", strings.Repeat("x", 40)), guest},
		{"no name", "", guest},
		{"empty", query("name", ""), guest},
		{"only spaces", query("name", "   "), guest},
		{"NUL", query("name", "a\x00b"), guest},
		{"escape", query("name", "a\x1b[31mred"), guest},
		{"newline", query("name", "a\nb"), guest},
		{"tab inside", query("name", "a\tb"), guest},
		{"DEL", query("name", "a\x7fb"), guest},
		{"C1 control", query("name", "a\u0085b"), guest},
		{"invalid UTF-8", query("name", "a\xffb"), guest},
	}
	seen := map[string]bool{}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, w := dialWelcome(t, s, tc.q)
			conn, _ := w["conn"].(string)
			if !connRe.MatchString(conn) {
				t.Fatalf("welcome.conn %q", conn)
			}
			if seen[conn] {
				t.Fatalf("conn id %q reused", conn)
			}
			seen[conn] = true
			user, _ := w["user"].(map[string]any)
			id, _ := user["id"].(string)
			name, _ := user["name"].(string)
			if !userRe.MatchString(id) {
				t.Fatalf("welcome.user.id %q", id)
			}
			want := tc.want
			if want == guest {
				want = "guest-" + id[2:6]
			}
			if name != want {
				t.Fatalf("welcome.user.name %q; want %q", name, want)
			}
			if w["node"] != "node-7" {
				t.Fatalf("welcome.node %v", w["node"])
			}
			limits, _ := w["limits"].(map[string]any)
			wantLimits := map[string]float64{"send_per_sec": 7.5, "send_burst": 9, "max_text_bytes": 1000, "max_rooms": 3, "queue_bytes": 65536, "write_timeout_ms": 2500}
			if len(limits) != len(wantLimits) {
				t.Fatalf("welcome.limits %v; want %v", limits, wantLimits)
			}
			for k, v := range wantLimits {
				if limits[k] != v {
					t.Fatalf("welcome.limits.%s = %v; want %v", k, limits[k], v)
				}
			}
			// The same identity shows in the room's member list.
			j := c.join("who")
			members, _ := j["members"].([]any)
			found := false
			for _, m := range members {
				if mm, _ := m.(map[string]any); mm["id"] == id && mm["name"] == want {
					found = true
				}
			}
			if !found {
				t.Fatalf("joined.members %v lack {%s %s}", members, id, want)
			}
			c.send(map[string]any{"type": "leave", "room": "who"})
			c.expect("left")
		})
	}
	t.Run("welcome precedes auto-joins", func(t *testing.T) {
		c, _ := dialWelcome(t, s, query("name", "carol", "room", "lobby"))
		if env := c.expect("joined"); env["room"] != "lobby" {
			t.Fatalf("joined %v", env)
		}
	})
	t.Run("guest names differ per connection", func(t *testing.T) {
		names := map[string]bool{}
		for i := 0; i < 5; i++ {
			_, w := dialWelcome(t, s, "")
			names[w["user"].(map[string]any)["id"].(string)] = true
		}
		if len(names) != 5 {
			t.Fatalf("%d distinct user ids over 5 anonymous connections", len(names))
		}
	})
}

func TestClientIP(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}
	cases := []struct {
		name    string
		trusted []netip.Prefix
		remote  string
		xff     []string // one header line each
		want    string
	}{
		{"no proxies trusted: the header is ignored", nil, "203.0.113.5:4000", []string{"198.51.100.1"}, "203.0.113.5"},
		{"untrusted peer: the header is ignored", trusted, "203.0.113.5:4000", []string{"198.51.100.1"}, "203.0.113.5"},
		{"trusted peer, one hop", trusted, "10.1.2.3:4000", []string{"198.51.100.1"}, "198.51.100.1"},
		{"client-written entries left of the proxy's are ignored", trusted, "10.1.2.3:4000", []string{"1.2.3.4, 198.51.100.1"}, "198.51.100.1"},
		{"chained trusted proxies are skipped", trusted, "10.1.2.3:4000", []string{"1.2.3.4, 198.51.100.1, 10.9.9.9"}, "198.51.100.1"},
		{"several header lines are one list", trusted, "10.1.2.3:4000", []string{"1.2.3.4, 198.51.100.1", "10.9.9.9"}, "198.51.100.1"},
		{"no header: the proxy itself", trusted, "10.1.2.3:4000", nil, "10.1.2.3"},
		{"only proxies: the farthest one", trusted, "10.1.2.3:4000", []string{"10.7.7.7, 10.8.8.8"}, "10.7.7.7"},
		{"garbage stops the walk at the last real address", trusted, "10.1.2.3:4000", []string{"198.51.100.1, unknown, 10.8.8.8"}, "10.8.8.8"},
		{"entry with a port", trusted, "10.1.2.3:4000", []string{"198.51.100.1:5555"}, "198.51.100.1"},
		{"IPv6 peer and entry", trusted, "[fd00::1]:4000", []string{"2001:db8::7"}, "2001:db8::7"},
		{"IPv4-mapped peer", trusted, "[::ffff:10.1.2.3]:4000", []string{"198.51.100.1"}, "198.51.100.1"},
		{"unparsable RemoteAddr is used as is", trusted, "pipe", []string{"198.51.100.1"}, "pipe"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/ws", nil)
			r.RemoteAddr = tc.remote
			for _, v := range tc.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			if got := clientIP(r, tc.trusted); got != tc.want {
				t.Errorf("clientIP = %s; want %s", got, tc.want)
			}
		})
	}
}

// Behind a trusted proxy, --max-conns-per-ip counts the forwarded client
// addresses; from an untrusted peer the header changes nothing.
func TestAdmissionPerIPBehindTrustedProxy(t *testing.T) {
	s := newTestServer(t, func(c *Config) {
		c.MaxConns, c.MaxConnsPerIP = 100, 1
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	})
	xff := func(ip string) http.Header { return http.Header{"X-Forwarded-For": {"192.0.2.99, " + ip}} }
	s.dialWith(t, dialOpts{header: xff("198.51.100.1")})
	// Same forwarded client through the same proxy: over its allowance.
	expectRefused(t, s, xff("198.51.100.1"), http.StatusTooManyRequests, true)
	// Another forwarded client has its own allowance, though the proxy's
	// address and the client-written entry are the same.
	s.dialWith(t, dialOpts{header: xff("198.51.100.2")})

	// 127.0.0.2 is not trusted: its header is ignored and the peer counts.
	untrusted := dialerFrom("127.0.0.2")
	untrusted.Subprotocols = []string{protocol.Subprotocol}
	s.dialWith(t, dialOpts{dialer: untrusted, header: xff("198.51.100.3")})
	conn, resp, err := untrusted.Dial(s.wsURL(""), xff("198.51.100.4"))
	if err == nil {
		conn.Close()
	}
	if resp == nil || resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("second connection from untrusted 127.0.0.2 with another X-Forwarded-For: %v; want 429", err)
	}
	if n := rejectCount(s, observe.RejectPerIP); n != 2 {
		t.Fatalf("%d per-IP rejects; want 2", n)
	}
}
