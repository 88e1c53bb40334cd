package gateway

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/chatgate/chatgate/gateway/auth"
	"github.com/chatgate/chatgate/gateway/observe"
	"github.com/chatgate/chatgate/gateway/protocol"
	"github.com/chatgate/chatgate/internal/wstest"
)

const (
	guestKey      = "test-guest-key-0123456789abcdefghijklmnopqrstuvwxyz"
	otherGuestKey = "other-guest-key-0123456789abcdefghijklmnopqrstuvwxyz"
)

// guestKeyFile writes keys, one per line, to a file of the test's.
func guestKeyFile(t *testing.T, keys ...string) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "guest.key")
	if err := os.WriteFile(file, []byte(strings.Join(keys, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// logCapture is a debug-level logger that passes lines to t.Logf and
// keeps them for the test to search.
type logCapture struct {
	t   testing.TB
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logCapture) Write(p []byte) (int, error) {
	l.t.Logf("server: %s", bytes.TrimRight(p, "\n"))
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logCapture) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *logCapture) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// guestServer runs a gateway with guest keys in keyFile ("" for a key of
// its own) and opts' broker (a test hub when nil).
func guestServer(t *testing.T, keyFile string, opts Options, mutate func(*Config)) (*testServer, *logCapture) {
	t.Helper()
	cfg := testConfig()
	cfg.GuestKeyFile = keyFile
	if mutate != nil {
		mutate(&cfg)
	}
	logs := &logCapture{t: t}
	rec := newRecObserver()
	opts.Observer, opts.Logger = rec, logs.logger()
	return startTestServer(t, cfg, opts, rec), logs
}

// dialGuest connects offering cred (if any) as the page does, checks that
// the gateway selected chatgate.v1 and never echoed the credential, and
// returns the client (welcome consumed).
func dialGuest(t *testing.T, s *testServer, query, cred string) *wsClient {
	t.Helper()
	protos := []string{protocol.Subprotocol}
	if cred != "" {
		protos = append(protos, auth.GuestSubprotocolPrefix+cred)
	}
	d := &websocket.Dialer{HandshakeTimeout: waitTimeout, Subprotocols: protos}
	c, resp, err := wstest.TryDial(t, s.wsURL(query), wstest.Options{Dialer: d, Welcome: true, Timeout: waitTimeout})
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial with a credential: %v (HTTP %d); a credential must never refuse the handshake", err, status)
	}
	if got := resp.Header.Get("Sec-WebSocket-Protocol"); got != protocol.Subprotocol {
		t.Fatalf("selected subprotocol %q; want %q", got, protocol.Subprotocol)
	}
	for k, vs := range resp.Header {
		for _, v := range vs {
			if cred != "" && strings.Contains(v, cred) {
				t.Fatalf("response header %s echoes the credential", k)
			}
		}
	}
	return c
}

type welcomed struct {
	id, name, cred string
	features       []string
}

func welcomeOf(t *testing.T, c *wsClient) welcomed {
	t.Helper()
	w := c.Welcome()
	user, _ := w["user"].(map[string]any)
	var out welcomed
	out.id, _ = user["id"].(string)
	out.name, _ = user["name"].(string)
	if g, ok := w["guest"].(map[string]any); ok {
		out.cred, _ = g["credential"].(string)
	}
	fs, _ := w["features"].([]any)
	for _, f := range fs {
		s, _ := f.(string)
		out.features = append(out.features, s)
	}
	return out
}

// subprotocolToken is RFC 9110's token: what a subprotocol must be.
var subprotocolToken = regexp.MustCompile("^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")

// TestGuestKeepsIdentity: a guest who offers the credential of its
// welcome is the same user again, with the same name unless it asks for
// another (then the id stays and the new credential carries the new name).
func TestGuestKeepsIdentity(t *testing.T) {
	s, _ := guestServer(t, guestKeyFile(t, guestKey), Options{}, nil)
	first := welcomeOf(t, dialGuest(t, s, query("name", "alice"), ""))
	if first.cred == "" || !subprotocolToken.MatchString(auth.GuestSubprotocolPrefix+first.cred) {
		t.Fatalf("welcome credential %q; want a subprotocol token", first.cred)
	}
	if first.name != "alice" || !strings.HasPrefix(first.id, "u_") {
		t.Fatalf("first connection is %+v", first)
	}
	steps := []struct {
		name     string
		query    string
		cred     *string // which credential to offer
		wantName string
	}{
		{"same name", query("name", "alice"), &first.cred, "alice"},
		{"no name: the credential's", "", &first.cred, "alice"},
		{"an invalid name: the credential's", query("name", "a\u202eb"), &first.cred, "alice"},
		{"a new name: same id, new name", query("name", "Alicia"), &first.cred, "Alicia"},
	}
	last := first
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			got := welcomeOf(t, dialGuest(t, s, st.query, *st.cred))
			if got.id != first.id || got.name != st.wantName {
				t.Fatalf("reconnected as %s %q; want %s %q", got.id, got.name, first.id, st.wantName)
			}
			if got.cred == "" {
				t.Fatal("no fresh credential in welcome")
			}
			last = got
		})
	}
	// The credential issued after the rename carries the new name.
	if got := welcomeOf(t, dialGuest(t, s, "", last.cred)); got.id != first.id || got.name != "Alicia" {
		t.Fatalf("with the renamed guest's credential: %s %q; want %s Alicia", got.id, got.name, first.id)
	}
	// Without a credential, a new guest.
	if got := welcomeOf(t, dialGuest(t, s, query("name", "alice"), "")); got.id == first.id {
		t.Fatalf("a connection without a credential got the guest's id %s", got.id)
	}
	s.obs.mu.Lock()
	defer s.obs.mu.Unlock()
	if s.obs.guests[observe.GuestResumed] != 5 || s.obs.guests[observe.GuestNew] != 2 {
		t.Fatalf("guest outcomes %v; want 5 resumed, 2 new", s.obs.guests)
	}
}

