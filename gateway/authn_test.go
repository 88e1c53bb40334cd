package gateway

import (
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"

	"github.com/chatgate/chatgate/gateway/auth"
	"github.com/chatgate/chatgate/gateway/observe"
	"github.com/chatgate/chatgate/gateway/protocol"
	"github.com/chatgate/chatgate/internal/wstest"
)

const testSecret = "0123456789abcdef0123456789abcdef-test-only"

// jwtServer runs a gateway with --auth jwt and an HS256 secret file.
func jwtServer(t *testing.T, mutate func(*Config)) *testServer {
	t.Helper()
	file := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(file, []byte(testSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return newTestServer(t, func(c *Config) {
		c.Auth, c.JWTSecretFile, c.JWTLeeway = "jwt", file, 0
		if mutate != nil {
			mutate(c)
		}
	})
}

func token(t *testing.T, claims auth.Claims) string {
	t.Helper()
	if claims.ExpiresAt == nil {
		claims.ExpiresAt = jwt.NewNumericDate(time.Now().Add(time.Hour))
	}
	tok, err := auth.MintClaims([]byte(testSecret), claims)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestAuthRefusedBeforeUpgrade(t *testing.T) {
	s := jwtServer(t, nil)
	other, _ := auth.MintClaims([]byte("another-secret-another-secret-another"), auth.Claims{RegisteredClaims: regClaims("alice")})
	old := regClaims("alice")
	old.ExpiresAt = jwt.NewNumericDate(time.Now().Add(-time.Minute))
	expired := token(t, auth.Claims{RegisteredClaims: old})
	// A date written as a string: encoding/json alone would read it.
	stringExp, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": "alice", "exp": strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10),
	}).SignedString([]byte(testSecret))
	cases := []struct {
		name, query, challenge string
		header                 http.Header
	}{
		{"no token", "", `Bearer realm="chatgate"`, nil},
		{"wrong signature", "token=" + other, `error="invalid_token"`, nil},
		{"expired", "token=" + expired, `error="invalid_token"`, nil},
		{"exp of the wrong type", "token=" + stringExp, `error="invalid_token"`, nil},
		{"garbage header", "", `error="invalid_token"`, http.Header{"Authorization": {"Bearer not.a.jwt"}}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp := s.dialStatus(t, tc.query, tc.header)
			if resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("status %d; want 401", resp.StatusCode)
			}
			if got := resp.Header.Get("WWW-Authenticate"); !strings.Contains(got, tc.challenge) {
				t.Fatalf("WWW-Authenticate %q; want it to contain %q", got, tc.challenge)
			}
			s.obs.waitFor(t, "auth rejection counted", func() bool { return s.obs.rejects[observe.RejectAuth] == i+1 })
		})
	}
}

func TestAuthIdentityAndTransport(t *testing.T) {
	s := jwtServer(t, nil)
	tok := token(t, auth.Claims{RegisteredClaims: regClaims("alice"), Name: "Alice"})
	cases := []struct {
		name   string
		query  string
		header http.Header
		protos []string
	}{
		{"authorization header", "name=mallory", http.Header{"Authorization": {"Bearer " + tok}}, nil},
		{"subprotocol", "name=mallory", nil, []string{protocol.Subprotocol, "bearer." + tok}},
		{"query parameter", query("token", tok, "name", "mallory"), nil, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := &websocket.Dialer{HandshakeTimeout: waitTimeout, Subprotocols: tc.protos}
			conn, resp, err := d.Dial(s.wsURL(tc.query), tc.header)
			if err != nil {
				t.Fatalf("dial: %v (%v)", err, resp)
			}
			defer conn.Close()
			if len(tc.protos) > 0 && conn.Subprotocol() != protocol.Subprotocol {
				t.Fatalf("selected subprotocol %q; want %q and never the token", conn.Subprotocol(), protocol.Subprotocol)
			}
			c := wstest.New(t, conn, wstest.Options{Timeout: waitTimeout})
			w := c.Expect("welcome")
			user := w["user"].(map[string]any)
			// The verified identity, not the name query parameter.
			if user["id"] != "alice" || user["name"] != "Alice" {
				t.Fatalf("welcome user %v; want alice/Alice", user)
			}
		})
	}
}

