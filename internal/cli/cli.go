// Package cli is what the chatgate and chatbench command lines share: a bad
// flag is reported in one line that names it as --flag, followed by a hint
// to --help, never by the whole usage text; and chatbench's help lists each
// flag the same way (PrintFlag).
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

// PrintFlag writes f for a help text: a "  --name arg" line, then its usage
// and its default, wrapped at 72 runes and indented by six spaces. A default
// of "" or false is never shown, one of 0 not with hideZero.
func PrintFlag(out io.Writer, f *flag.Flag, hideZero bool) {
	arg, help := flag.UnquoteUsage(f)
	if arg != "" {
		arg = " " + arg
	}
	fmt.Fprintf(out, "  --%s%s\n", f.Name, arg)
	if f.DefValue != "" && f.DefValue != "false" && !(hideZero && f.DefValue == "0") {
		help += " (default " + f.DefValue + ")"
	}
	for _, line := range Wrap(help, 72) {
		fmt.Fprintf(out, "      %s\n", line)
	}
}

// Wrap breaks s into lines of at most width runes, at spaces. A word longer
// than width gets a line of its own.
func Wrap(s string, width int) []string {
	var lines []string
	var cur strings.Builder
	for _, w := range strings.Fields(s) {
		if cur.Len() > 0 && len([]rune(cur.String()))+1+len([]rune(w)) > width {
			lines = append(lines, cur.String())
			cur.Reset()
		}
		if cur.Len() > 0 {
			cur.WriteByte(' ')
		}
		cur.WriteString(w)
	}
	if cur.Len() > 0 {
		lines = append(lines, cur.String())
	}
	return lines
}
