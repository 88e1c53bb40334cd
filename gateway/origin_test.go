package gateway

// Origin checks: the pattern compiler, the matcher, and the 403 a real
// handshake gets from a page on another site.

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/chatgate/chatgate/gateway/observe"
)

func TestOriginPatternCompileErrors(t *testing.T) {
	bad := []struct {
		pattern string
		want    string // a fragment of the error
	}{
		{"", "is not an origin"},
		{"   ", "is not an origin"},
		{"chat.example.com", "is not an origin"},
		{"*", "is not an origin"},
		{"//chat.example.com", "is not an origin"},
		{"https://", "is not an origin"},
		{"https://chat.example.com/path", "is not an origin"},
		{"https://chat.example.com/?x=1", "is not an origin"},
		{"https://chat.example.com?x=1", "is not an origin"},
		{"https://chat.exa mple.com", "is not an origin"},
		{"ftp://chat.example.com", "scheme must be http or https"},
		{"ws://chat.example.com", "scheme must be http or https"},
		{"wss://*.example.com", "scheme must be http or https"},
		{"https://*.*.example.com", "only a leading *. wildcard"},
		{"https://chat.*.com", "only a leading *. wildcard"},
		{"https://*example.com", "only a leading *. wildcard"},
		{"https://example.*", "only a leading *. wildcard"},
		{"https://*", "only a leading *. wildcard"},
	}
	for _, tc := range bad {
		t.Run(tc.pattern, func(t *testing.T) {
			_, err := compileOrigin(tc.pattern)
			if err == nil {
				t.Fatalf("compileOrigin(%q) accepted it", tc.pattern)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), strings.TrimSpace(tc.pattern)) {
				t.Fatalf("compileOrigin(%q): %q; want it to quote the pattern and say %q", tc.pattern, err, tc.want)
			}
			// The same mistake refuses the whole config, naming the flag,
			// and New refuses to build a server with it.
			cfg := testConfig()
			cfg.AllowedOrigins = []string{"https://ok.example.com", tc.pattern}
			if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "--allowed-origins") {
				t.Fatalf("Validate: %v; want an --allowed-origins error", err)
			}
			if _, err := New(cfg, Options{Broker: testHub(t, 0)}); err == nil {
				t.Fatalf("New accepted --allowed-origins %q", tc.pattern)
			}
			if _, err := newOriginChecker(cfg.AllowedOrigins); err == nil {
				t.Fatalf("newOriginChecker accepted %q", tc.pattern)
			}
		})
	}

	good := []string{
		"https://chat.example.com",
		"https://chat.example.com/",
		"  HTTPS://Chat.Example.COM  ",
		"http://localhost:3000",
		"https://*.example.com",
		"https://*.example.com:8443",
		"http://127.0.0.1:8080",
		"http://[::1]:3000",
	}
	for _, p := range good {
		if _, err := compileOrigin(p); err != nil {
			t.Errorf("compileOrigin(%q): %v", p, err)
		}
	}
}

