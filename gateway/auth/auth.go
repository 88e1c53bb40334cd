// Package auth verifies the JSON Web Tokens that admit users to chatgate
// when it runs with --auth jwt, and turns their claims into an Identity.
//
// Keys: an HS256 shared secret read from a file, and/or RS256/ES256 public
// keys from a PEM or JWKS file that is reloaded when it changes (kid is
// honoured). Issuer and audience are checked when configured, with a small
// leeway for clock skew. Tokens are never logged.
package auth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path"
	"strings"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Config says where the keys are and what to check.
type Config struct {
	SecretFile string        // HS256 shared secret (raw bytes, surrounding whitespace trimmed)
	KeysFile   string        // RS256/ES256 public keys: PEM blocks or a JWKS document
	Issuer     string        // required "iss" when set
	Audience   string        // required in "aud" when set
	Leeway     time.Duration // clock skew allowed on exp/nbf/iat
	// RequireExpiry refuses tokens without exp (the server API's tokens
	// must end).
	RequireExpiry bool
}

// Identity is who a verified token says the user is.
type Identity struct {
	UserID string
	Name   string
	// Rooms are the room patterns the user may join ("lobby", "team-*");
	// nil means every room.
	Rooms []string
	// SendRate and SendBurst override the gateway's per-connection send
	// limits for this user when positive.
	SendRate  float64
	SendBurst int
	// Expires is when the token stops being valid; zero if it has no exp.
	Expires time.Time
	// Scopes are the token's scope claim, split on spaces (the server
	// API's scopes: publish, moderate, read).
	Scopes []string
}

// MayJoin reports whether the identity's room patterns allow room.
func (id Identity) MayJoin(room string) bool {
	if id.Rooms == nil {
		return true
	}
	for _, p := range id.Rooms {
		if ok, _ := path.Match(p, room); ok {
			return true
		}
	}
	return false
}

// Claims are the token claims chatgate reads.
type Claims struct {
	jwt.RegisteredClaims
	Name string `json:"name,omitempty"`
	// Rooms is omitted when nil (every room) but kept when empty (no room):
	// omitempty would turn "no room" into "every room".
	Rooms     []string `json:"rooms,omitzero"`
	SendRate  float64  `json:"send_rate,omitempty"`
	SendBurst int      `json:"send_burst,omitempty"`
	// Scope is a space-separated list of scopes (RFC 8693's scope claim),
	// read by the server API.
	Scope string `json:"scope,omitempty"`
}

// UnmarshalJSON decodes the claims after checking that every claim chatgate
// reads has the JSON type RFC 7519 and docs/security.md give it: exp, nbf
// and iat numbers, sub, iss, name and scope strings, aud a string or an array of
// strings, rooms an array of strings (or null: every room), send_rate a
// number and send_burst an integer. encoding/json alone would accept a
// date written as a string ("exp": "1893456000") and read it as a number;
// such a token is refused instead. Keys are matched without regard to case,
// as encoding/json matches them to fields.
func (c *Claims) UnmarshalJSON(data []byte) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return err
	}
	for key, v := range raw {
		for _, ct := range claimTypes {
			if strings.EqualFold(key, ct.name) && !ct.ok(v) {
				return fmt.Errorf("claim %q must be %s", ct.name, ct.want)
			}
		}
	}
	type plain Claims // the same fields without this method
	return json.Unmarshal(data, (*plain)(c))
}

// claimTypes are the claims chatgate reads and the JSON type each must have.
var claimTypes = []struct {
	name, want string
	ok         func(json.RawMessage) bool
}{
	{"exp", "a number", isNumber},
	{"nbf", "a number", isNumber},
	{"iat", "a number", isNumber},
	{"sub", "a string", isString},
	{"iss", "a string", isString},
	{"name", "a string", isString},
	{"aud", "a string or an array of strings", func(v json.RawMessage) bool { return isString(v) || isStringArray(v) }},
	{"rooms", "an array of strings or null", func(v json.RawMessage) bool { return isNull(v) || isStringArray(v) }},
	{"send_rate", "a number", isNumber},
	{"send_burst", "an integer", isInteger},
	{"scope", "a string", isString},
}

// jsonKind returns the first byte of a JSON value: '"' string, '[' array,
// '{' object, 'n' null, 't'/'f' boolean, or a digit or '-' for a number.
func jsonKind(v json.RawMessage) byte {
	v = bytes.TrimLeft(v, " \t\r\n")
	if len(v) == 0 {
		return 0
	}
	return v[0]
}

func isNumber(v json.RawMessage) bool {
	k := jsonKind(v)
	return k == '-' || k >= '0' && k <= '9'
}

func isInteger(v json.RawMessage) bool {
	var n json.Number
	if !isNumber(v) || json.Unmarshal(v, &n) != nil {
		return false
	}
	_, err := n.Int64()
	return err == nil
}

func isString(v json.RawMessage) bool { return jsonKind(v) == '"' }
func isNull(v json.RawMessage) bool   { return jsonKind(v) == 'n' }

func isStringArray(v json.RawMessage) bool {
	if jsonKind(v) != '[' {
		return false
	}
	var items []json.RawMessage
	if json.Unmarshal(v, &items) != nil {
		return false
	}
	for _, it := range items {
		if !isString(it) {
			return false
		}
	}
	return true
}

// Errors Authenticate returns. Their text is a short code, safe to send to
// the client; the cause is for logs.
var (
	ErrMissing = errors.New("missing_token")
	ErrInvalid = errors.New("invalid_token")
	ErrExpired = errors.New("token_expired")
)

// Authenticator verifies tokens. It is safe for concurrent use.
type Authenticator struct {
	// static after construction
	cfg    Config
	log    *slog.Logger
	secret []byte
	parser *jwt.Parser

	keys atomic.Pointer[keySet] // replaced whole on reload
}

