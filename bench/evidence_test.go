package bench

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chatgate/chatgate/gateway"
	"github.com/chatgate/chatgate/gateway/auth"
)

// TestNoPassWithoutEvidence runs against a real gateway: a run that
// checked nobody, fewer members than the floor, delivered nothing or had
// its sends rejected fails its thresholds, and the table says why in one
// line; without thresholds it warns instead.
func TestNoPassWithoutEvidence(t *testing.T) {
	secret := writeFile(t, "secret", testSecret)
	lobbyOnly, err := auth.Mint([]byte(testSecret), "alice", "Alice", []string{"lobby"}, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	tokenFile := writeFile(t, "token", lobbyOnly)
	cases := []struct {
		name    string
		gateway func(*gateway.Config)
		run     func(*Config)
		code    int
		verdict string // the thresholds line, or a warning without thresholds
		check   func(t *testing.T, r *Result)
	}{
		{
			name: "token excludes the bench room",
			gateway: func(g *gateway.Config) {
				g.Auth, g.JWTSecretFile = "jwt", secret
			},
			run:     func(c *Config) { c.TokenFile, c.MaxLoss = tokenFile, LossLimit{Given: true} },
			code:    ExitThreshold,
			verdict: "thresholds    FAIL: min-checked: no member was checked for loss, 0 of 5 (excluded: not_joined=5; error frames: forbidden=5); evidence: no message was delivered (0 sent)\n",
			check: func(t *testing.T, r *Result) {
				if r.Errors["join_refused"] != 5 || r.Errors["join_timeout"] != 0 || r.Messages.Sent != 0 || r.Messages.ErrorCodes["not_joined"] != 0 {
					t.Fatalf("errors %v, sent %d, error frames %v", r.Errors, r.Messages.Sent, r.Messages.ErrorCodes)
				}
			},
		},
		{
			name:    "nothing sent",
			run:     func(c *Config) { c.Senders, c.MaxLoss = 0, LossLimit{Given: true} },
			code:    ExitThreshold,
			verdict: "thresholds    FAIL: evidence: no message was delivered (0 sent)\n",
		},
		{
			name:    "nothing sent, no thresholds",
			run:     func(c *Config) { c.Senders = 0 },
			code:    ExitOK,
			verdict: "warning       no message was delivered (0 sent)\n",
		},
		{
			name:    "sends rejected",
			gateway: func(g *gateway.Config) { g.SendRate, g.SendBurst = 1, 1 },
			run:     func(c *Config) { c.Rate, c.Messages, c.SLOP99 = 50, 10, time.Minute },
			code:    ExitThreshold,
			verdict: "thresholds    FAIL: evidence: 9 of 10 sends were rejected (error frames: rate_limited=9)\n",
		},
		{
			name:    "fewer checked than all",
			gateway: func(g *gateway.Config) { g.MaxConnsPerIP = 3 },
			// One dial at a time: the sender (member 0) is among the 3 up.
			run:     func(c *Config) { c.MaxLoss, c.DialConcurrency = LossLimit{Given: true}, 1 },
			code:    ExitThreshold,
			verdict: "thresholds    FAIL: min-checked: 3 of 5 members were checked for loss, fewer than 5 (every member that can be) (excluded: not_connected=2)\n",
		},
		{
			name:    "fewer checked, floor lowered",
			gateway: func(g *gateway.Config) { g.MaxConnsPerIP = 3 },
			run:     func(c *Config) { c.MaxLoss, c.MinChecked, c.DialConcurrency = LossLimit{Given: true}, 3, 1 },
			code:    ExitOK,
			verdict: "thresholds    PASS (max-loss, min-checked, evidence)\n",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := gatewayConfig()
			if tc.gateway != nil {
				tc.gateway(&g)
			}
			_, url := startGateway(t, g, gateway.Options{})
			cfg := testConfig(url)
			cfg.Conns, cfg.Senders, cfg.Rate, cfg.Messages = 5, 1, 50, 10
			cfg.Duration, cfg.Settle = time.Second, 2*time.Second
			tc.run(&cfg)
			var out bytes.Buffer
			res, code := Run(context.Background(), cfg, Options{Stdout: &out})
			if code != tc.code || !strings.Contains(out.String(), tc.verdict) {
				t.Fatalf("exit %d, want %d; want the line\n%s\nin:\n%s", code, tc.code, tc.verdict, out.String())
			}
			if tc.check != nil {
				tc.check(t, res)
			}
		})
	}
}
