package api_test

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/chatgate/chatgate/gateway/api"
	"github.com/chatgate/chatgate/gateway/auth"
)

// TestAuthentication: a request without a valid key gets 401 with a
// WWW-Authenticate challenge and changes nothing; a valid key is accepted.
func TestAuthentication(t *testing.T) {
	e := newEnv(t, nil)
	body := `{"room":"r","text":"hello"}`
	cases := []struct {
		name   string
		header string
		status int
	}{
		{"no credentials", "", http.StatusUnauthorized},
		{"basic scheme", "Basic " + keyPublish, http.StatusUnauthorized},
		{"bearer without a key", "Bearer ", http.StatusUnauthorized},
		{"unknown key", "Bearer pub-0123456789abcdef0123456789abcdeX", http.StatusUnauthorized},
		{"a key's prefix", "Bearer " + keyPublish[:20], http.StatusUnauthorized},
		{"a key with more", "Bearer " + keyPublish + "x", http.StatusUnauthorized},
		{"a key's digest", "Bearer 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", http.StatusUnauthorized},
		{"valid key", "Bearer " + keyPublish, http.StatusOK},
		{"valid key, scheme in lower case", "bearer " + keyPublish, http.StatusOK},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/v1/publish", strings.NewReader(body))
			if tc.header != "" {
				req.Header.Set("Authorization", tc.header)
			}
			r := e.send(req)
			if r.status != tc.status {
				t.Fatalf("status %d (%s); want %d", r.status, r.raw, tc.status)
			}
			if tc.status == http.StatusUnauthorized {
				if r.code() != "unauthorized" || r.header.Get("WWW-Authenticate") == "" {
					t.Fatalf("401 with code %q and challenge %q; want unauthorized and a Bearer challenge", r.code(), r.header.Get("WWW-Authenticate"))
				}
			}
		})
	}
	if h, _ := e.hub.History(t.Context(), "r", nil, 100); len(h.Messages) != 2 {
		t.Fatalf("the room holds %d messages; want the 2 the valid keys published", len(h.Messages))
	}
}

// TestScopes: each endpoint needs its scope; a key without it gets 403.
func TestScopes(t *testing.T) {
	e := newEnv(t, nil)
	requests := []struct {
		scope        string
		method, path string
		body         string
	}{
		{"publish", "POST", "/v1/publish", `{"room":"r","text":"x"}`},
		{"publish", "POST", "/v1/publish/batch", `{"messages":[{"room":"r","text":"x"}]}`},
		{"moderate", "POST", "/v1/disconnect", `{"user":"u"}`},
		{"moderate", "POST", "/v1/ban", `{"room":"r","user":"u","seconds":5}`},
		{"moderate", "POST", "/v1/unban", `{"room":"r","user":"u"}`},
		{"read", "GET", "/v1/rooms", ""},
		{"read", "GET", "/v1/rooms/r/presence", ""},
		{"read", "GET", "/v1/rooms/r/history", ""},
	}
	keys := map[string]string{"publish": keyPublish, "moderate": keyModerate, "read": keyRead}
	for _, rq := range requests {
		for scope, key := range keys {
			r := e.do(key, rq.method, rq.path, rq.body)
			switch {
			case scope == rq.scope && r.status != http.StatusOK:
				t.Errorf("%s %s with the %s key: %d %s; want 200", rq.method, rq.path, scope, r.status, r.raw)
			case scope != rq.scope && (r.status != http.StatusForbidden || r.code() != "forbidden" || !strings.Contains(r.message(), rq.scope)):
				t.Errorf("%s %s with the %s key: %d %s; want 403 forbidden naming the %s scope", rq.method, rq.path, scope, r.status, r.raw, rq.scope)
			}
		}
		if r := e.do(keyAll, rq.method, rq.path, rq.body); r.status != http.StatusOK {
			t.Errorf("%s %s with every scope: %d %s", rq.method, rq.path, r.status, r.raw)
		}
	}
}

// TestKeysReload: the keys file is watched: a new key works and a removed
// one stops working without a restart; a file that fails to load keeps the
// keys in force; an empty list revokes every key.
func TestKeysReload(t *testing.T) {
	e := newEnv(t, nil)
	const newKey = "new-0123456789abcdef0123456789abcdef"
	publishes := func(key string) bool {
		return e.do(key, "POST", "/v1/publish", `{"room":"r","text":"x"}`).status == http.StatusOK
	}
	eventually := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(waitTimeout)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// Rewrites spaced more widely than the watcher's debounce, which
	// would otherwise put off the reload for as long as they go on.
	var written time.Time
	replace := func(content string) {
		t.Helper()
		tmp := filepath.Join(filepath.Dir(e.keysFile), "keys.json.tmp")
		if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, e.keysFile); err != nil {
			t.Fatal(err)
		}
	}
	// The watcher starts with the handler; rewrite until it has seen it.
	rotated := `{"keys":[{"name":"rotated","sha256":"` + sha256Hex(newKey) + `","scopes":["publish"]}]}`
	eventually("the new key to work and the old to stop", func() bool {
		if time.Since(written) > 300*time.Millisecond {
			replace(rotated)
			written = time.Now()
		}
		return publishes(newKey) && !publishes(keyPublish)
	})
	failed := len(e.log.records(t, "reloading api keys failed; keeping the previous keys"))
	replace(`{"keys":[{"name":"broken","key":"short","scopes":["publish"]}]}`)
	eventually("the broken file to be refused", func() bool {
		return len(e.log.records(t, "reloading api keys failed; keeping the previous keys")) > failed
	})
	if !publishes(newKey) {
		t.Fatal("a file that failed to load revoked the keys in force")
	}
	replace(`{"keys":[]}`)
	eventually("an empty list to revoke every key", func() bool { return !publishes(newKey) })
	if strings.Contains(e.log.String(), newKey) || strings.Contains(e.log.String(), keyPublish) {
		t.Fatal("a key appears in the log")
	}
}