// TestGuestCredentialRefused: a credential that is expired, from a key the
// gateway does not hold, tampered with or not one at all never refuses the
// handshake: the connection is a new guest, the outcome is counted, and the
// debug log says why without the credential.
func TestGuestCredentialRefused(t *testing.T) {
	keyFile := guestKeyFile(t, guestKey)
	s, logs := guestServer(t, keyFile, Options{}, nil)
	sameKey, err := auth.NewGuests(auth.GuestConfig{KeyFile: keyFile, TTL: time.Hour}, nil)
	if err != nil {
		t.Fatal(err)
	}
	otherKey, err := auth.NewGuests(auth.GuestConfig{KeyFile: guestKeyFile(t, otherGuestKey), TTL: time.Hour}, nil)
	if err != nil {
		t.Fatal(err)
	}
	const victim = "u_0123456789abcdef"
	good := sameKey.Issue(victim, "alice", time.Now())
	cases := []struct {
		name string
		cred string
		want observe.GuestOutcome
	}{
		{"expired", sameKey.Issue(victim, "alice", time.Now().Add(-2*time.Hour)), observe.GuestExpired},
		{"another key", otherKey.Issue(victim, "alice", time.Now()), observe.GuestUnknownKey},
		{"tampered", good[:len(good)-2] + "xx", observe.GuestInvalid},
		{"not a credential", "hello", observe.GuestInvalid},
		{"too long", strings.Repeat("A", auth.MaxGuestCredential+1), observe.GuestInvalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s.obs.mu.Lock()
			before := s.obs.guests[tc.want]
			s.obs.mu.Unlock()
			got := welcomeOf(t, dialGuest(t, s, query("name", "bob"), tc.cred))
			if got.id == victim || got.name != "bob" || got.cred == "" {
				t.Fatalf("connected as %+v; want a new guest named bob with a credential", got)
			}
			s.obs.waitFor(t, "outcome "+string(tc.want), func() bool { return s.obs.guests[tc.want] == before+1 })
			if !strings.Contains(logs.String(), "guest credential refused; a new guest") {
				t.Fatal("the refusal is not logged at debug")
			}
			if strings.Contains(logs.String(), tc.cred) {
				t.Fatal("the log contains the credential")
			}
		})
	}
	// The good one still resumes.
	if got := welcomeOf(t, dialGuest(t, s, "", good)); got.id != victim || got.name != "alice" {
		t.Fatalf("with a valid credential: %+v; want %s alice", got, victim)
	}
}

