package auth

import (
	"context"
	"encoding/base64"
	"errors"
	"log/slog"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

const (
	guestKeyA = "guest-key-a-0123456789abcdefghijklmnopqrstuvwxyz"
	guestKeyB = "guest-key-b-0123456789abcdefghijklmnopqrstuvwxyz"
	guestID   = "u_0123456789abcdef"
)

func newGuests(t *testing.T, cfg GuestConfig) *Guests {
	t.Helper()
	if cfg.TTL == 0 {
		cfg.TTL = time.Hour
	}
	g, err := NewGuests(cfg, nil)
	if err != nil {
		t.Fatalf("NewGuests: %v", err)
	}
	return g
}

// tchar is RFC 9110's token: what a WebSocket subprotocol must be.
var tchar = regexp.MustCompile("^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")

func TestGuestCredentialRoundTrip(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	file := writeFile(t, t.TempDir(), "guest.key", []byte("# the first key signs\n"+guestKeyA+"\n\n"+guestKeyB+"\n"))
	g := newGuests(t, GuestConfig{KeyFile: file, TTL: 24 * time.Hour})
	for _, name := range []string{"alice", "Zoë 🦊", strings.Repeat("\U0010FFFF", 32), ""} {
		cred := g.Issue(guestID, name, now)
		if !tchar.MatchString(GuestSubprotocolPrefix + cred) {
			t.Fatalf("credential %q is not a subprotocol token", cred)
		}
		if len(cred) > MaxGuestCredential {
			t.Fatalf("credential for %q is %d bytes; over the %d the gateway accepts", name, len(cred), MaxGuestCredential)
		}
		got, err := g.Verify(cred, now.Add(24*time.Hour-time.Second))
		if err != nil {
			t.Fatalf("Verify(%q): %v", cred, err)
		}
		if got.UserID != guestID || got.Name != name || !got.Expires.Equal(now.Add(24*time.Hour)) {
			t.Fatalf("Verify = %+v; want %s %q until %v", got, guestID, name, now.Add(24*time.Hour))
		}
	}
}

func TestGuestCredentialRefused(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	dir := t.TempDir()
	g := newGuests(t, GuestConfig{KeyFile: writeFile(t, dir, "a.key", []byte(guestKeyA)), TTL: time.Hour})
	other := newGuests(t, GuestConfig{KeyFile: writeFile(t, dir, "b.key", []byte(guestKeyB)), TTL: time.Hour})
	good := g.Issue(guestID, "alice", now)
	parts := strings.Split(good, ".")
	enc := base64.RawURLEncoding.EncodeToString
	// resign signs arbitrary claims with key A, as only a gateway could.
	resign := func(claims string) string {
		signed := "g1." + parts[1] + "." + enc([]byte(claims))
		return signed + "." + enc(guestMAC([]byte(guestKeyA), signed))
	}
	flip := func(s string) string {
		b := []byte(s)
		if b[len(b)-1] == 'A' {
			b[len(b)-1] = 'B'
		} else {
			b[len(b)-1] = 'A'
		}
		return string(b)
	}
	cases := []struct {
		name string
		cred string
		at   time.Time
		want error
	}{
		{"valid", good, now, nil},
		{"expired", good, now.Add(time.Hour), ErrGuestExpired},
		{"long expired", good, now.Add(100 * time.Hour), ErrGuestExpired},
		{"another gateway's key", other.Issue(guestID, "alice", now), now, ErrGuestUnknownKey},
		{"changed claims", parts[0] + "." + parts[1] + "." + enc([]byte(`{"sub":"u_0123456789abcdef","name":"mallory","exp":9999999999}`)) + "." + parts[3], now, ErrGuestSignature},
		{"changed mac", parts[0] + "." + parts[1] + "." + parts[2] + "." + flip(parts[3]), now, ErrGuestSignature},
		{"changed kid", parts[0] + ".AAAAAAAAAAA." + parts[2] + "." + parts[3], now, ErrGuestUnknownKey},
		{"empty", "", now, ErrGuestMalformed},
		{"a JWT", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln", now, ErrGuestMalformed},
		{"other version", "g2" + good[2:], now, ErrGuestMalformed},
		{"five parts", good + ".x", now, ErrGuestMalformed},
		{"mac not base64", parts[0] + "." + parts[1] + "." + parts[2] + ".!!", now, ErrGuestMalformed},
		{"too long", good + strings.Repeat("A", MaxGuestCredential), now, ErrGuestMalformed},
		{"signed claims not JSON", resign("not json"), now, ErrGuestMalformed},
		{"signed claims with a user id the gateway never gives", resign(`{"sub":"admin","name":"x","exp":9999999999}`), now, ErrGuestMalformed},
		{"signed claims with a number as sub", resign(`{"sub":1,"name":"x","exp":9999999999}`), now, ErrGuestMalformed},
		{"signed claims without exp", resign(`{"sub":"u_0123456789abcdef","name":"x"}`), now, ErrGuestExpired},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := g.Verify(tc.cred, tc.at)
			if tc.want == nil {
				if err != nil || got.UserID != guestID {
					t.Fatalf("Verify = %+v, %v; want %s", got, err, guestID)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("Verify = %+v, %v; want %v", got, err, tc.want)
			}
			for _, other := range []error{ErrGuestMalformed, ErrGuestUnknownKey, ErrGuestSignature, ErrGuestExpired} {
				if other != tc.want && errors.Is(err, other) {
					t.Fatalf("error %v matches %v as well as %v", err, other, tc.want)
				}
			}
		})
	}
}

func TestGuestKeyFileErrors(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name, content, want string
	}{
		{"empty", "", "no key found"},
		{"comments only", "# nothing\n\n   \n", "no key found"},
		{"short key", guestKeyA + "\nshort\n", "line 2 is 5 bytes; use at least 32"},
		{"same key twice", guestKeyA + "\n  " + guestKeyA + "  \n", "line 2 is there twice"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			file := writeFile(t, dir, strings.ReplaceAll(tc.name, " ", "_"), []byte(tc.content))
			if g, err := NewGuests(GuestConfig{KeyFile: file, TTL: time.Hour}, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("NewGuests = %v, %v; want an error containing %q", g, err, tc.want)
			}
		})
	}
	if _, err := NewGuests(GuestConfig{KeyFile: dir, TTL: time.Hour}, nil); err == nil {
		t.Fatal("a directory as key file was accepted")
	}
	if _, err := NewGuests(GuestConfig{TTL: 0}, nil); err == nil {
		t.Fatal("a zero TTL was accepted")
	}
}