func TestOriginCheckerMatch(t *testing.T) {
	allow := []string{
		"https://chat.example.com",
		"https://*.apps.example.net",
		"http://localhost:3000",
		"https://*.example.org:8443",
		"HTTPS://Upper.Example.IO",
		"http://[::1]:3000",
	}
	oc, err := newOriginChecker(allow)
	if err != nil {
		t.Fatal(err)
	}
	def, err := newOriginChecker(nil)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		origin string
		host   string // the request's Host
		list   bool   // with the allowlist (else the same-host default)
		want   bool
	}{
		// Allowlist: exact entries.
		{"https://chat.example.com", "gw.internal", true, true},
		{"https://CHAT.EXAMPLE.COM", "gw.internal", true, true},
		{"http://chat.example.com", "gw.internal", true, false},      // scheme mismatch
		{"https://chat.example.com:444", "gw.internal", true, false}, // port mismatch
		{"https://chat.example.co", "gw.internal", true, false},
		{"https://evilchat.example.com", "gw.internal", true, false},
		{"https://chat.example.com.evil.example", "gw.internal", true, false},
		{"https://upper.example.io", "gw.internal", true, true},
		{"http://localhost:3000", "gw.internal", true, true},
		{"http://localhost:3001", "gw.internal", true, false},
		{"http://localhost", "gw.internal", true, false},
		{"http://[::1]:3000", "gw.internal", true, true},
		// Allowlist: wildcards match subdomains, never the bare domain.
		{"https://a.apps.example.net", "gw.internal", true, true},
		{"https://a.b.apps.example.net", "gw.internal", true, true},
		{"https://apps.example.net", "gw.internal", true, false},
		{"https://evilapps.example.net", "gw.internal", true, false},
		{"https://a.apps.example.net.evil.example", "gw.internal", true, false},
		{"http://a.apps.example.net", "gw.internal", true, false}, // scheme mismatch
		{"https://a.apps.example.net:8443", "gw.internal", true, false},
		{"https://x.example.org:8443", "gw.internal", true, true},
		{"https://x.example.org", "gw.internal", true, false},
		// Allowlist replaces the same-host default.
		{"http://gw.internal", "gw.internal", true, false},
		// Garbage is refused.
		{"null", "gw.internal", true, false},
		{"not a url", "gw.internal", true, false},
		{"https://", "gw.internal", true, false},
		// Default: same host (and port) only. The scheme is not compared:
		// behind a TLS-terminating proxy the gateway cannot know its own.
		{"http://gw.internal:8080", "gw.internal:8080", false, true},
		{"https://gw.internal:8080", "gw.internal:8080", false, true},
		{"http://GW.Internal:8080", "gw.internal:8080", false, true},
		{"http://gw.internal:8080", "GW.INTERNAL:8080", false, true},
		{"http://gw.internal:9999", "gw.internal:8080", false, false},
		{"http://gw.internal", "gw.internal:8080", false, false},
		{"http://evil.example", "gw.internal:8080", false, false},
		{"http://gw.internal.evil.example:8080", "gw.internal:8080", false, false},
		{"null", "gw.internal:8080", false, false},
		{"file://", "gw.internal:8080", false, false},
		// Default: only a web page's origin, http or https without
		// userinfo, path or query, even when the host matches.
		{"ftp://gw.internal:8080", "gw.internal:8080", false, false},
		{"ws://gw.internal:8080", "gw.internal:8080", false, false},
		{"chrome-extension://gw.internal:8080", "gw.internal:8080", false, false},
		{"http://evil@gw.internal:8080", "gw.internal:8080", false, false},
		{"http://user:pass@gw.internal:8080", "gw.internal:8080", false, false},
		{"http://gw.internal:8080/", "gw.internal:8080", false, true},
		{"http://gw.internal:8080/path", "gw.internal:8080", false, false},
		{"http://gw.internal:8080?q", "gw.internal:8080", false, false},
		{"http://gw.internal:8080?", "gw.internal:8080", false, false},
		{"http://gw.internal:8080#f", "gw.internal:8080", false, false},
		{"http:gw.internal:8080", "gw.internal:8080", false, false},
		// The allowlist refuses userinfo too.
		{"https://evil@chat.example.com", "gw.internal", true, false},
	}
	for _, tc := range cases {
		checker := def
		if tc.list {
			checker = oc
		}
		r := httptest.NewRequest(http.MethodGet, "http://"+tc.host+"/ws", nil)
		r.Host = tc.host
		r.Header.Set("Origin", tc.origin)
		if got := checker.check(r); got != tc.want {
			t.Errorf("allowlist=%v Host=%s Origin=%q: allowed=%v; want %v", tc.list, tc.host, tc.origin, got, tc.want)
		}
	}
	// No Origin (not a browser) passes either way.
	r := httptest.NewRequest(http.MethodGet, "http://gw.internal/ws", nil)
	if !oc.check(r) || !def.check(r) {
		t.Errorf("a request without Origin was refused")
	}
}

