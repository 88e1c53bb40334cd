package cli

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	newSet := func() *flag.FlagSet {
		fs := flag.NewFlagSet("x", flag.ContinueOnError)
		fs.Int("conns", 1, "")
		fs.Float64("rate", 1, "")
		fs.Duration("wait", time.Second, "")
		fs.Bool("json", false, "")
		fs.Func("loss", "", func(v string) error { return fmt.Errorf("want a count, got %q", v) })
		return fs
	}
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--nope"}, "unknown flag --nope"},
		{[]string{"-nope"}, "unknown flag --nope"},
		{[]string{"--conns"}, "--conns needs a value"},
		{[]string{"--conns", "x"}, `--conns: "x" is not a whole number`},
		{[]string{"--conns", "99999999999999999999"}, `--conns: "99999999999999999999" is out of range`},
		{[]string{"--rate", "fast"}, `--rate: "fast" is not a number`},
		{[]string{"--wait", "5"}, `--wait: "5" is not a duration such as 500ms, 10s or 1m30s`},
		{[]string{"--json=maybe"}, `--json: "maybe" is not true or false`},
		{[]string{"--loss", "lots"}, `--loss: want a count, got "lots"`},
		{[]string{"---conns", "1"}, "bad flag syntax: ---conns"},
	}
	for _, tc := range cases {
		t.Run(tc.want, func(t *testing.T) {
			helped := false
			err := Parse(newSet(), tc.args, func() { helped = true })
			if err == nil || err.Error() != tc.want || helped {
				t.Fatalf("err %v (usage shown %v), want %q", err, helped, tc.want)
			}
		})
	}
	helped := false
	if err := Parse(newSet(), []string{"-h"}, func() { helped = true }); !errors.Is(err, flag.ErrHelp) || !helped {
		t.Fatalf("-h: %v, usage shown %v", err, helped)
	}
	if err := Parse(newSet(), []string{"--conns", "3"}, func() {}); err != nil {
		t.Fatal(err)
	}
}

func TestReport(t *testing.T) {
	var b bytes.Buffer
	Report(&b, "prog", errors.Join(errors.New("--a is bad"), errors.New("--b is worse")))
	want := "prog: --a is bad\nprog: --b is worse\nRun 'prog --help' for the flags.\n"
	if b.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", b.String(), want)
	}
}

func TestWrap(t *testing.T) {
	cases := []struct {
		s     string
		width int
		want  []string
	}{
		{"", 10, nil},
		{"  one  two three ", 9, []string{"one two", "three"}},
		{"aaaa bbbb cccc", 9, []string{"aaaa bbbb", "cccc"}},
		{"ab averyverylongword cd", 5, []string{"ab", "averyverylongword", "cd"}},
		{"éé éé éé", 5, []string{"éé éé", "éé"}},
	}
	for _, tc := range cases {
		if got := Wrap(tc.s, tc.width); fmt.Sprintf("%q", got) != fmt.Sprintf("%q", tc.want) {
			t.Errorf("Wrap(%q, %d) = %q, want %q", tc.s, tc.width, got, tc.want)
		}
	}
}

func TestPrintFlag(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.Int("cpu", 0, "the `n`th CPU")
	fs.Bool("json", false, "print JSON")
	fs.String("out", "", "output file")
	fs.Duration("wait", time.Second, "how long to wait for the machine to become quiet before giving up on the run and reporting it busy")
	cases := []struct {
		name     string
		hideZero bool
		want     string
	}{
		{"cpu", false, "  --cpu n\n      the nth CPU (default 0)\n"},
		{"cpu", true, "  --cpu n\n      the nth CPU\n"},
		{"json", false, "  --json\n      print JSON\n"},
		{"out", false, "  --out string\n      output file\n"},
		{"wait", true, "  --wait duration\n      how long to wait for the machine to become quiet before giving up on the\n      run and reporting it busy (default 1s)\n"},
	}
	for _, tc := range cases {
		var b bytes.Buffer
		PrintFlag(&b, fs.Lookup(tc.name), tc.hideZero)
		if b.String() != tc.want {
			t.Errorf("--%s (hideZero %v):\n%s\nwant\n%s", tc.name, tc.hideZero, b.String(), tc.want)
		}
	}
}
