// Package logging owns chatgate's log settings (--log-format, --log-level)
// and builds the slog logger they describe.
package logging

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// Config is the log settings.
type Config struct {
	Format string // text or json
	Level  string // debug, info, warn or error (any case)
}

// DefaultConfig returns the defaults: text at info.
func DefaultConfig() Config { return Config{Format: "text", Level: "info"} }

// RegisterFlags defines --log-format and --log-level, using c's current
// values as defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Format, "log-format", c.Format, "log format: text or json")
	fs.StringVar(&c.Level, "log-level", c.Level, "log level: debug, info, warn or error")
}

// Validate reports every invalid setting at once.
func (c *Config) Validate() error {
	var errs []error
	switch c.Format {
	case "text", "json":
	default:
		errs = append(errs, fmt.Errorf("--log-format must be text or json, got %q", c.Format))
	}
	switch strings.ToLower(c.Level) {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("--log-level must be debug, info, warn or error, got %q", c.Level))
	}
	return errors.Join(errs...)
}

// New builds the logger c describes, writing to w. An empty Format or
// Level takes the default.
func New(c Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
