package auth

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const leeway = 30 * time.Second

// authenticators are the configurations the token tables run against.
type authenticators struct {
	hs      *Authenticator // HS256 secret only
	rsa     *Authenticator // one RSA public key (PEM, no kid) only
	both    *Authenticator // the secret and the RSA key
	iss     *Authenticator // HS256 with issuer and audience
	jwks    *Authenticator // JWKS: RSA "k1", EC "e1"
	twoRSA  *Authenticator // PEM: two RSA keys without kid
	rsaPEM  []byte         // the RSA key file's bytes
	rsaPriv string         // name of the configured RSA key
}

func setup(t *testing.T) authenticators {
	t.Helper()
	dir := t.TempDir()
	secret := writeFile(t, dir, "secret", []byte(testSecret+"\n"))
	rsaPEM := pemPublicKey(t, &rsaKey(t, "a").PublicKey, "")
	rsaFile := writeFile(t, dir, "rsa.pem", rsaPEM)
	jwksFile := writeFile(t, dir, "keys.jwks", jwks(t,
		jwk(&rsaKey(t, "a").PublicKey, "k1", "sig"),
		jwk(&ecKey(t, "a").PublicKey, "e1", ""),
	))
	two := append(pemPublicKey(t, &rsaKey(t, "a").PublicKey, ""), pemPublicKey(t, &rsaKey(t, "b").PublicKey, "")...)
	twoFile := writeFile(t, dir, "two.pem", two)
	return authenticators{
		hs:      newAuth(t, Config{SecretFile: secret, Leeway: leeway}, nil),
		rsa:     newAuth(t, Config{KeysFile: rsaFile, Leeway: leeway}, nil),
		both:    newAuth(t, Config{SecretFile: secret, KeysFile: rsaFile, Leeway: leeway}, nil),
		iss:     newAuth(t, Config{SecretFile: secret, Issuer: "https://issuer.example", Audience: "chatgate", Leeway: leeway}, nil),
		jwks:    newAuth(t, Config{KeysFile: jwksFile, Leeway: leeway}, nil),
		twoRSA:  newAuth(t, Config{KeysFile: twoFile, Leeway: leeway}, nil),
		rsaPEM:  rsaPEM,
		rsaPriv: "a",
	}
}

// mutated returns valid claims for "alice" changed by f.
func mutated(f func(c *Claims)) Claims {
	c := claimsFor("alice")
	f(&c)
	return c
}

func at(d time.Duration) *jwt.NumericDate { return jwt.NewNumericDate(time.Now().Add(d)) }