// TestGuestKeysWithoutAFile: with no file, or one that does not exist yet,
// a generated key signs and verifies on this process only; another process
// (another generated key) cannot verify it.
func TestGuestKeysWithoutAFile(t *testing.T) {
	now := time.Now()
	rec := &logRecorder{}
	missing, err := NewGuests(GuestConfig{KeyFile: filepath.Join(t.TempDir(), "absent.key"), TTL: time.Hour}, slog.New(rec))
	if err != nil {
		t.Fatalf("a key file that does not exist yet: %v", err)
	}
	if rec.count("guest key file does not exist (yet): using a key generated at start, so guests keep their identity only on this process until it appears") != 1 {
		t.Errorf("no warning about the missing key file: %q", rec.msgs)
	}
	none := newGuests(t, GuestConfig{})
	for _, g := range []*Guests{missing, none} {
		if _, err := g.Verify(g.Issue(guestID, "a", now), now); err != nil {
			t.Errorf("own credential: %v", err)
		}
	}
	if _, err := none.Verify(missing.Issue(guestID, "a", now), now); !errors.Is(err, ErrGuestUnknownKey) {
		t.Errorf("another process's credential: %v; want %v", err, ErrGuestUnknownKey)
	}
}

// TestGuestKeyRotation rotates the way docs/security.md says, with the
// file watched: a new key is added second (verifies only), then moved
// first (signs), then the old one is removed. A key file that appears
// after start takes over from the generated key, which keeps verifying
// what it signed.
func TestGuestKeyRotation(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "guest.key")
	rec := &logRecorder{}
	g, err := NewGuests(GuestConfig{KeyFile: file, TTL: time.Hour}, slog.New(rec))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Watch(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Watch: %v", err)
		}
	})
	now := time.Now()
	withA := newGuests(t, GuestConfig{KeyFile: writeFile(t, t.TempDir(), "a", []byte(guestKeyA))})
	withB := newGuests(t, GuestConfig{KeyFile: writeFile(t, t.TempDir(), "b", []byte(guestKeyB))})
	fromA, fromB := withA.Issue(guestID, "a", now), withB.Issue(guestID, "b", now)
	generated := g.Issue(guestID, "g", now)
	verifies := func(cred string) bool { _, err := g.Verify(cred, now); return err == nil }
	signsWith := func(other *Guests) bool { _, err := other.Verify(g.Issue(guestID, "x", now), now); return err == nil }

	// install writes content until the watcher has loaded it (the watch
	// may not be in place when the first write happens).
	install := func(content string, loaded func() bool) {
		t.Helper()
		var wrote time.Time
		eventually(t, 10*time.Second, "the key file "+strings.ReplaceAll(content, "\n", " | ")+" to be loaded", func() bool {
			if loaded() {
				return true
			}
			if time.Since(wrote) > 300*time.Millisecond {
				replaceFile(t, file, []byte(content))
				wrote = time.Now()
			}
			return false
		})
	}
	install(guestKeyA+"\n", func() bool { return signsWith(withA) })
	if !verifies(fromA) || !verifies(generated) || verifies(fromB) {
		t.Fatalf("with key A: A %v, generated %v, B %v; want true, true, false", verifies(fromA), verifies(generated), verifies(fromB))
	}
	install(guestKeyA+"\n"+guestKeyB+"\n", func() bool { return verifies(fromB) })
	if !signsWith(withA) {
		t.Fatal("a key added second took over signing")
	}
	install(guestKeyB+"\n"+guestKeyA+"\n", func() bool { return signsWith(withB) })
	install(guestKeyB+"\n", func() bool { return !verifies(fromA) })
	if !verifies(fromB) || !verifies(generated) {
		t.Fatalf("after dropping A: B %v, generated %v; want both", verifies(fromB), verifies(generated))
	}
	// A broken file keeps the keys in force.
	before := rec.count("reloading guest keys failed; keeping the previous keys")
	replaceFile(t, file, []byte("short\n"))
	eventually(t, 10*time.Second, "the broken file to be refused", func() bool {
		return rec.count("reloading guest keys failed; keeping the previous keys") > before
	})
	if !verifies(fromB) || !signsWith(withB) {
		t.Fatal("a broken key file replaced the keys in force")
	}
}

func TestGuestCredentialFromRequest(t *testing.T) {
	cases := []struct {
		name   string
		header []string
		want   string
	}{
		{"none", nil, ""},
		{"only chatgate.v1", []string{"chatgate.v1"}, ""},
		{"with chatgate.v1", []string{"chatgate.v1, guest.g1.k.c.m"}, "g1.k.c.m"},
		{"first of two headers", []string{"chatgate.v1", "guest.g1.a.b.c"}, "g1.a.b.c"},
		{"bearer is not a guest", []string{"chatgate.v1, bearer.abc"}, ""},
		{"prefix must lead", []string{"xguest.abc"}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, _ := http.NewRequest(http.MethodGet, "/ws", nil)
			for _, h := range tc.header {
				r.Header.Add("Sec-WebSocket-Protocol", h)
			}
			if got := GuestCredentialFromRequest(r); got != tc.want {
				t.Fatalf("got %q; want %q", got, tc.want)
			}
		})
	}
}