// expectOriginVerdict dials with Origin (and Host, if set) and checks it is
// accepted, or refused with 403 and counted as an origin reject.
func expectOriginVerdict(t *testing.T, s *testServer, origin, host string, allowed bool) {
	t.Helper()
	h := http.Header{}
	if origin != "" {
		h.Set("Origin", origin)
	}
	if host != "" {
		h.Set("Host", host) // gorilla sends it as the request's Host
	}
	if allowed {
		c := s.dialWith(t, dialOpts{header: h})
		assertUsable(t, c)
		return
	}
	before := rejectCount(s, observe.RejectOrigin)
	expectRefused(t, s, h, http.StatusForbidden, false)
	if n := rejectCount(s, observe.RejectOrigin); n != before+1 {
		t.Fatalf("origin rejects %d -> %d; want +1", before, n)
	}
}

func TestOriginHandshake(t *testing.T) {
	t.Run("default same host", func(t *testing.T) {
		s := newTestServer(t, nil)
		self := s.ts.URL // http://127.0.0.1:port
		port := self[strings.LastIndex(self, ":"):]
		cases := []struct {
			name, origin, host string
			allowed            bool
		}{
			{"no origin", "", "", true},
			{"same host", self, "", true},
			{"same host, upper case", strings.ToUpper(self), "", true},
			{"other site", "http://evil.example", "", false},
			{"same IP, other port", "http://127.0.0.1:1", "", false},
			{"same port, other host", "http://localhost" + port, "", false},
			{"null origin", "null", "", false},
			{"same host, ftp scheme", "ftp" + strings.TrimPrefix(self, "http"), "", false},
			{"same host, userinfo", "http://evil@" + strings.TrimPrefix(self, "http://"), "", false},
			{"host header names the site", "http://chat.example.com", "chat.example.com", true},
			{"host header names another site", self, "chat.example.com", false},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) { expectOriginVerdict(t, s, tc.origin, tc.host, tc.allowed) })
		}
		if n := rejectCount(s, observe.RejectCapacity) + rejectCount(s, observe.RejectBadRequest); n != 0 {
			t.Fatalf("%d non-origin rejects", n)
		}
	})
	t.Run("allowlist", func(t *testing.T) {
		s := newTestServer(t, func(c *Config) {
			c.AllowedOrigins = []string{"https://chat.example.com", "https://*.example.com", "http://localhost:3000", "http://[::1]:3000"}
		})
		cases := []struct {
			name, origin string
			allowed      bool
		}{
			{"no origin", "", true},
			{"exact", "https://chat.example.com", true},
			{"exact, other case", "https://Chat.Example.com", true},
			{"wildcard subdomain", "https://team.example.com", true},
			{"wildcard deeper subdomain", "https://a.team.example.com", true},
			{"wildcard does not match the bare domain", "https://example.com", false},
			{"lookalike domain", "https://evilexample.com", false},
			{"suffix attack", "https://chat.example.com.evil.example", false},
			{"scheme mismatch", "http://chat.example.com", false},
			{"wildcard scheme mismatch", "http://team.example.com", false},
			{"exact with port", "http://localhost:3000", true},
			{"port mismatch", "http://localhost:3001", false},
			{"IPv6 literal", "http://[::1]:3000", true},
			{"IPv6 literal, port mismatch", "http://[::1]:3001", false},
			{"own host is not implicitly allowed", s.ts.URL, false},
			{"other site", "http://evil.example", false},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) { expectOriginVerdict(t, s, tc.origin, "", tc.allowed) })
		}
	})
	t.Run("origin refused before capacity is spent", func(t *testing.T) {
		s := newTestServer(t, func(c *Config) { c.MaxConns, c.HandshakeBurst, c.HandshakeRate = 1, 1, 0.001 })
		for i := 0; i < 3; i++ {
			expectOriginVerdict(t, s, "http://evil.example", "", false)
		}
		expectOriginVerdict(t, s, "", "", true) // the one slot and token are still there
	})
}