func TestAuthenticateRejects(t *testing.T) {
	as := setup(t)
	hs := func(c jwt.Claims) string { return sign(t, jwt.SigningMethodHS256, []byte(testSecret), "", c) }
	rs := func(key, kid string, c jwt.Claims) string {
		return sign(t, jwt.SigningMethodRS256, rsaKey(t, key), kid, c)
	}
	valid := claimsFor("alice")
	none := sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, "", valid)
	// The classic confusion attack: the verifier's public key, as published,
	// used as an HMAC secret.
	confused := sign(t, jwt.SigningMethodHS256, as.rsaPEM, "", valid)

	future, past := time.Now().Add(time.Hour).Unix(), time.Now().Add(-time.Hour).Unix()
	// typed returns valid claims for "alice" with claim set to v.
	typed := func(claim string, v any) jwt.MapClaims {
		c := jwt.MapClaims{"sub": "alice", "iat": past, "nbf": past, "exp": future}
		c[claim] = v
		return c
	}

	cases := []struct {
		name  string
		auth  *Authenticator
		token string
		want  error
	}{
		// Malformed.
		{"empty", as.hs, "", ErrMissing},
		{"two parts", as.hs, "a.b", ErrInvalid},
		{"garbage", as.hs, "garbage", ErrInvalid},
		{"three dots", as.hs, "...", ErrInvalid},
		{"four parts", as.hs, "a.b.c.d", ErrInvalid},
		{"bad base64", as.hs, "!!.??.**", ErrInvalid},
		{"header not JSON", as.hs, "bm90IGpzb24.e30.c2ln", ErrInvalid},
		{"valid token with a trailing dot", as.hs, hs(valid) + ".", ErrInvalid},
		{"valid token, signature cut", as.hs, hs(valid)[:len(hs(valid))-4], ErrInvalid},
		{"claims of the wrong type", as.hs, hs(jwt.MapClaims{"sub": "alice", "rooms": "lobby", "exp": float64(time.Now().Add(time.Hour).Unix())}), ErrInvalid},
		{"sub not a string", as.hs, hs(jwt.MapClaims{"sub": 42}), ErrInvalid},

		// Claims of the wrong JSON type, each in an otherwise valid token.
		{"exp as a string", as.hs, hs(typed("exp", strconv.FormatInt(future, 10))), ErrInvalid},
		{"exp as a string, key in upper case", as.hs, hs(typed("EXP", strconv.FormatInt(future, 10))), ErrInvalid},
		{"exp null", as.hs, hs(typed("exp", nil)), ErrInvalid},
		{"exp true", as.hs, hs(typed("exp", true)), ErrInvalid},
		{"nbf as a string", as.hs, hs(typed("nbf", strconv.FormatInt(past, 10))), ErrInvalid},
		{"iat as a string", as.hs, hs(typed("iat", strconv.FormatInt(past, 10))), ErrInvalid},
		{"iat an object", as.hs, hs(typed("iat", map[string]any{"t": past})), ErrInvalid},
		{"rooms a string", as.hs, hs(typed("rooms", "lobby")), ErrInvalid},
		{"rooms an array of numbers", as.hs, hs(typed("rooms", []any{1, 2})), ErrInvalid},
		{"rooms an object", as.hs, hs(typed("rooms", map[string]any{"lobby": true})), ErrInvalid},
		{"rooms a mixed array", as.hs, hs(typed("rooms", []any{"lobby", nil})), ErrInvalid},
		{"send_rate a string", as.hs, hs(typed("send_rate", "100")), ErrInvalid},
		{"send_rate a boolean", as.hs, hs(typed("send_rate", true)), ErrInvalid},
		{"send_burst a string", as.hs, hs(typed("send_burst", "50")), ErrInvalid},
		{"send_burst a fraction", as.hs, hs(typed("send_burst", 2.5)), ErrInvalid},
		{"send_burst null", as.hs, hs(typed("send_burst", nil)), ErrInvalid},
		{"name a number", as.hs, hs(typed("name", 7)), ErrInvalid},
		{"aud a number", as.hs, hs(typed("aud", 7)), ErrInvalid},
		{"iss an array", as.hs, hs(typed("iss", []any{"a"})), ErrInvalid},

		// Bad signatures.
		{"HS256 with another secret", as.hs, sign(t, jwt.SigningMethodHS256, []byte("another-secret-another-secret-another"), "", valid), ErrInvalid},
		{"RS256 with another key", as.rsa, rs("b", "", valid), ErrInvalid},
		{"HS256 expired with another secret", as.hs, sign(t, jwt.SigningMethodHS256, []byte("another-secret-another-secret-another"), "", mutated(func(c *Claims) { c.ExpiresAt = at(-time.Hour) })), ErrInvalid},
		{"RS256 signature from another token", as.rsa, splice(rs("a", "", claimsFor("bob")), rs("a", "", valid)), ErrInvalid},

		// Wrong algorithms.
		{"alg none, HS256 configured", as.hs, none, ErrInvalid},
		{"alg none, RSA configured", as.rsa, none, ErrInvalid},
		{"HS256 when only RSA keys are configured", as.rsa, hs(valid), ErrInvalid},
		{"alg confusion: HS256 keyed with the RSA public key PEM", as.rsa, confused, ErrInvalid},
		{"alg confusion with the secret configured too", as.both, confused, ErrInvalid},
		{"RS256 when only a secret is configured", as.hs, rs("a", "", valid), ErrInvalid},
		{"HS512 with the right secret", as.hs, sign(t, jwt.SigningMethodHS512, []byte(testSecret), "", valid), ErrInvalid},
		{"RS512 with the right key", as.rsa, sign(t, jwt.SigningMethodRS512, rsaKey(t, "a"), "", valid), ErrInvalid},
		{"PS256 with the right key", as.rsa, sign(t, jwt.SigningMethodPS256, rsaKey(t, "a"), "", valid), ErrInvalid},
		{"ES384", as.jwks, sign(t, jwt.SigningMethodES384, ecKey(t, "p384"), "e1", valid), ErrInvalid},
		{"EdDSA", as.jwks, sign(t, jwt.SigningMethodEdDSA, ed25519Key(t), "", valid), ErrInvalid},
		{"ES256 with no EC key configured", as.rsa, sign(t, jwt.SigningMethodES256, ecKey(t, "a"), "", valid), ErrInvalid},
		{"ES256 naming the kid of an RSA key", as.jwks, sign(t, jwt.SigningMethodES256, ecKey(t, "a"), "k1", valid), ErrInvalid},

		// Times.
		{"expired", as.hs, hs(mutated(func(c *Claims) { c.ExpiresAt = at(-2 * leeway) })), ErrExpired},
		{"expired RS256", as.rsa, rs("a", "", mutated(func(c *Claims) { c.ExpiresAt = at(-2 * leeway) })), ErrExpired},
		{"not yet valid", as.hs, hs(mutated(func(c *Claims) { c.NotBefore = at(2 * leeway) })), ErrInvalid},
		{"issued in the future", as.hs, hs(mutated(func(c *Claims) { c.IssuedAt = at(2 * leeway) })), ErrInvalid},

		// Issuer and audience.
		{"wrong issuer", as.iss, hs(mutated(func(c *Claims) { c.Issuer, c.Audience = "https://evil.example", jwt.ClaimStrings{"chatgate"} })), ErrInvalid},
		{"missing issuer", as.iss, hs(mutated(func(c *Claims) { c.Audience = jwt.ClaimStrings{"chatgate"} })), ErrInvalid},
		{"wrong audience", as.iss, hs(mutated(func(c *Claims) { c.Issuer, c.Audience = "https://issuer.example", jwt.ClaimStrings{"other", "api"} })), ErrInvalid},
		{"missing audience", as.iss, hs(mutated(func(c *Claims) { c.Issuer = "https://issuer.example" })), ErrInvalid},

		// Key ids.
		{"unknown kid", as.jwks, rs("a", "k2", valid), ErrInvalid},
		{"kid of a key that signed nothing", as.jwks, rs("b", "k1", valid), ErrInvalid},
		{"several keys without kid", as.twoRSA, rs("a", "", valid), ErrInvalid},
		{"kid when the keys have none", as.rsa, rs("a", "k1", valid), ErrInvalid},
		{"several matching keys, none for this kid", as.twoRSA, rs("a", "x", valid), ErrInvalid},

		// Subject.
		{"missing sub", as.hs, hs(mutated(func(c *Claims) { c.Subject = "" })), ErrInvalid},
		{"sub over 128 bytes", as.hs, hs(mutated(func(c *Claims) { c.Subject = strings.Repeat("é", 65) })), ErrInvalid},
		{"sub of 129 ASCII bytes", as.hs, hs(mutated(func(c *Claims) { c.Subject = strings.Repeat("a", 129) })), ErrInvalid},
		{"no sub and expired", as.hs, hs(mutated(func(c *Claims) { c.Subject, c.ExpiresAt = "", at(-time.Hour) })), ErrExpired},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			id, err := tc.auth.Authenticate(tc.token)
			checkErr(t, err, tc.want)
			if !reflect.DeepEqual(id, Identity{}) {
				t.Errorf("identity %+v returned with an error", id)
			}
			// The text is the short code, safe to show a client: only the
			// sentinel's text is reachable with errors.Unwrap.
			if got := errors.Unwrap(err); got != nil && got != tc.want {
				t.Errorf("errors.Unwrap = %v, want the sentinel %v", got, tc.want)
			}
		})
	}
}

