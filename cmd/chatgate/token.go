package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/chatgate/chatgate/gateway/auth"
	"github.com/chatgate/chatgate/internal/cli"
)

// runToken implements `chatgate token`: it mints a development HS256 token
// from a secret file, so an authenticated gateway can be tried locally.
func runToken(args []string, out, errOut io.Writer) error {
	fs := flag.NewFlagSet("chatgate token", flag.ContinueOnError)
	secretFile := fs.String("jwt-secret-file", "", "file holding the HS256 secret (the gateway's --jwt-secret-file)")
	sub := fs.String("sub", "", "user id (required)")
	name := fs.String("name", "", "display name shown to other users (default: the user id)")
	rooms := fs.String("rooms", "", "comma-separated room patterns the user may join, e.g. lobby,team-* (default: all rooms)")
	ttl := fs.Duration("ttl", time.Hour, "how long the token is valid")
	usage := func() {
		fmt.Fprint(errOut, "Usage: chatgate token --jwt-secret-file FILE --sub USER [--name NAME] [--rooms PATTERNS] [--ttl 1h]\n\nPrints a signed development token to standard output.\n\nFlags:\n")
		fs.SetOutput(errOut)
		fs.PrintDefaults()
	}
	if err := cli.Parse(fs, args, usage); err != nil {
		return err
	}
	if *secretFile == "" || *sub == "" {
		return errors.New("--jwt-secret-file and --sub are required")
	}
	secret, err := auth.ReadSecret(*secretFile)
	if err != nil {
		return err
	}
	var patterns []string
	for _, p := range strings.Split(*rooms, ",") {
		if p = strings.TrimSpace(p); p != "" {
			patterns = append(patterns, p)
		}
	}
	tok, err := auth.Mint(secret, *sub, *name, patterns, *ttl, time.Now())
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(out, tok)
	return err
}