func TestAuthRoomsAndLimits(t *testing.T) {
	s := jwtServer(t, func(c *Config) { c.MaxConnsPerUser = 2 })
	tok := token(t, auth.Claims{RegisteredClaims: regClaims("bob"), Rooms: []string{"lobby", "team-*"}, SendRate: 1, SendBurst: 1})
	h := http.Header{"Authorization": {"Bearer " + tok}}
	a := s.dialWith(t, dialOpts{header: h})

	t.Run("room patterns", func(t *testing.T) {
		a.Join("team-red")
		a.Send(map[string]any{"type": "join", "room": "secret", "ref": "j1"})
		e := a.Expect("error")
		if e["code"] != string(protocol.CodeForbidden) || e["ref"] != "j1" {
			t.Fatalf("join outside the token's rooms: %v; want forbidden", e)
		}
	})
	t.Run("per-user send rate from the token", func(t *testing.T) {
		a.Send(map[string]any{"type": "send", "room": "team-red", "text": "one", "ref": "1"})
		a.Expect("message")
		a.Expect("ack")
		a.Send(map[string]any{"type": "send", "room": "team-red", "text": "two", "ref": "2"})
		if e := a.Expect("error"); e["code"] != string(protocol.CodeRateLimited) {
			t.Fatalf("second send at 1/s: %v; want rate_limited", e)
		}
	})
	t.Run("tabs of one user are one presence and count toward the user limit", func(t *testing.T) {
		b := s.dialWith(t, dialOpts{header: h})
		j := b.Join("team-red")
		if num(t, j, "online") != 1 {
			t.Fatalf("second tab of bob: online %v; want 1", j["online"])
		}
		resp := s.dialStatus(t, "", h)
		if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
			t.Fatalf("third connection of bob: %d; want 429 with Retry-After", resp.StatusCode)
		}
		if s.obs.rejects[observe.RejectPerUser] != 1 {
			t.Fatal("per_user rejection not counted")
		}
		carol := http.Header{"Authorization": {"Bearer " + token(t, auth.Claims{RegisteredClaims: regClaims("carol")})}}
		s.dialWith(t, dialOpts{header: carol})
		b.Conn().Close()
		s.obs.waitFor(t, "bob's tab to close", func() bool { return s.obs.closed >= 1 })
		s.dialWith(t, dialOpts{header: h})
	})
}

func TestAuthTokenExpiryCloses4401(t *testing.T) {
	s := jwtServer(t, nil)
	// Expiry has one-second resolution: aim two seconds ahead.
	exp := time.Now().Add(2 * time.Second).Truncate(time.Second)
	c := regClaims("dave")
	c.ExpiresAt = jwt.NewNumericDate(exp)
	cl := s.dialWith(t, dialOpts{header: http.Header{"Authorization": {"Bearer " + token(t, auth.Claims{RegisteredClaims: c})}}})
	reason := cl.ExpectClose(protocol.CloseTokenExpired)
	now := time.Now()
	if now.Before(exp) || now.After(exp.Add(time.Second)) {
		t.Fatalf("closed at %v; want at expiry %v", now, exp)
	}
	if cr, ok := protocol.ParseCloseReason(reason); !ok || cr.R != "token_expired" {
		t.Fatalf("reason %q", reason)
	}
	if s.obs.disconnectCount(observe.DisconnectTokenExpired) != 1 {
		t.Fatal("token_expired disconnect not counted")
	}
}

func regClaims(sub string) jwt.RegisteredClaims {
	return jwt.RegisteredClaims{Subject: sub, IssuedAt: jwt.NewNumericDate(time.Now().Add(-time.Second))}
}

func TestAuthNameFallsBackToSubject(t *testing.T) {
	s := jwtServer(t, nil)
	cases := []struct {
		name, sub, claim, want string
	}{
		{"no name claim", "erin", "", "erin"},
		// A token's name is held to the same rules as the name parameter.
		{"name with a bidi override", "erin", "\u202Egnp.exe Admin", "erin"},
		{"name with a zero width joiner", "erin", "Ad\u200Dmin", "erin"},
		{"neither name nor sub presentable", "\u202Eerin", "\u2066x", "guest-"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tok := token(t, auth.Claims{RegisteredClaims: regClaims(tc.sub), Name: tc.claim})
			d := &websocket.Dialer{HandshakeTimeout: waitTimeout}
			conn, _, err := d.Dial(s.wsURL(query("token", tok, "name", "Mallory")), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			c := wstest.New(t, conn, wstest.Options{Timeout: waitTimeout})
			u := c.Expect("welcome")["user"].(map[string]any)
			name, _ := u["name"].(string)
			if u["id"] != tc.sub || name != tc.want && !(tc.want == "guest-" && strings.HasPrefix(name, "guest-")) {
				t.Fatalf("welcome user %v; want %s/%s", u, tc.sub, tc.want)
			}
		})
	}
}

// TestAuthFailuresSpendHandshakeTokens: a flood of bad tokens is throttled
// by the handshake rate like any other handshake.
func TestAuthFailuresSpendHandshakeTokens(t *testing.T) {
	s := jwtServer(t, func(c *Config) { c.HandshakeRate, c.HandshakeBurst = 0.001, 2 })
	for i, want := range []int{http.StatusUnauthorized, http.StatusUnauthorized, http.StatusServiceUnavailable} {
		if got := s.dialStatus(t, "token=forged", nil).StatusCode; got != want {
			t.Fatalf("attempt %d: %d; want %d", i+1, got, want)
		}
	}
}