// splice returns the header and claims of a with the signature of b.
func splice(a, b string) string {
	return a[:strings.LastIndexByte(a, '.')] + b[strings.LastIndexByte(b, '.'):]
}

func ed25519Key(t *testing.T) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestAuthenticateTimesWithinLeeway(t *testing.T) {
	as := setup(t)
	cases := []struct {
		name   string
		claims Claims
		want   error
	}{
		{"expired by less than the leeway", mutated(func(c *Claims) { c.ExpiresAt = at(-leeway / 3) }), nil},
		{"expired by more than the leeway", mutated(func(c *Claims) { c.ExpiresAt = at(-leeway - 5*time.Second) }), ErrExpired},
		{"nbf within the leeway", mutated(func(c *Claims) { c.NotBefore = at(leeway / 3) }), nil},
		{"nbf beyond the leeway", mutated(func(c *Claims) { c.NotBefore = at(leeway + 5*time.Second) }), ErrInvalid},
		{"iat within the leeway", mutated(func(c *Claims) { c.IssuedAt = at(leeway / 3) }), nil},
		{"iat beyond the leeway", mutated(func(c *Claims) { c.IssuedAt = at(leeway + 5*time.Second) }), ErrInvalid},
		{"no exp, nbf or iat", mutated(func(c *Claims) { c.ExpiresAt, c.NotBefore, c.IssuedAt = nil, nil, nil }), nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := as.hs.Authenticate(sign(t, jwt.SigningMethodHS256, []byte(testSecret), "", tc.claims))
			checkErr(t, err, tc.want)
		})
	}

	t.Run("no leeway", func(t *testing.T) {
		strict := newAuth(t, Config{SecretFile: writeFile(t, t.TempDir(), "s", []byte(testSecret))}, nil)
		c := mutated(func(c *Claims) { c.ExpiresAt = at(-2 * time.Second) })
		_, err := strict.Authenticate(sign(t, jwt.SigningMethodHS256, []byte(testSecret), "", c))
		checkErr(t, err, ErrExpired)
	})
}

