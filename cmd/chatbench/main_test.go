package main

import (
	"bytes"
	"context"
	"net/http/httptest"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/chatgate/chatgate/bench"
	"github.com/chatgate/chatgate/gateway"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestExitCodes runs the command's run against an in-process gateway.
func TestExitCodes(t *testing.T) {
	cfg := gateway.DefaultConfig()
	cfg.SendRate, cfg.SendBurst = 10000, 10000
	cfg.DrainDelay, cfg.DrainWindow = 0, 0
	srv, err := gateway.New(cfg, gateway.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	t.Cleanup(func() {
		srv.BeginDrain()
		srv.ForceClose()
		ts.Close()
		srv.Close()
	})
	url := "ws" + strings.TrimPrefix(ts.URL, "http") + "/ws"
	base := []string{"fanout", "--url", url, "--conns", "4", "--senders", "1", "--rate", "50", "--messages", "5", "--duration", "2s", "--settle", "2s", "--progress", "off"}
	cases := []struct {
		name string
		args []string
		code int
		out  string
	}{
		{"ok", base, bench.ExitOK, "lost 0"},
		{"slo met", append(base[:len(base):len(base)], "--slo-p99", "1m", "--max-loss", "0"), bench.ExitOK, "PASS"},
		{"slo missed", append(base[:len(base):len(base)], "--slo-p99", "1ns"), bench.ExitThreshold, "FAIL: slo-p99"},
		{"json", append(base[:len(base):len(base)], "--json"), bench.ExitOK, `"schema": "chatbench/v1"`},
		{"bad flag", []string{"--conns", "-3"}, bench.ExitUsage, "chatbench: --conns must be positive, got -3\nRun 'chatbench --help' for the flags.\n"},
		{"bad value", []string{"--rate", "fast"}, bench.ExitUsage, "chatbench: --rate: \"fast\" is not a number\nRun 'chatbench --help' for the flags.\n"},
		{"exclusive auth flags", []string{"--token-file", "t", "--jwt-secret-file", "s"}, bench.ExitUsage, "exclude each other"},
		{"raw with a token", []string{"--proto", "raw", "--token", "a.b.c"}, bench.ExitUsage, "need --proto chatgate"},
		{"missing secret file", append(base[:len(base):len(base)], "--jwt-secret-file", "/nonexistent/secret"), bench.ExitFailed, "--jwt-secret-file"},
		{"help", []string{"--help"}, bench.ExitOK, "Usage: chatbench"},
		{"unreachable", []string{"--url", "ws://127.0.0.1:1/ws", "--conns", "2", "--progress", "off"}, bench.ExitFailed, "no connection could be established"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), tc.args, &stdout, &stderr, false)
			all := stdout.String() + stderr.String()
			if code != tc.code || !strings.Contains(all, tc.out) {
				t.Fatalf("exit %d (want %d), output:\n%s\nwant %q", code, tc.code, all, tc.out)
			}
			if lines := strings.Split(strings.TrimSuffix(all, "\n"), "\n"); code == bench.ExitUsage &&
				(len(lines) != 2 || !strings.HasPrefix(lines[0], "chatbench: ") || lines[1] != "Run 'chatbench --help' for the flags.") {
				t.Fatalf("a bad flag is one line and a hint, got:\n%s", all)
			}
			if strings.Contains(tc.name, "json") && stderr.Len() != 0 {
				t.Fatalf("stderr not empty with --json: %s", stderr.String())
			}
		})
	}
}
