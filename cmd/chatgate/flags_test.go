package main

import (
	"bytes"
	"errors"
	"flag"
	"strings"
	"testing"
)

// TestFlagErrors: a bad flag or setting is one line per problem, naming
// the flag as --flag, and a hint to --help; never the usage text.
func TestFlagErrors(t *testing.T) {
	noEnv := func(string) (string, bool) { return "", false }
	cases := []struct {
		name  string
		args  []string
		lines []string // the lines before the hint, in order
	}{
		{"unknown flag", []string{"--bogus"}, []string{"chatgate: unknown flag --bogus"}},
		{"not a number", []string{"--send-rate", "x"}, []string{`chatgate: --send-rate: "x" is not a number`}},
		{"not a duration", []string{"--write-timeout", "5"}, []string{`chatgate: --write-timeout: "5" is not a duration such as 500ms, 10s or 1m30s`}},
		{"missing value", []string{"--addr"}, []string{"chatgate: --addr needs a value"}},
		{"invalid setting", []string{"--send-rate", "-1"}, []string{"chatgate: --send-rate must be positive, got -1"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			_, code, ok := configure(tc.args, noEnv, &stderr)
			want := strings.Join(append(tc.lines, "Run 'chatgate --help' for the flags."), "\n") + "\n"
			if ok || code != 2 || stderr.String() != want {
				t.Fatalf("ok %v exit %d, stderr:\n%s\nwant:\n%s", ok, code, stderr.String(), want)
			}
		})
	}
	t.Run("help", func(t *testing.T) {
		var stderr bytes.Buffer
		_, code, ok := configure([]string{"--help"}, noEnv, &stderr)
		if ok || code != 0 || !strings.Contains(stderr.String(), "Usage: chatgate") || !strings.Contains(stderr.String(), "  --send-rate") {
			t.Fatalf("ok %v exit %d:\n%s", ok, code, stderr.String())
		}
	})
	t.Run("token", func(t *testing.T) {
		var out, stderr bytes.Buffer
		err := runToken([]string{"--ttl", "x"}, &out, &stderr)
		if err == nil || err.Error() != `--ttl: "x" is not a duration such as 500ms, 10s or 1m30s` || stderr.Len() != 0 {
			t.Fatalf("err %v, stderr:\n%s", err, stderr.String())
		}
		stderr.Reset()
		if err := runToken([]string{"--sub", "a"}, &out, &stderr); err == nil || stderr.Len() != 0 {
			t.Fatalf("missing secret: err %v, stderr:\n%s", err, stderr.String())
		}
		if err := runToken([]string{"--help"}, &out, &stderr); !errors.Is(err, flag.ErrHelp) || !strings.Contains(stderr.String(), "Usage: chatgate token") {
			t.Fatalf("help: err %v, stderr:\n%s", err, stderr.String())
		}
	})
}
