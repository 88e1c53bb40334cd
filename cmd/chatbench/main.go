// Command chatbench load-tests a chatgate gateway (or, with --proto raw, the
// gorilla examples/chat server) and checks that nothing was lost,
// duplicated or reordered while it measures. See docs/benchmarks.md.
//
//	chatbench fanout --url ws://127.0.0.1:8080/ws --conns 1000 --senders 10 --rate 10 --duration 30s
package main

import (
	"context"
	"errors"
	"flag"
	"io"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/term"

	"github.com/chatgate/chatgate/bench"
	"github.com/chatgate/chatgate/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, term.IsTerminal(int(os.Stderr.Fd())))
	stop()
	os.Exit(code)
}

// run parses args and runs the bench; it returns the exit status. The first
// SIGINT or SIGTERM cancels ctx: the run stops, closes its connections and
// still reports what it measured.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, tty bool) int {
	cfg, err := bench.ParseArgs(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return bench.ExitOK
	}
	if err != nil {
		cli.Report(stderr, "chatbench", err)
		return bench.ExitUsage
	}
	_, code := bench.Run(ctx, cfg, bench.Options{Stdout: stdout, Stderr: stderr, TTY: tty})
	return code
}
