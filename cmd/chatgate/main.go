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
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "token" {
		if err := runToken(os.Args[2:], os.Stdout, os.Stderr); err != nil {
			if !errors.Is(err, flag.ErrHelp) {
				fmt.Fprintf(os.Stderr, "chatgate token: %v\n", err)
			}
			os.Exit(2)
		}
		return
	}
	cfg, err := parseConfig(os.Args[1:], os.LookupEnv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "chatgate: invalid configuration:\n%v\n", err)
		os.Exit(2)
	}
	ctx, stop := signalContext()
	defer stop()
	if err := run(ctx, cfg, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "chatgate: %v\n", err)
		os.Exit(1)
	}
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