func TestAuthenticateIdentity(t *testing.T) {
	dir := t.TempDir()
	secret := writeFile(t, dir, "secret", []byte(testSecret))
	rsaA, rsaB, ecA, ecB := rsaKey(t, "a"), rsaKey(t, "b"), ecKey(t, "a"), ecKey(t, "b")
	file := func(name string, parts ...[]byte) string {
		var b []byte
		for _, p := range parts {
			b = append(b, p...)
		}
		return writeFile(t, dir, name, b)
	}
	edPub := ed25519Key(t).Public()
	keys := map[string]string{
		"rsa-pem":  file("rsa.pem", pemPublicKey(t, &rsaA.PublicKey, "r1")),
		"rsa-cert": file("rsa.crt", pemCertificate(t, rsaA, "r1")),
		"ec-pem":   file("ec.pem", pemPublicKey(t, &ecA.PublicKey, "e1")),
		"ec-cert":  file("ec.crt", pemCertificate(t, ecA, "e1")),
		// A bundle: several keys with kids, plus blocks that are skipped.
		"bundle": file("bundle.pem",
			[]byte("# keys for chatgate\n"),
			pemPublicKey(t, &rsaB.PublicKey, "r0"),
			pemCertificate(t, rsaA, "r1"),
			[]byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
			pemPublicKey(t, edPub, "ed"),
			pemPublicKey(t, &ecB.PublicKey, "e0"),
			pemPublicKey(t, &ecA.PublicKey, "e1"),
		),
		"jwks": file("keys.jwks", jwks(t,
			jwk(&rsaB.PublicKey, "r0", "sig"),
			jwk(&rsaA.PublicKey, "r1", ""),
			jwk(&ecA.PublicKey, "e1", "sig"),
			jwk(&ecB.PublicKey, "enc", "enc"), // encryption keys are ignored
			jwk(edPub, "ed", "sig"),           // as are key types chatgate does not verify
		)),
		"jwks-one-rsa": file("one.jwks", append([]byte("  \n"), jwks(t, jwk(&rsaA.PublicKey, "", ""))...)),
	}

	full := claimsFor("user-42")
	full.Name = "Alice"
	full.Rooms = []string{"lobby", "team-*"}
	full.SendRate = 2.5
	full.SendBurst = 7
	wantFull := Identity{
		UserID:    "user-42",
		Name:      "Alice",
		Rooms:     []string{"lobby", "team-*"},
		SendRate:  2.5,
		SendBurst: 7,
		Expires:   full.ExpiresAt.Add(leeway),
	}
	plain := claimsFor("bob")
	wantPlain := Identity{UserID: "bob", Expires: plain.ExpiresAt.Add(leeway)}
	noExp := claimsFor("carol")
	noExp.ExpiresAt = nil
	maxSub := claimsFor(strings.Repeat("s", 128))

	cases := []struct {
		name   string
		keys   string // key file; "" for the HS256 secret
		method jwt.SigningMethod
		key    any
		kid    string
		claims Claims
		want   Identity
	}{
		{"HS256 with every claim", "", jwt.SigningMethodHS256, []byte(testSecret), "", full, wantFull},
		{"HS256 with a kid", "", jwt.SigningMethodHS256, []byte(testSecret), "whatever", plain, wantPlain},
		{"HS256 without exp", "", jwt.SigningMethodHS256, []byte(testSecret), "", noExp, Identity{UserID: "carol"}},
		{"HS256 sub of 128 bytes", "", jwt.SigningMethodHS256, []byte(testSecret), "", maxSub, Identity{UserID: maxSub.Subject, Expires: maxSub.ExpiresAt.Add(leeway)}},
		{"RS256 PEM public key, kid", "rsa-pem", jwt.SigningMethodRS256, rsaA, "r1", full, wantFull},
		{"RS256 PEM public key, no kid", "rsa-pem", jwt.SigningMethodRS256, rsaA, "", plain, wantPlain},
		{"RS256 PEM certificate, kid", "rsa-cert", jwt.SigningMethodRS256, rsaA, "r1", plain, wantPlain},
		{"ES256 PEM public key, kid", "ec-pem", jwt.SigningMethodES256, ecA, "e1", full, wantFull},
		{"ES256 PEM certificate, no kid", "ec-cert", jwt.SigningMethodES256, ecA, "", plain, wantPlain},
		{"RS256 bundle r0", "bundle", jwt.SigningMethodRS256, rsaB, "r0", plain, wantPlain},
		{"RS256 bundle r1 (certificate)", "bundle", jwt.SigningMethodRS256, rsaA, "r1", plain, wantPlain},
		{"ES256 bundle e0", "bundle", jwt.SigningMethodES256, ecB, "e0", plain, wantPlain},
		{"ES256 bundle e1", "bundle", jwt.SigningMethodES256, ecA, "e1", full, wantFull},
		{"RS256 JWKS r0", "jwks", jwt.SigningMethodRS256, rsaB, "r0", plain, wantPlain},
		{"RS256 JWKS r1 (no use)", "jwks", jwt.SigningMethodRS256, rsaA, "r1", full, wantFull},
		{"ES256 JWKS e1, no kid: the only signing EC key", "jwks", jwt.SigningMethodES256, ecA, "", plain, wantPlain},
		{"RS256 JWKS single key without kid", "jwks-one-rsa", jwt.SigningMethodRS256, rsaA, "", plain, wantPlain},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := Config{SecretFile: secret, Leeway: leeway}
			if tc.keys != "" {
				cfg = Config{KeysFile: keys[tc.keys], Leeway: leeway}
			}
			a := newAuth(t, cfg, nil)
			id, err := a.Authenticate(sign(t, tc.method, tc.key, tc.kid, tc.claims))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(id, tc.want) {
				t.Errorf("identity\n got %+v\nwant %+v", id, tc.want)
			}
		})
	}

	// The ignored keys really are ignored.
	rejected := []struct {
		name, keys string
		method     jwt.SigningMethod
		key        any
		kid        string
	}{
		{"JWKS key with use enc", "jwks", jwt.SigningMethodES256, ecB, "enc"},
		{"JWKS Ed25519 key", "jwks", jwt.SigningMethodES256, ecA, "ed"},
		{"bundle Ed25519 key", "bundle", jwt.SigningMethodES256, ecA, "ed"},
		{"bundle without kid: several RSA keys", "bundle", jwt.SigningMethodRS256, rsaA, ""},
		{"bundle kid of the other key type", "bundle", jwt.SigningMethodES256, ecA, "r1"},
	}
	for _, tc := range rejected {
		t.Run("rejects "+tc.name, func(t *testing.T) {
			t.Parallel()
			a := newAuth(t, Config{KeysFile: keys[tc.keys]}, nil)
			_, err := a.Authenticate(sign(t, tc.method, tc.key, tc.kid, plain))
			checkErr(t, err, ErrInvalid)
		})
	}
}

