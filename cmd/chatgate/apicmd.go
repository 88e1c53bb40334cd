package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/chatgate/chatgate/gateway/api"
	"github.com/chatgate/chatgate/internal/cli"
)

// apiUsage is `chatgate api --help`.
const apiUsage = `Usage: chatgate api [--url URL] [--key-file FILE] COMMAND [flags] [args]

Calls chatgate's server API (--api-addr; see docs/api.md) and prints its
JSON answer. The key is read from --key-file, or from $CHATGATE_API_KEY.

Commands:
  publish ROOM TEXT       publish TEXT to ROOM as a system message
                          [--sender NAME]
  kick USER               close every connection of USER
                          [--conn ID (only that connection)] [--ban-room ROOM --ban-for 10m]
  ban ROOM USER           keep USER out of ROOM  [--for 10m]
  unban ROOM USER         lift a ban
  presence ROOM           who is in ROOM
  rooms                   the active rooms  [--after ROOM] [--limit N]
  history ROOM            ROOM's held messages  [--since SEQ] [--limit N]

Flags:
`

// runAPI implements `chatgate api`. It writes the API's answer to out; an
// error the API answered with is returned as *api.Error.
func runAPI(args []string, lookupEnv func(string) (string, bool), out, errOut io.Writer) error {
	fs := flag.NewFlagSet("chatgate api", flag.ContinueOnError)
	defURL := "http://127.0.0.1:8081"
	if v, ok := lookupEnv("CHATGATE_API_URL"); ok && v != "" {
		defURL = v
	}
	base := fs.String("url", defURL, "the server API's base URL [$CHATGATE_API_URL]")
	keyFile := fs.String("key-file", "", "file holding the API key (or an API JWT); without it $CHATGATE_API_KEY")
	timeout := fs.Duration("timeout", 30*time.Second, "how long to wait for the answer")
	usage := func() {
		fmt.Fprint(errOut, apiUsage)
		fs.SetOutput(errOut)
		fs.PrintDefaults()
	}
	if err := cli.Parse(fs, args, usage); err != nil {
		return usageError{err}
	}
	if fs.NArg() == 0 {
		return usageError{errors.New("a command is required: publish, kick, ban, unban, presence, rooms or history")}
	}
	key, err := apiKey(*keyFile, lookupEnv)
	if err != nil {
		return err
	}
	c, err := api.NewClient(*base, key, nil)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	cmd, rest := fs.Arg(0), fs.Args()[1:]
	answer, err := apiCommand(ctx, c, cmd, rest)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(answer)
}

// usageError is a mistake on the command line (exit status 2).
type usageError struct{ error }

func (u usageError) Unwrap() error { return u.error }

// apiKey reads the key from file, or from $CHATGATE_API_KEY: never from a
// flag's value, which other users can read in the process list.
func apiKey(file string, lookupEnv func(string) (string, bool)) (string, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("--key-file: %w", err)
		}
		if k := strings.TrimSpace(string(b)); k != "" {
			return k, nil
		}
		return "", fmt.Errorf("--key-file %s is empty", file)
	}
	if k, ok := lookupEnv("CHATGATE_API_KEY"); ok && strings.TrimSpace(k) != "" {
		return strings.TrimSpace(k), nil
	}
	return "", errors.New("no API key: give --key-file or set CHATGATE_API_KEY")
}

// apiCommand parses one command's flags and arguments and calls the API.
func apiCommand(ctx context.Context, c *api.Client, cmd string, args []string) (any, error) {
	fs := flag.NewFlagSet("chatgate api "+cmd, flag.ContinueOnError)
	sender := fs.String("sender", "", "publish: the system sender's name (default system)")
	conn := fs.String("conn", "", "kick: only this connection (its welcome.conn)")
	banRoom := fs.String("ban-room", "", "kick: also ban the user from this room")
	banFor := fs.Duration("ban-for", 10*time.Minute, "kick: how long the ban lasts")
	banLen := fs.Duration("for", 10*time.Minute, "ban: how long the ban lasts")
	after := fs.String("after", "", "rooms: list the rooms after this one")
	limit := fs.Int("limit", 0, "rooms, history: at most this many (default the server's, 100)")
	since := fs.Int64("since", -1, "history: the messages after this seq (default the newest)")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return nil, usageError{err}
	}
	arg := func(i int) string { return pos[i] }
	want := func(n int, names string) error {
		if len(pos) != n {
			return usageError{fmt.Errorf("%s needs %s", cmd, names)}
		}
		return nil
	}
	seconds := func(d time.Duration) int64 { return int64((d + time.Second - 1) / time.Second) }
	switch cmd {
	case "publish":
		if len(pos) < 2 {
			return nil, usageError{errors.New("publish needs ROOM and TEXT")}
		}
		return c.Publish(ctx, api.PublishRequest{Room: arg(0), Text: strings.Join(pos[1:], " "), Sender: *sender})
	case "kick":
		if err := want(1, "USER (and --conn to close one connection)"); err != nil {
			return nil, err
		}
		d := api.DisconnectRequest{User: arg(0), Conn: *conn}
		if *banRoom != "" {
			d.Ban = &api.BanSpec{Room: *banRoom, Seconds: seconds(*banFor)}
		}
		return c.Disconnect(ctx, d)
	case "ban":
		if err := want(2, "ROOM and USER"); err != nil {
			return nil, err
		}
		return c.Ban(ctx, api.BanRequest{Room: arg(0), User: arg(1), Seconds: seconds(*banLen)})
	case "unban":
		if err := want(2, "ROOM and USER"); err != nil {
			return nil, err
		}
		u := api.UnbanRequest{Room: arg(0), User: arg(1)}
		return u, c.Unban(ctx, u)
	case "presence":
		if err := want(1, "ROOM"); err != nil {
			return nil, err
		}
		return c.Presence(ctx, arg(0))
	case "rooms":
		if err := want(0, "no arguments"); err != nil {
			return nil, err
		}
		return c.Rooms(ctx, *after, *limit)
	case "history":
		if err := want(1, "ROOM"); err != nil {
			return nil, err
		}
		var s *uint64
		if *since >= 0 {
			v := uint64(*since)
			s = &v
		}
		return c.History(ctx, arg(0), s, *limit)
	}
	return nil, usageError{fmt.Errorf("unknown command %q: publish, kick, ban, unban, presence, rooms or history", cmd)}
}

// parseInterleaved parses fs's flags wherever they are among args (the
// flag package stops at the first argument that is not a flag) and
// returns the other arguments in order. "--" ends the flags.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := cli.Parse(fs, args, func() {}); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}
