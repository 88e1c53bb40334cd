// Command chatgate runs the chatgate WebSocket chat gateway.
//
// Every flag has an environment fallback: --send-rate is also read from
// CHATGATE_SEND_RATE. Run `chatgate --help` for the list. `chatgate token`
// mints a development token for --auth jwt.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/chatgate/chatgate/gateway"
	"github.com/chatgate/chatgate/internal/cli"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "token" {
		if err := runToken(os.Args[2:], os.Stdout, os.Stderr); err != nil {
			if !errors.Is(err, flag.ErrHelp) {
				cli.Report(os.Stderr, "chatgate token", err)
			}
			os.Exit(2)
		}
		return
	}
	cfg, code, ok := configure(os.Args[1:], os.LookupEnv, os.Stderr)
	if !ok {
		os.Exit(code)
	}
	ctx, stop := signalContext()
	defer stop()
	if err := run(ctx, cfg, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "chatgate: %v\n", err)
		os.Exit(1)
	}
}

// configure reads the configuration. When there is nothing to run (--help,
// --version, a bad flag) it has said why on stderr and returns the exit
// status with ok false: a bad flag is one line per problem and a hint to
// --help, not the usage text.
func configure(args []string, lookupEnv func(string) (string, bool), stderr io.Writer) (cfg gateway.Config, code int, ok bool) {
	cfg, err := parseConfig(args, lookupEnv, stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return cfg, 0, false
	case err != nil:
		cli.Report(stderr, "chatgate", err)
		return cfg, 2, false
	}
	return cfg, 0, true
}

// signalContext is cancelled by the first SIGTERM or SIGINT, which starts
// the drain; a second signal exits at once.
func signalContext() (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		select {
		case <-sigs:
		case <-ctx.Done():
			return
		}
		cancel()
		<-sigs
		fmt.Fprintln(os.Stderr, "chatgate: second signal, exiting without finishing the drain")
		os.Exit(1)
	}()
	return ctx, func() { signal.Stop(sigs); cancel() }
}
