package main

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestAPICommandLine: `chatgate api` reads its key from a file or the
// environment (never a flag), takes flags before or after the arguments,
// and says what is wrong on the command line with exit status 2 before
// calling anything.
func TestAPICommandLine(t *testing.T) {
	env := func(kv ...string) func(string) (string, bool) {
		return func(k string) (string, bool) {
			i := slices.Index(kv, k)
			if i < 0 || i%2 == 1 {
				return "", false
			}
			return kv[i+1], true
		}
	}
	keyFile := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(keyFile, []byte("  k-0123456789abcdef0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Run("key", func(t *testing.T) {
		if k, err := apiKey(keyFile, env()); err != nil || k != "k-0123456789abcdef0123456789abcdef" {
			t.Fatalf("from the file: %q, %v", k, err)
		}
		if k, err := apiKey("", env("CHATGATE_API_KEY", "from-env")); err != nil || k != "from-env" {
			t.Fatalf("from the environment: %q, %v", k, err)
		}
		if _, err := apiKey("", env()); err == nil || !strings.Contains(err.Error(), "--key-file") {
			t.Fatalf("without a key: %v", err)
		}
	})
	t.Run("flags anywhere", func(t *testing.T) {
		fs := flag.NewFlagSet("x", flag.ContinueOnError)
		room := fs.String("ban-room", "", "")
		pos, err := parseInterleaved(fs, []string{"alice", "--ban-room", "lobby", "--", "--not-a-flag"})
		if err != nil || *room != "lobby" || !slices.Equal(pos, []string{"alice", "--not-a-flag"}) {
			t.Fatalf("got %q, ban-room %q, %v", pos, *room, err)
		}
	})
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"no command", []string{"--key-file", keyFile}, "a command is required"},
		{"unknown command", []string{"--key-file", keyFile, "shout"}, `unknown command "shout"`},
		{"publish without text", []string{"--key-file", keyFile, "publish", "lobby"}, "publish needs ROOM and TEXT"},
		{"kick without a user", []string{"--key-file", keyFile, "kick"}, "kick needs USER"},
		{"unknown flag", []string{"--key-file", keyFile, "presence", "lobby", "--sinse", "3"}, "unknown flag --sinse"},
		{"bad url", []string{"--key-file", keyFile, "--url", "ftp://x", "rooms"}, "want http(s)://host:port"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out, stderr bytes.Buffer
			code := apiMain(tc.args, env(), &out, &stderr)
			if tc.name == "bad url" {
				if code != 1 || !strings.Contains(stderr.String(), tc.want) {
					t.Fatalf("exit %d, stderr %q; want 1 and %q", code, stderr.String(), tc.want)
				}
				return
			}
			if code != 2 || !strings.Contains(stderr.String(), tc.want) || out.Len() != 0 {
				t.Fatalf("exit %d, stderr %q; want 2 and %q", code, stderr.String(), tc.want)
			}
		})
	}
	var out, stderr bytes.Buffer
	if code := apiMain([]string{"--help"}, env(), &out, &stderr); code != 0 || !strings.Contains(stderr.String(), "Usage: chatgate api") {
		t.Fatalf("help: exit %d\n%s", code, stderr.String())
	}
}