// TestGuestAcrossReplicas: replicas that share the key file resume each
// other's guests; one with a key of its own (no --guest-key-file) does not.
func TestGuestAcrossReplicas(t *testing.T) {
	h := testHub(t, 0)
	keyFile := guestKeyFile(t, guestKey)
	a, _ := guestServer(t, keyFile, Options{Broker: h}, nil)
	b, _ := guestServer(t, keyFile, Options{Broker: h}, nil)
	lone, _ := guestServer(t, "", Options{Broker: h}, nil)
	onA := welcomeOf(t, dialGuest(t, a, query("name", "alice"), ""))
	if got := welcomeOf(t, dialGuest(t, b, "", onA.cred)); got.id != onA.id || got.name != "alice" {
		t.Fatalf("on the replica sharing the key: %+v; want %s alice", got, onA.id)
	}
	if got := welcomeOf(t, dialGuest(t, lone, "", onA.cred)); got.id == onA.id {
		t.Fatal("a replica with a key of its own resumed the guest")
	}
	lone.obs.waitFor(t, "unknown_key", func() bool { return lone.obs.guests[observe.GuestUnknownKey] == 1 })
}

// TestNoGuestCredentials: with --guest-ttl 0, and with --auth jwt, welcome
// carries no credential and an offered one changes nothing.
func TestNoGuestCredentials(t *testing.T) {
	other, err := auth.NewGuests(auth.GuestConfig{TTL: time.Hour}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cred := other.Issue("u_0123456789abcdef", "alice", time.Now())
	t.Run("guest-ttl 0", func(t *testing.T) {
		s, _ := guestServer(t, "", Options{}, func(c *Config) { c.GuestTTL = 0 })
		got := welcomeOf(t, dialGuest(t, s, query("name", "bob"), cred))
		if got.cred != "" || got.id == "u_0123456789abcdef" || got.name != "bob" {
			t.Fatalf("welcome %+v; want a new guest bob and no credential", got)
		}
	})
	t.Run("auth jwt", func(t *testing.T) {
		s := jwtServer(t, nil)
		d := &websocket.Dialer{HandshakeTimeout: waitTimeout, Subprotocols: []string{protocol.Subprotocol, "bearer." + token(t, claimsFor("carol")), auth.GuestSubprotocolPrefix + cred}}
		c := s.dialWith(t, dialOpts{dialer: d})
		defer c.Close()
		w := c.Welcome()
		user, _ := w["user"].(map[string]any)
		if _, ok := w["guest"]; ok || user["id"] != "carol" {
			t.Fatalf("welcome %v; want user carol and no guest credential", w)
		}
	})
}

// TestWelcomeAnnouncesTyping: welcome.features lists typing unless
// --typing=false.
func TestWelcomeAnnouncesTyping(t *testing.T) {
	for _, on := range []bool{true, false} {
		s, _ := guestServer(t, "", Options{}, func(c *Config) { c.Typing = on })
		got := welcomeOf(t, dialGuest(t, s, "", ""))
		if has := len(got.features) == 1 && got.features[0] == "typing"; has != on {
			t.Errorf("--typing=%v: features %q", on, got.features)
		}
	}
}

// TestGuestKeyFileErrorsRefuseToStart: a key file that exists but holds no
// usable key stops New; one that does not exist yet does not.
func TestGuestKeyFileErrorsRefuseToStart(t *testing.T) {
	cfg := testConfig()
	cfg.GuestKeyFile = guestKeyFile(t, "short")
	if _, err := New(cfg, Options{Broker: testHub(t, 0)}); err == nil || !strings.Contains(err.Error(), "at least 32") {
		t.Fatalf("New with a short guest key: %v", err)
	}
	cfg.GuestKeyFile = filepath.Join(t.TempDir(), "not-yet")
	srv, err := New(cfg, Options{Broker: testHub(t, 0)})
	if err != nil {
		t.Fatalf("New with a key file that does not exist yet: %v", err)
	}
	srv.Close()
}

// claimsFor is a token's claims for sub, valid for an hour.
func claimsFor(sub string) auth.Claims {
	return auth.Claims{RegisteredClaims: regClaims(sub)}
}