// New loads the keys. At least one of SecretFile and KeysFile is required.
func New(cfg Config, log *slog.Logger) (*Authenticator, error) {
	if cfg.SecretFile == "" && cfg.KeysFile == "" {
		return nil, errors.New("--auth jwt needs --jwt-secret-file or --jwt-keys-file")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &Authenticator{cfg: cfg, log: log}
	var methods []string
	if cfg.SecretFile != "" {
		secret, err := ReadSecret(cfg.SecretFile)
		if err != nil {
			return nil, err
		}
		a.secret = secret
		methods = append(methods, jwt.SigningMethodHS256.Alg())
	}
	if cfg.KeysFile != "" {
		ks, err := loadKeys(cfg.KeysFile)
		if err != nil {
			return nil, err
		}
		a.keys.Store(ks)
		methods = append(methods, jwt.SigningMethodRS256.Alg(), jwt.SigningMethodES256.Alg())
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(methods), // refuses "none" and anything unexpected
		jwt.WithLeeway(cfg.Leeway),
		jwt.WithIssuedAt(),
	}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	if cfg.RequireExpiry {
		opts = append(opts, jwt.WithExpirationRequired())
	}
	a.parser = jwt.NewParser(opts...)
	return a, nil
}

// ReadSecret reads an HS256 secret file; it must hold at least 32 bytes.
func ReadSecret(file string) ([]byte, error) {
	b, err := readFile(file)
	if err != nil {
		return nil, fmt.Errorf("jwt secret: %w", err)
	}
	secret := []byte(strings.TrimSpace(string(b)))
	if len(secret) < 32 {
		return nil, fmt.Errorf("jwt secret in %s is %d bytes; use at least 32", file, len(secret))
	}
	return secret, nil
}

// Authenticate verifies token and returns the identity it carries.
func (a *Authenticator) Authenticate(token string) (Identity, error) {
	if token == "" {
		return Identity{}, ErrMissing
	}
	var claims Claims
	_, err := a.parser.ParseWithClaims(token, &claims, a.keyFor)
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return Identity{}, fmt.Errorf("%w: %v", ErrExpired, err)
	case err != nil:
		return Identity{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if claims.Subject == "" || len(claims.Subject) > 128 {
		return Identity{}, fmt.Errorf("%w: sub must be 1-128 bytes", ErrInvalid)
	}
	id := Identity{
		UserID:    claims.Subject,
		Name:      claims.Name,
		Rooms:     claims.Rooms,
		SendRate:  claims.SendRate,
		SendBurst: claims.SendBurst,
	}
	if claims.Scope != "" {
		id.Scopes = strings.Fields(claims.Scope)
	}
	if claims.ExpiresAt != nil {
		id.Expires = claims.ExpiresAt.Time.Add(a.cfg.Leeway)
	}
	return id, nil
}

func (a *Authenticator) keyFor(t *jwt.Token) (any, error) {
	switch t.Method.(type) {
	case *jwt.SigningMethodHMAC:
		if a.secret == nil {
			return nil, errors.New("HS256 is not configured")
		}
		return a.secret, nil
	case *jwt.SigningMethodRSA, *jwt.SigningMethodECDSA:
		ks := a.keys.Load()
		if ks == nil {
			return nil, errors.New("no public keys are configured")
		}
		kid, _ := t.Header["kid"].(string)
		return ks.lookup(kid, t.Method.Alg())
	}
	return nil, fmt.Errorf("unexpected signing method %s", t.Method.Alg())
}

// Watch reloads the keys file whenever it changes, until ctx ends. A file
// that fails to load keeps the previous keys in force.
func (a *Authenticator) Watch(ctx context.Context) error {
	if a.cfg.KeysFile == "" {
		return nil
	}
	return WatchFile(ctx, a.cfg.KeysFile, "jwt keys", a.log, func() {
		ks, err := loadKeys(a.cfg.KeysFile)
		if err != nil {
			a.log.Error("reloading jwt keys failed; keeping the previous keys", "file", a.cfg.KeysFile, "err", err)
			return
		}
		a.keys.Store(ks)
		a.log.Info("reloaded jwt keys", "file", a.cfg.KeysFile, "keys", len(ks.keys))
	})
}

// TokenFromRequest finds the token: an Authorization bearer header, a
// "bearer.<token>" entry in Sec-WebSocket-Protocol (browsers), or the token
// query parameter (browsers; it can end up in proxy logs).
func TokenFromRequest(r *http.Request) string {
	if h := r.Header.Get("Authorization"); h != "" {
		if scheme, tok, ok := strings.Cut(h, " "); ok && strings.EqualFold(scheme, "Bearer") {
			return strings.TrimSpace(tok)
		}
	}
	for _, h := range r.Header.Values("Sec-WebSocket-Protocol") {
		for _, p := range strings.Split(h, ",") {
			if tok, ok := strings.CutPrefix(strings.TrimSpace(p), "bearer."); ok {
				return tok
			}
		}
	}
	return r.URL.Query().Get("token")
}

// Mint signs an HS256 token for sub, for development and load tests (see
// `chatgate token`). ttl must be positive.
func Mint(secret []byte, sub, name string, rooms []string, ttl time.Duration, now time.Time) (string, error) {
	if sub == "" || ttl <= 0 {
		return "", errors.New("mint: sub and a positive ttl are required")
	}
	claims := Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   sub,
			IssuedAt:  jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
		},
		Name:  name,
		Rooms: rooms,
	}
	return MintClaims(secret, claims)
}

// MintClaims signs arbitrary claims with HS256.
func MintClaims(secret []byte, claims Claims) (string, error) {
	return jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(secret)
}
