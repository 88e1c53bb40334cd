package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// fuzzAuth is an Authenticator with the HS256 test secret and a leeway.
func fuzzAuth(f *testing.F) *Authenticator {
	f.Helper()
	return newAuth(f, Config{SecretFile: writeFile(f, f.TempDir(), "secret", []byte(testSecret)), Leeway: leeway}, nil)
}

// checkRefusal fails unless a refusal is one of the sentinels with no
// identity.
func checkRefusal(t *testing.T, tok string, id Identity, err error) {
	t.Helper()
	if !errors.Is(err, ErrMissing) && !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrExpired) {
		t.Fatalf("error %v is none of the sentinels", err)
	}
	if (tok == "") != errors.Is(err, ErrMissing) {
		t.Fatalf("token %q gave %v", tok, err)
	}
	if !reflect.DeepEqual(id, Identity{}) {
		t.Fatalf("identity %+v returned with error %v", id, err)
	}
}

// checkIdentity checks what an accepted token's identity must satisfy.
func checkIdentity(t *testing.T, id Identity) {
	t.Helper()
	if id.UserID == "" || len(id.UserID) > 128 {
		t.Fatalf("accepted a sub of %d bytes", len(id.UserID))
	}
	if !id.Expires.IsZero() && !time.Now().Before(id.Expires) {
		t.Fatalf("accepted a token that expired at %v", id.Expires)
	}
	_ = id.MayJoin("lobby") // patterns from the token must not panic
}

func FuzzAuthenticate(f *testing.F) {
	a := fuzzAuth(f)
	secret := []byte(testSecret)
	valid := claimsFor("alice")
	valid.Name, valid.Rooms, valid.SendRate, valid.SendBurst = "Alice", []string{"lobby", "team-*"}, 3, 5
	expired := mutated(func(c *Claims) { c.ExpiresAt = at(-time.Hour) })
	rsaPEM := pemPublicKey(f, &rsaKey(f, "a").PublicKey, "")
	for _, seed := range []string{
		sign(f, jwt.SigningMethodHS256, secret, "", valid),
		sign(f, jwt.SigningMethodHS256, secret, "k1", claimsFor(strings.Repeat("s", 128))),
		sign(f, jwt.SigningMethodHS256, secret, "", expired),
		sign(f, jwt.SigningMethodHS256, secret, "", jwt.MapClaims{"sub": "bob", "aud": []string{"x", "y"}, "rooms": []string{}}),
		sign(f, jwt.SigningMethodHS256, []byte("another-secret-another-secret-another"), "", valid),
		sign(f, jwt.SigningMethodHS384, secret, "", valid),
		sign(f, jwt.SigningMethodHS256, rsaPEM, "", valid),
		sign(f, jwt.SigningMethodRS256, rsaKey(f, "a"), "k1", valid),
		sign(f, jwt.SigningMethodES256, ecKey(f, "a"), "", valid),
		sign(f, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, "", valid),
		"", "a.b", "...", "a.b.c", "garbage", "eyJhbGciOiJIUzI1NiJ9.e30.", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		id, err := a.Authenticate(tok)
		if err != nil {
			checkRefusal(t, tok, id, err)
			return
		}
		// Accepted: the token must carry an HS256 signature by the secret
		// over its first two segments, whatever jwt.Parse thinks.
		parsed, perr := jwt.Parse(tok, func(*jwt.Token) (any, error) { return secret, nil },
			jwt.WithValidMethods([]string{"HS256"}), jwt.WithoutClaimsValidation())
		if perr != nil || !parsed.Valid {
			t.Fatalf("accepted %q, which does not verify with the secret: %v", tok, perr)
		}
		parts := strings.Split(tok, ".")
		if len(parts) != 3 {
			t.Fatalf("accepted %q with %d segments", tok, len(parts))
		}
		sig, derr := base64.RawURLEncoding.DecodeString(parts[2])
		mac := hmac.New(sha256.New, secret)
		mac.Write([]byte(parts[0] + "." + parts[1]))
		if derr != nil || !hmac.Equal(sig, mac.Sum(nil)) {
			t.Fatalf("accepted %q without a valid HMAC-SHA256", tok)
		}
		if sub, _ := parsed.Claims.GetSubject(); sub != id.UserID {
			t.Fatalf("identity %q, token sub %q", id.UserID, sub)
		}
		checkIdentity(t, id)
	})
}