// TestJWT: with --api-jwt a token signed by the chat's keys is accepted
// when its audience is "api" and it has an exp; its scope claim gives its
// scopes; it is rate limited as jwt:<sub>.
func TestJWT(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef-api-test")
	file := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(file, secret, 0o600); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(c *api.Config, d *api.Deps) {
		c.JWT, c.KeysFile = true, ""
		d.JWT = auth.Config{SecretFile: file, Audience: "chat"} // the chat's audience does not apply
	})
	mint := func(aud []string, scope string, exp time.Duration) string {
		claims := auth.Claims{RegisteredClaims: jwt.RegisteredClaims{Subject: "billing", Audience: aud}, Scope: scope}
		if exp != 0 {
			claims.ExpiresAt = jwt.NewNumericDate(time.Now().Add(exp))
		}
		tok, err := auth.MintClaims(secret, claims)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	cases := []struct {
		name   string
		token  string
		status int
	}{
		{"audience api with the publish scope", mint([]string{"api"}, "publish read", time.Hour), http.StatusOK},
		{"one of several audiences", mint([]string{"chat", "api"}, "publish", time.Hour), http.StatusOK},
		{"other scopes are ignored", mint([]string{"api"}, "billing:write publish", time.Hour), http.StatusOK},
		{"without the scope", mint([]string{"api"}, "read", time.Hour), http.StatusForbidden},
		{"without a scope claim", mint([]string{"api"}, "", time.Hour), http.StatusForbidden},
		{"a chat token (no audience)", mint(nil, "publish", time.Hour), http.StatusUnauthorized},
		{"another audience", mint([]string{"chat"}, "publish", time.Hour), http.StatusUnauthorized},
		{"no exp", mint([]string{"api"}, "publish", 0), http.StatusUnauthorized},
		{"expired", mint([]string{"api"}, "publish", -time.Minute), http.StatusUnauthorized},
		{"an api key (none configured)", keyAll, http.StatusUnauthorized},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do(tc.token, "POST", "/v1/publish", `{"room":"r","text":"x"}`)
			if r.status != tc.status {
				t.Fatalf("status %d (%s); want %d", r.status, r.raw, tc.status)
			}
		})
	}
	spans := e.spans.Ended()
	last := spans[len(spans)-1]
	for _, s := range spans {
		for _, a := range s.Attributes() {
			if a.Key == "chatgate.api.key" && a.Value.AsString() == "jwt:billing" {
				return
			}
		}
	}
	t.Fatalf("no span names the token's subject as jwt:billing (last: %v)", last.Attributes())
}

func TestKeysFileErrors(t *testing.T) {
	dir := t.TempDir()
	good := `{"name":"a","key":"` + keyAll + `","scopes":["read"]}`
	cases := []struct {
		name    string
		content string
		want    string // in the error; "" means valid
	}{
		{"valid", `{"keys":[` + good + `]}`, ""},
		{"empty list", `{"keys":[]}`, ""},
		{"hashed key", `{"keys":[{"name":"h","sha256":"` + strings.ToUpper(sha256Hex(keyAll)) + `","scopes":["publish"]}]}`, ""},
		{"not JSON", `keys: []`, "not a keys document"},
		{"trailing data", `{"keys":[]} {}`, "data after"},
		{"unknown field", `{"keys":[{"name":"a","key":"` + keyAll + `","scopes":["read"],"scope":"x"}]}`, "unknown field"},
		{"bad name", `{"keys":[{"name":"a b","key":"` + keyAll + `","scopes":["read"]}]}`, "name must match"},
		{"duplicate name", `{"keys":[` + good + `,{"name":"a","key":"` + keyRead + `","scopes":["read"]}]}`, "used twice"},
		{"unknown scope", `{"keys":[{"name":"a","key":"` + keyAll + `","scopes":["admin"]}]}`, "unknown scope"},
		{"no scope", `{"keys":[{"name":"a","key":"` + keyAll + `","scopes":[]}]}`, "no scopes"},
		{"short key", `{"keys":[{"name":"a","key":"abc","scopes":["read"]}]}`, "at least 32"},
		{"key with a space", `{"keys":[{"name":"a","key":"` + strings.Repeat("x ", 20) + `","scopes":["read"]}]}`, "without spaces"},
		{"bad digest", `{"keys":[{"name":"a","sha256":"xyz","scopes":["read"]}]}`, "64 hex digits"},
		{"key and digest", `{"keys":[{"name":"a","key":"` + keyAll + `","sha256":"` + sha256Hex(keyAll) + `","scopes":["read"]}]}`, "not both"},
		{"neither", `{"keys":[{"name":"a","scopes":["read"]}]}`, "give key or sha256"},
		{"one key twice", `{"keys":[` + good + `,{"name":"b","sha256":"` + sha256Hex(keyAll) + `","scopes":["read"]}]}`, "the same key as"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+".json")
			if err := os.WriteFile(file, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg := api.DefaultConfig()
			cfg.Addr, cfg.KeysFile = ":0", file
			h, err := api.New(cfg, api.Deps{Broker: noBroker{}})
			if h != nil {
				h.Close()
			}
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("New: %v; want the file accepted", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("New: %v; want an error with %q", err, tc.want)
			case err != nil && (strings.Contains(err.Error(), keyAll) || strings.Contains(err.Error(), keyRead)):
				t.Fatalf("the error quotes a key: %v", err)
			}
		})
	}
}
