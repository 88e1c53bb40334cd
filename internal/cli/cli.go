// Package cli is what the chatgate and chatbench command lines share: a bad
// flag is reported in one line that names it as --flag, followed by a hint
// to --help, never by the whole usage text.
package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"regexp"
	"strings"
)

// Parse parses args into fs without writing anything. For -h or --help it
// calls usage and returns flag.ErrHelp; any other parse error comes back
// reworded by Reword.
func Parse(fs *flag.FlagSet, args []string, usage func()) error {
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		usage()
		return err
	}
	return Reword(fs, err)
}

// The messages of the flag package (src/flag/flag.go, failf).
var (
	reUndefined = regexp.MustCompile(`^flag provided but not defined: -+(.+)$`)
	reNeedsArg  = regexp.MustCompile(`^flag needs an argument: -+(.+)$`)
	reBadBool   = regexp.MustCompile(`^invalid boolean value (".*") for -+([^:]+): .*$`)
	reBadValue  = regexp.MustCompile(`(?s)^invalid value (".*") for flag -+([^:]+): (.*)$`)
)

// Reword turns the flag package's messages, which name a flag as -name,
// into one line naming it as --name, as the help and the docs do. It
// returns err unchanged when it is not one of them.
func Reword(fs *flag.FlagSet, err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	if m := reUndefined.FindStringSubmatch(msg); m != nil {
		return fmt.Errorf("unknown flag --%s", m[1])
	}
	if m := reNeedsArg.FindStringSubmatch(msg); m != nil {
		return fmt.Errorf("--%s needs a value", m[1])
	}
	if m := reBadBool.FindStringSubmatch(msg); m != nil {
		return fmt.Errorf("--%s: %s is not true or false", m[2], m[1])
	}
	if m := reBadValue.FindStringSubmatch(msg); m != nil {
		value, name, cause := m[1], m[2], m[3]
		switch cause {
		case "parse error":
			return fmt.Errorf("--%s: %s is not %s", name, value, kind(fs, name))
		case "value out of range":
			return fmt.Errorf("--%s: %s is out of range", name, value)
		}
		return fmt.Errorf("--%s: %s", name, cause)
	}
	return err
}

// kind names what a flag wants, for "is not ..." messages.
func kind(fs *flag.FlagSet, name string) string {
	f := fs.Lookup(name)
	if f == nil {
		return "valid"
	}
	typ, _ := flag.UnquoteUsage(f)
	switch typ {
	case "int", "uint":
		return "a whole number"
	case "float":
		return "a number"
	case "duration":
		return "a duration such as 500ms, 10s or 1m30s"
	}
	return "valid"
}

// Report writes err for the program prog as one "prog: ..." line per line
// of err, then the hint to --help.
func Report(w io.Writer, prog string, err error) {
	for _, line := range strings.Split(strings.TrimSpace(err.Error()), "\n") {
		if line = strings.TrimSpace(line); line != "" {
			fmt.Fprintf(w, "%s: %s\n", prog, line)
		}
	}
	fmt.Fprintf(w, "Run '%s --help' for the flags.\n", prog)
}