// FuzzSignedClaims signs arbitrary claims JSON with the configured secret,
// so the fuzzer reaches claims validation and the mapping to Identity.
func FuzzSignedClaims(f *testing.F) {
	a := fuzzAuth(f)
	now := time.Now().Unix()
	for _, seed := range []string{
		`{"sub":"alice","exp":` + itoa(now+3600) + `,"name":"Alice","rooms":["lobby","team-*"],"send_rate":2.5,"send_burst":4}`,
		`{"sub":"alice","exp":` + itoa(now-3600) + `}`,
		`{"sub":"alice","nbf":` + itoa(now+3600) + `,"iat":` + itoa(now+3600) + `}`,
		`{"sub":"alice","exp":1e300}`,
		`{"sub":"alice","exp":-1e300}`,
		`{"sub":"alice","exp":9.2e18}`,
		`{"sub":"alice","exp":"tomorrow"}`,
		`{"sub":"alice","rooms":["["],"aud":"x"}`,
		`{"sub":"alice","rooms":null}`,
		`{"sub":"","rooms":[]}`,
		`{"sub":["a"]}`,
		`[]`, `null`, `{`, `"x"`,
	} {
		f.Add([]byte(seed))
	}
	header := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		signed := header + "." + base64.RawURLEncoding.EncodeToString(payload)
		mac := hmac.New(sha256.New, []byte(testSecret))
		mac.Write([]byte(signed))
		tok := signed + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))

		id, err := a.Authenticate(tok)
		if err != nil {
			checkRefusal(t, tok, id, err)
			return
		}
		checkIdentity(t, id)
		// The identity is what the claims say.
		var c Claims
		if err := json.Unmarshal(payload, &c); err != nil {
			t.Fatalf("accepted claims that do not decode: %v", err)
		}
		if id.UserID != c.Subject || id.Name != c.Name || !reflect.DeepEqual(id.Rooms, c.Rooms) ||
			id.SendRate != c.SendRate || id.SendBurst != c.SendBurst {
			t.Fatalf("identity %+v from claims %s", id, payload)
		}
		if (c.ExpiresAt == nil) != id.Expires.IsZero() {
			t.Fatalf("exp %v gave Expires %v", c.ExpiresAt, id.Expires)
		}
	})
}

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }

// FuzzTokenFromRequest: any header and query values are safe, and a bearer
// Authorization header always wins.
func FuzzTokenFromRequest(f *testing.F) {
	f.Add("Bearer a.b.c", "chatgate.v1, bearer.d.e.f", "token=g.h.i")
	f.Add("", "bearer.", "token=")
	f.Add("Basic x", ",,bearer.x,", "token=%zz")
	f.Add("bearer  x ", "", "token=a&token=b")
	f.Fuzz(func(t *testing.T, authz, proto, rawQuery string) {
		r := &http.Request{Header: http.Header{}, URL: &url.URL{Path: "/ws", RawQuery: rawQuery}}
		if authz != "" {
			r.Header.Set("Authorization", authz)
		}
		if proto != "" {
			r.Header.Set("Sec-WebSocket-Protocol", proto)
		}
		got := TokenFromRequest(r)
		if scheme, tok, ok := strings.Cut(authz, " "); ok && strings.EqualFold(scheme, "Bearer") {
			if want := strings.TrimSpace(tok); got != want {
				t.Fatalf("Authorization %q gave %q, want %q", authz, got, want)
			}
		}
	})
}
