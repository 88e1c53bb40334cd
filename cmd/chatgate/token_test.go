package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chatgate/chatgate/gateway/auth"
)

func TestTokenCommand(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte(strings.Repeat("s", 40)), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"mints a verifiable token", []string{"--jwt-secret-file", secret, "--sub", "alice", "--name", "Alice", "--rooms", "lobby, team-*", "--ttl", "10m"}, ""},
		{"needs a subject", []string{"--jwt-secret-file", secret}, "--sub"},
		{"needs a secret", []string{"--sub", "alice"}, "--jwt-secret-file"},
		{"refuses a short secret", []string{"--jwt-secret-file", writeShort(t), "--sub", "a"}, "at least 32"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := runToken(tc.args, &out, &errOut)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v; want one mentioning %s", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			a, err := auth.New(auth.Config{SecretFile: secret}, nil)
			if err != nil {
				t.Fatal(err)
			}
			id, err := a.Authenticate(strings.TrimSpace(out.String()))
			if err != nil {
				t.Fatalf("minted token does not verify: %v", err)
			}
			if id.UserID != "alice" || id.Name != "Alice" || strings.Join(id.Rooms, ",") != "lobby,team-*" {
				t.Fatalf("identity %+v", id)
			}
			if left := time.Until(id.Expires); left < 9*time.Minute || left > 11*time.Minute {
				t.Fatalf("expires in %v; want about 10m", left)
			}
		})
	}
}

func writeShort(t *testing.T) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "short")
	if err := os.WriteFile(f, []byte("too-short"), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}
