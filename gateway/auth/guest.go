package auth

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"log/slog"
	"net/http"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Guest credentials: a resumable identity for anonymous users (--auth
// none). The gateway gives each anonymous connection a user id and a name;
// it signs them, with an expiry, into a guest credential that it sends in
// welcome. A client that offers the credential when it reconnects (as the
// WebSocket subprotocol "guest.<credential>") is the same user again: same
// id, same name, so presence, colours and message grouping carry over a
// drain, a restart or a network blip.
//
// A credential is four dot-separated parts, all base64url without padding
// except the first two, so it is a valid subprotocol token:
//
//	g1.<kid>.<claims>.<mac>
//
// claims is the JSON object {"sub":<user id>,"name":<name>,"exp":<unix
// seconds>}; mac is HMAC-SHA256 over "g1.<kid>.<claims>" with the key kid
// names. kid is derived from the key itself (the first 8 bytes of a
// SHA-256 over it), so operators never name keys and replicas sharing a key
// file agree on the names. See docs/security.md, "Guest credentials".

// GuestConfig says where the guest keys are and how long a credential lasts.
type GuestConfig struct {
	// KeyFile holds the keys, one per line (# comments and blank lines
	// ignored), each at least 32 bytes: the first signs, every one
	// verifies. Empty: a key generated at start, so credentials are good
	// only on this process. A file that does not exist (yet) behaves like
	// no file until it appears (an optional Kubernetes Secret).
	KeyFile string
	// TTL is how long a credential is good for from its issue.
	TTL time.Duration
}

// Guest is the identity a valid credential carries.
type Guest struct {
	UserID  string
	Name    string
	Expires time.Time
}

// Why Verify refuses a credential. Their text is a short code, for logs.
var (
	ErrGuestMalformed  = errors.New("malformed")   // not a credential this gateway could have issued
	ErrGuestUnknownKey = errors.New("unknown_key") // signed by a key this gateway does not hold
	ErrGuestSignature  = errors.New("bad_signature")
	ErrGuestExpired    = errors.New("expired")
)

const (
	guestVersion = "g1"
	// MaxGuestCredential bounds an offered credential; an issued one is
	// well under it (a 32-rune name is at most 128 bytes).
	MaxGuestCredential = 1024
	// GuestSubprotocolPrefix marks the credential among the offered
	// subprotocols.
	GuestSubprotocolPrefix = "guest."
	minGuestKey            = 32
)

// guestUserID is the shape of the user ids the gateway gives guests.
var guestUserID = regexp.MustCompile(`^u_[0-9a-f]{16}$`)

type guestKey struct {
	kid    string
	secret []byte
	macs   *sync.Pool // of HMAC-SHA256 states keyed with secret
}

func newGuestKey(kid string, secret []byte) guestKey {
	return guestKey{kid: kid, secret: secret, macs: &sync.Pool{New: func() any { return hmac.New(sha256.New, secret) }}}
}

// mac is the HMAC-SHA256 of signed with the key; the keyed states are
// reused (a handshake storm signs thousands a second).
func (k guestKey) mac(signed string) []byte {
	m := k.macs.Get().(hash.Hash)
	m.Reset()
	m.Write([]byte(signed))
	sum := m.Sum(nil)
	k.macs.Put(m)
	return sum
}

// guestKeySet is one loaded generation of keys: keys[0] signs.
type guestKeySet struct {
	keys []guestKey
}

func (ks *guestKeySet) lookup(kid string) *guestKey {
	for i := range ks.keys {
		if ks.keys[i].kid == kid {
			return &ks.keys[i]
		}
	}
	return nil
}

// Guests issues and verifies guest credentials. It is safe for concurrent
// use.
type Guests struct {
	// static after construction
	cfg GuestConfig
	log *slog.Logger
	// generated is the key made at start when no key file could be read
	// then; it keeps verifying what it signed after a file appears.
	generated *guestKey

	keys atomic.Pointer[guestKeySet] // replaced whole on reload
}

// NewGuests loads the key file, or generates a key when there is none. A
// key file that exists but cannot be read or holds no valid key is an
// error.
func NewGuests(cfg GuestConfig, log *slog.Logger) (*Guests, error) {
	if cfg.TTL <= 0 {
		return nil, errors.New("guest credentials need a positive TTL")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	g := &Guests{cfg: cfg, log: log}
	if cfg.KeyFile != "" {
		ks, err := loadGuestKeys(cfg.KeyFile)
		switch {
		case err == nil:
			g.keys.Store(ks)
			return g, nil
		case !errors.Is(err, os.ErrNotExist):
			return nil, err
		}
		log.Warn("guest key file does not exist (yet): using a key generated at start, so guests keep their identity only on this process until it appears",
			"file", cfg.KeyFile)
	}
	secret := make([]byte, minGuestKey)
	if _, err := rand.Read(secret); err != nil {
		return nil, fmt.Errorf("generating a guest key: %w", err)
	}
	gk := newGuestKey(guestKid(secret), secret)
	g.generated = &gk
	g.keys.Store(&guestKeySet{keys: []guestKey{*g.generated}})
	return g, nil
}

// TTL is how long a credential issued now is good for.
func (g *Guests) TTL() time.Duration { return g.cfg.TTL }

// Issue signs a credential for the guest userID named name, good until now
// plus the TTL.
func (g *Guests) Issue(userID, name string, now time.Time) string {
	claims, _ := json.Marshal(guestClaims{Sub: userID, Name: name, Exp: now.Add(g.cfg.TTL).Unix()})
	k := g.keys.Load().keys[0]
	signed := guestVersion + "." + k.kid + "." + base64.RawURLEncoding.EncodeToString(claims)
	return signed + "." + base64.RawURLEncoding.EncodeToString(k.mac(signed))
}

type guestClaims struct {
	Sub  string `json:"sub"`
	Name string `json:"name"`
	Exp  int64  `json:"exp"`
}

// Verify checks cred and returns the guest it names. The error is one of
// the ErrGuest* values, wrapped with detail for logs.
func (g *Guests) Verify(cred string, now time.Time) (Guest, error) {
	if len(cred) > MaxGuestCredential {
		return Guest{}, fmt.Errorf("%w: %d bytes", ErrGuestMalformed, len(cred))
	}
	parts := strings.Split(cred, ".")
	if len(parts) != 4 || parts[0] != guestVersion {
		return Guest{}, fmt.Errorf("%w: not g1.<kid>.<claims>.<mac>", ErrGuestMalformed)
	}
	k := g.key(parts[1])
	if k == nil {
		return Guest{}, fmt.Errorf("%w: kid %q", ErrGuestUnknownKey, parts[1])
	}
	mac, err := base64.RawURLEncoding.DecodeString(parts[3])
	if err != nil {
		return Guest{}, fmt.Errorf("%w: mac: %v", ErrGuestMalformed, err)
	}
	if !hmac.Equal(mac, k.mac(cred[:len(cred)-len(parts[3])-1])) {
		return Guest{}, ErrGuestSignature
	}
	// Signed by a key of ours: what follows was written by a gateway, but
	// is checked all the same.
	raw, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return Guest{}, fmt.Errorf("%w: claims: %v", ErrGuestMalformed, err)
	}
	var c guestClaims
	if err := json.Unmarshal(raw, &c); err != nil {
		return Guest{}, fmt.Errorf("%w: claims: %v", ErrGuestMalformed, err)
	}
	if !guestUserID.MatchString(c.Sub) {
		return Guest{}, fmt.Errorf("%w: sub %q", ErrGuestMalformed, c.Sub)
	}
	exp := time.Unix(c.Exp, 0)
	if !now.Before(exp) {
		return Guest{}, fmt.Errorf("%w: at %s", ErrGuestExpired, exp.UTC().Format(time.RFC3339))
	}
	return Guest{UserID: c.Sub, Name: c.Name, Expires: exp}, nil
}

// key returns the key kid names: one of the loaded generation, or the key
// generated at start.
func (g *Guests) key(kid string) *guestKey {
	if k := g.keys.Load().lookup(kid); k != nil {
		return k
	}
	if g.generated != nil && g.generated.kid == kid {
		return g.generated
	}
	return nil
}

// Watch reloads the key file whenever it changes, until ctx ends. A file
// that fails to load keeps the previous keys in force.
func (g *Guests) Watch(ctx context.Context) error {
	if g.cfg.KeyFile == "" {
		return nil
	}
	return WatchFile(ctx, g.cfg.KeyFile, "guest keys", g.log, func() {
		ks, err := loadGuestKeys(g.cfg.KeyFile)
		if err != nil {
			g.log.Error("reloading guest keys failed; keeping the previous keys", "file", g.cfg.KeyFile, "err", err)
			return
		}
		g.keys.Store(ks)
		g.log.Info("reloaded guest keys", "file", g.cfg.KeyFile, "keys", len(ks.keys), "signing_kid", ks.keys[0].kid)
	})
}

// loadGuestKeys reads a key file: one key per line, surrounding white
// space trimmed, blank lines and lines starting with # skipped.
func loadGuestKeys(file string) (*guestKeySet, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("guest keys: %w", err)
	}
	var ks guestKeySet
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		if len(line) < minGuestKey {
			return nil, fmt.Errorf("guest keys %s: the key on line %d is %d bytes; use at least %d", file, n, len(line), minGuestKey)
		}
		secret := bytes.Clone(line)
		kid := guestKid(secret)
		if ks.lookup(kid) != nil {
			return nil, fmt.Errorf("guest keys %s: the key on line %d is there twice", file, n)
		}
		ks.keys = append(ks.keys, newGuestKey(kid, secret))
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("guest keys %s: %w", file, err)
	}
	if len(ks.keys) == 0 {
		return nil, fmt.Errorf("guest keys %s: no key found", file)
	}
	return &ks, nil
}

// guestKid names a key by its first 8 bytes of a SHA-256 over it (with a
// label of its own, so the name is no hash of the key used elsewhere).
func guestKid(secret []byte) string {
	h := sha256.New()
	h.Write([]byte("chatgate guest key id\x00"))
	h.Write(secret)
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil)[:8])
}

// GuestCredentialFromRequest finds a guest credential offered as a
// "guest.<credential>" subprotocol ("" when there is none).
func GuestCredentialFromRequest(r *http.Request) string {
	for _, h := range r.Header.Values("Sec-WebSocket-Protocol") {
		for _, p := range strings.Split(h, ",") {
			if cred, ok := strings.CutPrefix(strings.TrimSpace(p), GuestSubprotocolPrefix); ok {
				return cred
			}
		}
	}
	return ""
}
