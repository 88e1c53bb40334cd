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
