// Command chatgate runs the chatgate WebSocket chat gateway.
//
// Every flag has an environment fallback: --send-rate is also read from
// CHATGATE_SEND_RATE. Run `chatgate --help` for the list. `chatgate token`
// mints a development token for --auth jwt; `chatgate api` calls the
// server API (--api-addr).
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

	"github.com/chatgate/chatgate/gateway/api"

	"github.com/chatgate/chatgate/internal/appconfig"
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
	if len(os.Args) > 1 && os.Args[1] == "api" {
		os.Exit(apiMain(os.Args[2:], os.LookupEnv, os.Stdout, os.Stderr))
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

// apiMain runs `chatgate api` and returns its exit status: 0 when the API
// answered 200, 1 when it answered an error (printed with its code), 2 for
// a usage mistake.
func apiMain(args []string, lookupEnv func(string) (string, bool), out, errOut io.Writer) int {
	err := runAPI(args, lookupEnv, out, errOut)
	var apiErr *api.Error
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &apiErr):
		fmt.Fprintf(errOut, "chatgate api: %s (HTTP %d): %s\n", apiErr.Code, apiErr.Status, apiErr.Message)
		return 1
	}
	var usage usageError
	if errors.As(err, &usage) {
		cli.Report(errOut, "chatgate api", err)
		return 2
	}
	fmt.Fprintf(errOut, "chatgate api: %v\n", err) // the key, the network
	return 1
}

// configure reads the configuration. When there is nothing to run (--help,
// --version, a bad flag) it has said why on stderr and returns the exit
// status with ok false: a bad flag is one line per problem and a hint to
// --help, not the usage text.
func configure(args []string, lookupEnv func(string) (string, bool), stderr io.Writer) (cfg appconfig.Config, code int, ok bool) {
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
