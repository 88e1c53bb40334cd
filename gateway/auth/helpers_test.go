package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testSecret is the HS256 secret most tests configure.
const testSecret = "chatgate-auth-tests-0123456789abcdef"

// Keys are generated when a test first asks for them and then reused by
// name: RSA generation is slow under -race.
var (
	keyMu   sync.Mutex
	rsaKeys = map[string]*rsa.PrivateKey{}
	ecKeys  = map[string]*ecdsa.PrivateKey{}
)

func rsaKey(t testing.TB, name string) *rsa.PrivateKey {
	t.Helper()
	keyMu.Lock()
	defer keyMu.Unlock()
	if k, ok := rsaKeys[name]; ok {
		return k
	}
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaKeys[name] = k
	return k
}

// ecKey returns a P-256 key, or a P-384 one when name starts with "p384".
func ecKey(t testing.TB, name string) *ecdsa.PrivateKey {
	t.Helper()
	keyMu.Lock()
	defer keyMu.Unlock()
	if k, ok := ecKeys[name]; ok {
		return k
	}
	curve := elliptic.P256()
	if strings.HasPrefix(name, "p384") {
		curve = elliptic.P384()
	}
	k, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecKeys[name] = k
	return k
}

// writeFile writes data to name in dir and returns its path.
func writeFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	file := filepath.Join(dir, name)
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// replaceFile writes data to a temporary file next to file and renames it
// over file, the way a careful deploy tool does.
func replaceFile(t testing.TB, file string, data []byte) {
	t.Helper()
	tmp, err := os.CreateTemp(filepath.Dir(file), ".tmp-*")
	if err != nil {
		t.Fatal(err)
	}
	_, werr := tmp.Write(data)
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		t.Fatal(werr)
	}
	if err := os.Rename(tmp.Name(), file); err != nil {
		t.Fatal(err)
	}
}

// claimsFor returns claims for sub valid from a minute ago for an hour.
func claimsFor(sub string) Claims {
	now := time.Now()
	return Claims{RegisteredClaims: jwt.RegisteredClaims{
		Subject:   sub,
		IssuedAt:  jwt.NewNumericDate(now.Add(-time.Minute)),
		NotBefore: jwt.NewNumericDate(now.Add(-time.Minute)),
		ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)),
	}}
}

// sign signs claims with method and key, with a kid header when kid is set.
func sign(t testing.TB, method jwt.SigningMethod, key any, kid string, claims jwt.Claims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatalf("signing %s: %v", method.Alg(), err)
	}
	return s
}

// pemPublicKey encodes pub as a PEM "PUBLIC KEY" block, with a kid header
// when kid is set.
func pemPublicKey(t testing.TB, pub any, kid string) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Headers: kidHeader(kid), Bytes: der})
}

// pemCertificate encodes a self-signed certificate for key as a PEM
// "CERTIFICATE" block, with a kid header when kid is set.
func pemCertificate(t testing.TB, key crypto.Signer, kid string) []byte {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "chatgate token issuer"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Headers: kidHeader(kid), Bytes: der})
}

func kidHeader(kid string) map[string]string {
	if kid == "" {
		return nil
	}
	return map[string]string{"kid": kid}
}

// jwk describes one key of a JWKS document.
func jwk(key any, kid, use string) jose.JSONWebKey {
	return jose.JSONWebKey{Key: key, KeyID: kid, Use: use}
}

// jwks encodes keys as a JWKS document.
func jwks(t testing.TB, keys ...jose.JSONWebKey) []byte {
	t.Helper()
	b, err := json.Marshal(jose.JSONWebKeySet{Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func newAuth(t testing.TB, cfg Config, log *slog.Logger) *Authenticator {
	t.Helper()
	a, err := New(cfg, log)
	if err != nil {
		t.Fatalf("New(%+v): %v", cfg, err)
	}
	return a
}

var sentinels = []error{ErrMissing, ErrInvalid, ErrExpired}

// checkErr fails unless err is nil when want is, or matches want and no
// other sentinel.
func checkErr(t testing.TB, err, want error) {
	t.Helper()
	if want == nil {
		if err != nil {
			t.Fatalf("got error %v, want none", err)
		}
		return
	}
	if !errors.Is(err, want) {
		t.Fatalf("got error %v, want %v", err, want)
	}
	for _, s := range sentinels {
		if s != want && errors.Is(err, s) {
			t.Fatalf("error %v matches %v as well as %v", err, s, want)
		}
	}
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		case <-tick.C:
		}
	}
}

// logRecorder is a slog handler that keeps the messages logged.
type logRecorder struct {
	mu   sync.Mutex
	msgs []string
}

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *logRecorder) WithGroup(string) slog.Handler            { return r }
func (r *logRecorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, rec.Message)
	return nil
}

// count returns how many messages equal msg.
func (r *logRecorder) count(msg string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, m := range r.msgs {
		if m == msg {
			n++
		}
	}
	return n
}
