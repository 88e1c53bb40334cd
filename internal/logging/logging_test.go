package logging

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
		flag string // the error must name it; empty: valid
	}{
		{"defaults", DefaultConfig(), ""},
		{"json, upper-case level", Config{Format: "json", Level: "WARN"}, ""},
		{"format", Config{Format: "xml", Level: "info"}, "--log-format"},
		{"level", Config{Format: "text", Level: "verbose"}, "--log-level"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			switch {
			case tc.flag == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tc.flag != "" && (err == nil || !strings.Contains(err.Error(), tc.flag)):
				t.Fatalf("Validate: %v; want it to name %s", err, tc.flag)
			}
		})
	}
}

func TestNew(t *testing.T) {
	var buf bytes.Buffer
	log := New(Config{Format: "json", Level: "warn"}, &buf)
	log.Info("hidden")
	log.Warn("shown", "k", 1)
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil || rec["msg"] != "shown" {
		t.Fatalf("json at warn wrote %q (%v); want only the warning, as JSON", buf.String(), err)
	}
	buf.Reset()
	New(Config{}, &buf).Info("plain")
	if !strings.Contains(buf.String(), "msg=plain") {
		t.Fatalf("the zero Config wrote %q; want text at info", buf.String())
	}
}