func TestAuthenticateIssuerAudience(t *testing.T) {
	as := setup(t)
	cases := []struct {
		name string
		iss  string
		aud  jwt.ClaimStrings
	}{
		{"single audience", "https://issuer.example", jwt.ClaimStrings{"chatgate"}},
		{"audience among several", "https://issuer.example", jwt.ClaimStrings{"api", "chatgate"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := mutated(func(c *Claims) { c.Issuer, c.Audience = tc.iss, tc.aud })
			id, err := as.iss.Authenticate(sign(t, jwt.SigningMethodHS256, []byte(testSecret), "", c))
			if err != nil || id.UserID != "alice" {
				t.Fatalf("Authenticate = %+v, %v", id, err)
			}
		})
	}
	// Without configured issuer or audience, whatever the token says is fine.
	c := mutated(func(c *Claims) { c.Issuer, c.Audience = "anyone", jwt.ClaimStrings{"anything"} })
	if _, err := as.hs.Authenticate(sign(t, jwt.SigningMethodHS256, []byte(testSecret), "", c)); err != nil {
		t.Fatal(err)
	}
}

func TestAuthenticateBothKinds(t *testing.T) {
	as := setup(t)
	c := claimsFor("alice")
	for name, tok := range map[string]string{
		"HS256": sign(t, jwt.SigningMethodHS256, []byte(testSecret), "", c),
		"RS256": sign(t, jwt.SigningMethodRS256, rsaKey(t, as.rsaPriv), "", c),
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := as.both.Authenticate(tok); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestMayJoin(t *testing.T) {
	cases := []struct {
		name  string
		rooms []string
		room  string
		want  bool
	}{
		{"nil allows all", nil, "anything", true},
		{"empty allows none", []string{}, "lobby", false},
		{"exact", []string{"lobby"}, "lobby", true},
		{"exact is case sensitive", []string{"lobby"}, "Lobby", false},
		{"exact is not a prefix", []string{"lobby"}, "lobby2", false},
		{"wildcard suffix", []string{"lobby", "team-*"}, "team-red", true},
		{"wildcard matches empty", []string{"team-*"}, "team-", true},
		{"wildcard needs the prefix", []string{"team-*"}, "team", false},
		{"wildcard anchored", []string{"team-*"}, "my-team-red", false},
		{"second pattern", []string{"lobby", "team-*"}, "lobby", true},
		{"no match", []string{"lobby", "team-*"}, "support", false},
		{"question mark", []string{"room-?"}, "room-1", true},
		{"question mark is one character", []string{"room-?"}, "room-10", false},
		{"star alone", []string{"*"}, "x.y-z", true},
		{"character class", []string{"dm-[ab]"}, "dm-b", true},
		{"malformed pattern matches nothing", []string{"dm-["}, "dm-[", false},
		{"malformed pattern does not stop the others", []string{"dm-[", "lobby"}, "lobby", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := (Identity{UserID: "u", Rooms: tc.rooms}).MayJoin(tc.room); got != tc.want {
				t.Errorf("rooms %q MayJoin(%q) = %v, want %v", tc.rooms, tc.room, got, tc.want)
			}
		})
	}
}

func TestTokenFromRequest(t *testing.T) {
	cases := []struct {
		name   string
		header http.Header
		query  string
		want   string
	}{
		{"nothing", nil, "", ""},
		{"bearer header", http.Header{"Authorization": {"Bearer h.h.h"}}, "", "h.h.h"},
		{"scheme lower case", http.Header{"Authorization": {"bearer h.h.h"}}, "", "h.h.h"},
		{"scheme upper case", http.Header{"Authorization": {"BEARER h.h.h"}}, "", "h.h.h"},
		{"spaces around the token", http.Header{"Authorization": {"Bearer   h.h.h  "}}, "", "h.h.h"},
		{"other scheme is ignored", http.Header{"Authorization": {"Basic dXNlcjpwYXNz"}}, "token=q.q.q", "q.q.q"},
		{"scheme without token", http.Header{"Authorization": {"Bearer"}}, "token=q.q.q", "q.q.q"},
		{"subprotocol after chatgate.v1", http.Header{"Sec-Websocket-Protocol": {"chatgate.v1, bearer.p.p.p"}}, "", "p.p.p"},
		{"subprotocol first", http.Header{"Sec-Websocket-Protocol": {"bearer.p.p.p,chatgate.v1"}}, "", "p.p.p"},
		{"subprotocol in a second header line", http.Header{"Sec-Websocket-Protocol": {"chatgate.v1", "bearer.p.p.p"}}, "", "p.p.p"},
		{"subprotocol prefix is case sensitive", http.Header{"Sec-Websocket-Protocol": {"chatgate.v1, Bearer.p.p.p"}}, "", ""},
		{"subprotocols without a token", http.Header{"Sec-Websocket-Protocol": {"chatgate.v1"}}, "token=q.q.q", "q.q.q"},
		{"query", nil, "room=lobby&token=q.q.q", "q.q.q"},
		{"query escaped", nil, "token=" + url.QueryEscape("q+q/q="), "q+q/q="},
		{"header beats subprotocol and query", http.Header{"Authorization": {"Bearer h.h.h"}, "Sec-Websocket-Protocol": {"chatgate.v1, bearer.p.p.p"}}, "token=q.q.q", "h.h.h"},
		{"subprotocol beats query", http.Header{"Sec-Websocket-Protocol": {"chatgate.v1, bearer.p.p.p"}}, "token=q.q.q", "p.p.p"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, err := http.NewRequest(http.MethodGet, "http://chat.example/ws?"+tc.query, nil)
			if err != nil {
				t.Fatal(err)
			}
			for k, vs := range tc.header {
				for _, v := range vs {
					r.Header.Add(k, v)
				}
			}
			if got := TokenFromRequest(r); got != tc.want {
				t.Errorf("TokenFromRequest = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestReadSecret(t *testing.T) {
	dir := t.TempDir()
	exactly32 := strings.Repeat("x", 32)
	cases := []struct {
		name    string
		content *string // nil: no file
		want    string
		wantErr string
	}{
		{"missing file", nil, "", "jwt secret"},
		{"empty", ptr(""), "", "0 bytes"},
		{"31 bytes", ptr(strings.Repeat("x", 31)), "", "31 bytes"},
		{"31 bytes padded with white space", ptr("  \t" + strings.Repeat("x", 31) + "\n\n"), "", "31 bytes"},
		{"32 bytes", ptr(exactly32), exactly32, ""},
		{"trailing newline trimmed", ptr(testSecret + "\n"), testSecret, ""},
		{"white space around trimmed", ptr(" \t" + testSecret + " \r\n"), testSecret, ""},
		{"inner white space kept", ptr("abcdefghijklmnop qrstuvwxyz012345"), "abcdefghijklmnop qrstuvwxyz012345", ""},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(dir, "secret"+string(rune('a'+i)))
			if tc.content != nil {
				writeFile(t, dir, filepath.Base(file), []byte(*tc.content))
			}
			got, err := ReadSecret(file)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ReadSecret = %q, %v; want an error containing %q", got, err, tc.wantErr)
				}
				if tc.content != nil && strings.Contains(err.Error(), strings.TrimSpace(*tc.content)) && strings.TrimSpace(*tc.content) != "" {
					t.Errorf("error %q quotes the secret", err)
				}
				return
			}
			if err != nil || string(got) != tc.want {
				t.Fatalf("ReadSecret = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestNew(t *testing.T) {
	dir := t.TempDir()
	good := writeFile(t, dir, "secret", []byte(testSecret))
	short := writeFile(t, dir, "short", []byte("too short"))
	keys := writeFile(t, dir, "keys.pem", pemPublicKey(t, &rsaKey(t, "a").PublicKey, ""))
	noKeys := writeFile(t, dir, "nokeys.pem", []byte("nothing here"))
	cases := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"nothing configured", Config{}, "--jwt-secret-file or --jwt-keys-file"},
		{"issuer alone is not enough", Config{Issuer: "x", Audience: "y"}, "--jwt-secret-file or --jwt-keys-file"},
		{"short secret", Config{SecretFile: short}, "use at least 32"},
		{"missing secret file", Config{SecretFile: filepath.Join(dir, "absent")}, "jwt secret"},
		{"secret fine, keys broken", Config{SecretFile: good, KeysFile: noKeys}, "no RSA or ECDSA public key"},
		{"missing keys file", Config{KeysFile: filepath.Join(dir, "absent")}, "jwt keys"},
		{"secret", Config{SecretFile: good}, ""},
		{"keys", Config{KeysFile: keys}, ""},
		{"both", Config{SecretFile: good, KeysFile: keys, Issuer: "i", Audience: "a", Leeway: time.Minute}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, err := New(tc.cfg, nil)
			if tc.wantErr == "" {
				if err != nil || a == nil {
					t.Fatalf("New = %v, %v", a, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("New error = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestMint(t *testing.T) {
	dir := t.TempDir()
	a := newAuth(t, Config{SecretFile: writeFile(t, dir, "secret", []byte(testSecret)), Leeway: leeway}, nil)
	now := time.Now().Truncate(time.Second)

	t.Run("round trip", func(t *testing.T) {
		cases := []struct {
			name  string
			sub   string
			uname string
			rooms []string
			ttl   time.Duration
		}{
			{"all rooms", "alice", "Alice", nil, time.Hour},
			{"patterns", "bob", "", []string{"lobby", "team-*"}, time.Minute},
			{"no rooms at all", "carol", "Carol", []string{}, 10 * time.Second},
			{"sub of 128 bytes", strings.Repeat("s", 128), "", nil, time.Hour},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				tok, err := Mint([]byte(testSecret), tc.sub, tc.uname, tc.rooms, tc.ttl, now)
				if err != nil {
					t.Fatal(err)
				}
				id, err := a.Authenticate(tok)
				if err != nil {
					t.Fatal(err)
				}
				want := Identity{UserID: tc.sub, Name: tc.uname, Rooms: tc.rooms, Expires: now.Add(tc.ttl + leeway)}
				if !reflect.DeepEqual(id, want) {
					t.Errorf("identity\n got %#v\nwant %#v", id, want)
				}
				for _, room := range []string{"lobby", "team-x", "support"} {
					if got, want := id.MayJoin(room), (Identity{Rooms: tc.rooms}).MayJoin(room); got != want {
						t.Errorf("MayJoin(%q) = %v after the round trip, %v before", room, got, want)
					}
				}
			})
		}
	})

	t.Run("token is HS256 with iat, nbf and exp", func(t *testing.T) {
		tok, err := Mint([]byte(testSecret), "alice", "", nil, time.Hour, now)
		if err != nil {
			t.Fatal(err)
		}
		var c Claims
		parsed, err := jwt.ParseWithClaims(tok, &c, func(*jwt.Token) (any, error) { return []byte(testSecret), nil },
			jwt.WithValidMethods([]string{"HS256"}))
		if err != nil {
			t.Fatal(err)
		}
		if parsed.Header["alg"] != "HS256" || !c.IssuedAt.Equal(now) || !c.NotBefore.Equal(now) || !c.ExpiresAt.Equal(now.Add(time.Hour)) {
			t.Errorf("header %v claims %+v", parsed.Header, c.RegisteredClaims)
		}
	})

	t.Run("expired mint is refused", func(t *testing.T) {
		tok, err := Mint([]byte(testSecret), "alice", "", nil, time.Second, now.Add(-time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		_, err = a.Authenticate(tok)
		checkErr(t, err, ErrExpired)
	})

	t.Run("another secret is refused", func(t *testing.T) {
		tok, err := Mint([]byte("another-secret-another-secret-another"), "alice", "", nil, time.Hour, now)
		if err != nil {
			t.Fatal(err)
		}
		_, err = a.Authenticate(tok)
		checkErr(t, err, ErrInvalid)
	})

	t.Run("bad arguments", func(t *testing.T) {
		cases := []struct {
			name string
			sub  string
			ttl  time.Duration
		}{
			{"empty sub", "", time.Hour},
			{"zero ttl", "alice", 0},
			{"negative ttl", "alice", -time.Minute},
			{"most negative ttl", "alice", math.MinInt64},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				tok, err := Mint([]byte(testSecret), tc.sub, "x", nil, tc.ttl, now)
				if err == nil || tok != "" {
					t.Fatalf("Mint = %q, %v; want an error", tok, err)
				}
			})
		}
	})
}

// TestAuthenticateDoesNotLog checks that Authenticate, which sees tokens,
// writes nothing to the log whether the token is good or bad.
func TestAuthenticateDoesNotLog(t *testing.T) {
	rec := &logRecorder{}
	dir := t.TempDir()
	a := newAuth(t, Config{SecretFile: writeFile(t, dir, "secret", []byte(testSecret))}, slog.New(rec))
	good := sign(t, jwt.SigningMethodHS256, []byte(testSecret), "", claimsFor("alice"))
	for _, tok := range []string{"", "garbage", good, good + "x"} {
		_, _ = a.Authenticate(tok)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.msgs) != 0 {
		t.Errorf("Authenticate logged %q", rec.msgs)
	}
}

// TestSecretReadOnce: the secret is read by New only; changing or removing
// the file later has no effect until a restart.
func TestSecretReadOnce(t *testing.T) {
	dir := t.TempDir()
	file := writeFile(t, dir, "secret", []byte(testSecret))
	a := newAuth(t, Config{SecretFile: file}, nil)
	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Authenticate(sign(t, jwt.SigningMethodHS256, []byte(testSecret), "", claimsFor("alice"))); err != nil {
		t.Fatalf("secret not kept after New: %v", err)
	}
}

// TestKeyForDefence checks the key function on its own: it must refuse
// what is not configured even if the parser's method list let it through.
func TestKeyForDefence(t *testing.T) {
	as := setup(t)
	cases := []struct {
		name    string
		auth    *Authenticator
		method  jwt.SigningMethod
		wantErr string
	}{
		{"HMAC without a secret", as.rsa, jwt.SigningMethodHS256, "HS256 is not configured"},
		{"RSA without keys", as.hs, jwt.SigningMethodRS256, "no public keys"},
		{"ECDSA without keys", as.hs, jwt.SigningMethodES256, "no public keys"},
		{"none", as.both, jwt.SigningMethodNone, "unexpected signing method"},
		{"EdDSA", as.both, jwt.SigningMethodEdDSA, "unexpected signing method"},
		{"PS256", as.rsa, jwt.SigningMethodPS256, "unexpected signing method"},
		{"RS256 with keys", as.rsa, jwt.SigningMethodRS256, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			key, err := tc.auth.keyFor(&jwt.Token{Method: tc.method, Header: map[string]any{}})
			if tc.wantErr == "" {
				if err != nil || key == nil {
					t.Fatalf("keyFor = %v, %v", key, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || key != nil {
				t.Fatalf("keyFor = %v, %v; want an error containing %q", key, err, tc.wantErr)
			}
		})
	}
}

// The type check refuses only what is of the wrong type: every claim of the
// right type, written the ways JSON allows, is accepted.
func TestAuthenticateWellTypedClaims(t *testing.T) {
	as := setup(t)
	future, past := time.Now().Add(time.Hour).Unix(), time.Now().Add(-time.Hour).Unix()
	cases := []struct {
		name   string
		claims jwt.MapClaims
		want   Identity
	}{
		{"every claim", jwt.MapClaims{"sub": "alice", "name": "Alice", "iss": "i", "aud": []any{"a", "b"}, "iat": past, "nbf": past, "exp": future,
			"rooms": []any{"lobby"}, "send_rate": 2.5, "send_burst": 7, "extra": map[string]any{"ignored": true}},
			Identity{UserID: "alice", Name: "Alice", Rooms: []string{"lobby"}, SendRate: 2.5, SendBurst: 7, Expires: time.Unix(future, 0).Add(leeway)}},
		{"dates with fractions", jwt.MapClaims{"sub": "alice", "iat": float64(past) + 0.5, "exp": float64(future) + 0.5},
			Identity{UserID: "alice", Expires: time.Unix(future, 0).Add(leeway)}}, // jwt rounds to seconds
		{"aud a single string, rooms null", jwt.MapClaims{"sub": "alice", "aud": "chatgate", "rooms": nil, "exp": future},
			Identity{UserID: "alice", Expires: time.Unix(future, 0).Add(leeway)}},
		{"rooms empty", jwt.MapClaims{"sub": "alice", "rooms": []any{}, "exp": future},
			Identity{UserID: "alice", Rooms: []string{}, Expires: time.Unix(future, 0).Add(leeway)}},
		{"integer send_rate", jwt.MapClaims{"sub": "alice", "send_rate": 1, "send_burst": 3, "exp": future},
			Identity{UserID: "alice", SendRate: 1, SendBurst: 3, Expires: time.Unix(future, 0).Add(leeway)}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id, err := as.hs.Authenticate(sign(t, jwt.SigningMethodHS256, []byte(testSecret), "", tc.claims))
			if err != nil {
				t.Fatal(err)
			}
			if !id.Expires.Equal(tc.want.Expires) {
				t.Errorf("expires %v, want %v", id.Expires, tc.want.Expires)
			}
			id.Expires, tc.want.Expires = time.Time{}, time.Time{}
			if !reflect.DeepEqual(id, tc.want) {
				t.Errorf("identity\n got %+v\nwant %+v", id, tc.want)
			}
		})
	}
}
