package bench

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chatgate/chatgate/gateway"
	"github.com/chatgate/chatgate/gateway/auth"
)

const testSecret = "0123456789abcdef0123456789abcdef-bench-test-secret"

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestAuthFlags(t *testing.T) {
	cases := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"token", []string{"--token", "a.b.c"}, ""},
		{"token file", []string{"--token-file", "tok"}, ""},
		{"secret file", []string{"--jwt-secret-file", "secret"}, ""},
		{"secret file for connect", []string{"connect", "--connect-rate", "10", "--jwt-secret-file", "secret"}, ""},
		{"token and token file", []string{"--token", "a.b.c", "--token-file", "tok"}, "exclude each other"},
		{"token and secret", []string{"--token", "a.b.c", "--jwt-secret-file", "secret"}, "exclude each other"},
		{"token file and secret", []string{"--token-file", "tok", "--jwt-secret-file", "secret"}, "exclude each other"},
		{"raw token", []string{"--proto", "raw", "--token", "a.b.c"}, "need --proto chatgate"},
		{"raw token file", []string{"--proto", "raw", "--token-file", "tok"}, "need --proto chatgate"},
		{"raw secret", []string{"--proto", "raw", "--jwt-secret-file", "secret"}, "need --proto chatgate"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			_, err := ParseArgs(tc.args, &out)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatal(err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("err %v, want %q", err, tc.wantErr)
			case err != nil && strings.Contains(err.Error(), "a.b.c"):
				t.Fatalf("the error quotes the token: %v", err)
			}
		})
	}
}

func TestLoadCredentials(t *testing.T) {
	secret := writeFile(t, "secret", testSecret+"\n")
	cases := []struct {
		name    string
		cfg     Config
		wantErr string
		wantTok string // fixed token; "" when minted or none
	}{
		{"none", Config{}, "", ""},
		{"token", Config{Token: " a.b.c "}, "", "a.b.c"},
		{"token file trimmed", Config{TokenFile: writeFile(t, "tok", "x.y.z\n")}, "", "x.y.z"},
		{"empty token file", Config{TokenFile: writeFile(t, "empty", " \n")}, "empty", ""},
		{"token with a space", Config{TokenFile: writeFile(t, "space", "x.y z.w")}, "space or control", ""},
		{"huge token file", Config{TokenFile: writeFile(t, "huge", strings.Repeat("x", maxTokenBytes+1))}, "larger than", ""},
		{"missing token file", Config{TokenFile: filepath.Join(t.TempDir(), "nope")}, "--token-file", ""},
		{"short secret", Config{JWTSecretFile: writeFile(t, "short", "tooshort")}, "at least 32", ""},
		{"secret", Config{JWTSecretFile: secret, Duration: time.Minute}, "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := loadCredentials(&tc.cfg, "b1")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), "x.y") {
					t.Fatalf("the error quotes the token: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			h, err := c.header(7)
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case tc.name == "none":
				if c != nil || h != nil {
					t.Fatalf("credentials %v header %v without flags", c, h)
				}
			case tc.wantTok != "":
				if got := h.Get("Authorization"); got != "Bearer "+tc.wantTok {
					t.Fatalf("Authorization %q", got)
				}
			default:
				id := verify(t, secret, h)
				if id.UserID != "b1-7" || id.Name != "bench-7" || id.Rooms != nil {
					t.Fatalf("identity %+v", id)
				}
				if d := time.Until(id.Expires); d < tokenSlack || d > time.Minute+tokenSlack {
					t.Fatalf("token lives %v", d)
				}
			}
		})
	}
}

// verify checks h carries a token the gateway would admit.
func verify(t *testing.T, secretFile string, h http.Header) auth.Identity {
	t.Helper()
	a, err := auth.New(auth.Config{SecretFile: secretFile}, nil)
	if err != nil {
		t.Fatal(err)
	}
	tok, ok := strings.CutPrefix(h.Get("Authorization"), "Bearer ")
	if !ok {
		t.Fatalf("no bearer token in %v", h)
	}
	id, err := a.Authenticate(tok)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// TestEndToEndJWT runs fanout against an in-process gateway with --auth
// jwt: minted tokens make every connection its own user; without a token
// every handshake is refused with 401.
func TestEndToEndJWT(t *testing.T) {
	secret := writeFile(t, "secret", testSecret)
	fixed, err := auth.Mint([]byte(testSecret), "shared", "Shared", nil, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	tokenFile := writeFile(t, "token", fixed+"\n")
	cases := []struct {
		name  string
		conns int
		set   func(c *Config)
		code  int
		users int // distinct users the gateway admitted
	}{
		{"minted per connection", 30, func(c *Config) { c.JWTSecretFile = secret }, ExitOK, 30},
		{"fixed token file", 6, func(c *Config) { c.TokenFile = tokenFile }, ExitOK, 1},
		{"no token", 5, func(c *Config) {}, ExitFailed, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			gcfg := gatewayConfig()
			gcfg.Auth, gcfg.JWTSecretFile = "jwt", secret
			srv, err := gateway.New(gcfg, gateway.Options{Broker: newHub(t, nil)})
			if err != nil {
				t.Fatal(err)
			}
			srv.SetReady(true)
			a, err := auth.New(auth.Config{SecretFile: secret}, nil)
			if err != nil {
				t.Fatal(err)
			}
			var mu sync.Mutex
			users := map[string]bool{}
			ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
					if id, err := a.Authenticate(tok); err == nil {
						mu.Lock()
						users[id.UserID] = true
						mu.Unlock()
					}
				}
				srv.ServeHTTP(w, r)
			}))
			t.Cleanup(func() {
				srv.BeginDrain()
				srv.ForceClose()
				ts.Close()
				srv.Close()
			})

			cfg := testConfig("ws" + strings.TrimPrefix(ts.URL, "http") + "/ws")
			cfg.Scenario = ScenarioFanout
			cfg.Conns, cfg.Senders, cfg.Rate = tc.conns, 1, 50
			cfg.Messages, cfg.Duration, cfg.Settle = 20, time.Second, 5*time.Second
			cfg.MaxLoss = LossLimit{Given: true}
			cfg.MaxDup, cfg.MaxOutOfOrder = 0, 0
			tc.set(&cfg)
			var out bytes.Buffer
			res, code := Run(context.Background(), cfg, Options{Stdout: &out, Stderr: &out})
			if strings.Contains(out.String(), fixed) {
				t.Fatal("the output shows the token")
			}
			if code != tc.code {
				t.Fatalf("exit %d, want %d:\n%s", code, tc.code, out.String())
			}
			mu.Lock()
			n := len(users)
			mu.Unlock()
			if n != tc.users {
				t.Fatalf("%d distinct users, want %d", n, tc.users)
			}
			cs := res.Connections
			if tc.code != ExitOK {
				if cs.Established != 0 || cs.Failed != int64(tc.conns) || cs.FailuresByStatus["401"] != int64(tc.conns) ||
					res.Errors["connect_http_401"] != int64(tc.conns) || !strings.Contains(strings.Join(res.Warnings, "\n"), "--jwt-secret-file") {
					t.Fatalf("connections %+v errors %v warnings %q", cs, res.Errors, res.Warnings)
				}
				return
			}
			c := res.Correctness
			want := int64(20 * tc.conns)
			if cs.Established != int64(tc.conns) || cs.Failed != 0 || c.Expected != want || c.Lost != 0 || c.Duplicated != 0 || c.OutOfOrder != 0 || res.Latency.Count != want {
				t.Fatalf("connections %+v correctness %+v latency %+v", cs, c, res.Latency)
			}
		})
	}
}
