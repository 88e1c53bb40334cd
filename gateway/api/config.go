package api

import (
	"errors"
	"flag"
	"fmt"
	"time"
)

// Config is the server API's configuration. It is off unless Addr is set.
// The listener's HTTP timeouts and header limit are the gateway's
// (--read-header-timeout, --http-read-timeout, --http-write-timeout,
// --http-idle-timeout, --max-header-bytes).
type Config struct {
	Addr     string  // --api-addr: the API's own listener; empty: no API
	KeysFile string  // --api-keys-file: API keys (reloaded on change)
	JWT      bool    // --api-jwt: also accept JWTs with audience "api"
	Rate     float64 // --api-rate: requests per second per key
	Burst    int     // --api-burst
	// MaxBodyBytes caps a request body (--api-max-body-bytes).
	MaxBodyBytes int64
	// Timeout bounds the work of one request (--api-timeout).
	Timeout time.Duration
}

// Defaults.
const (
	DefaultRate         = 100
	DefaultBurst        = 200
	DefaultMaxBodyBytes = 1 << 20
	DefaultTimeout      = 10 * time.Second
	// MaxBatch is the most messages one batch publish may carry.
	MaxBatch = 100
	// Audience is the aud a JWT must carry to be accepted by the API.
	Audience = "api"
)

// DefaultConfig returns the defaults: the API off.
func DefaultConfig() Config {
	return Config{Rate: DefaultRate, Burst: DefaultBurst, MaxBodyBytes: DefaultMaxBodyBytes, Timeout: DefaultTimeout}
}

// Enabled reports whether the API is to be served.
func (c *Config) Enabled() bool { return c.Addr != "" }

// RegisterFlags defines a flag for every field, using c's current values
// as defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Addr, "api-addr", c.Addr, "server API listener (publish, moderate and query rooms over HTTP, see docs/api.md); empty disables it; bind it to a private address: TLS is the proxy's job")
	fs.StringVar(&c.KeysFile, "api-keys-file", c.KeysFile, "JSON file of server API keys, each with a name and scopes (publish, moderate, read); reloaded when it changes")
	fs.BoolVar(&c.JWT, "api-jwt", c.JWT, "the server API also accepts JWTs with audience \"api\", an exp and a scope claim, signed by the keys of --jwt-secret-file or --jwt-keys-file")
	fs.Float64Var(&c.Rate, "api-rate", c.Rate, "server API requests per second one key (or JWT subject) may make, sustained; a batch publish costs one per message")
	fs.IntVar(&c.Burst, "api-burst", c.Burst, "burst allowance of --api-rate; at least the largest batch (100)")
	fs.Int64Var(&c.MaxBodyBytes, "api-max-body-bytes", c.MaxBodyBytes, "largest server API request body; larger ones get 413 too_large")
	fs.DurationVar(&c.Timeout, "api-timeout", c.Timeout, "time one server API request may take to be carried out; past it the answer is 503 unavailable")
}

// Validate reports every invalid setting at once. Whether --api-jwt has
// keys to check tokens with is the composed configuration's to say.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Enabled() && c.KeysFile == "" && !c.JWT {
		bad("--api-addr needs --api-keys-file or --api-jwt: the server API refuses every request without credentials")
	}
	if !(c.Rate > 0) {
		bad("--api-rate must be positive, got %v", c.Rate)
	}
	if c.Burst < MaxBatch {
		bad("--api-burst must be at least %d (a full batch publish), got %d", MaxBatch, c.Burst)
	}
	if c.MaxBodyBytes < 1024 {
		bad("--api-max-body-bytes must be at least 1024, got %d", c.MaxBodyBytes)
	}
	if c.Timeout <= 0 {
		bad("--api-timeout must be positive, got %v", c.Timeout)
	}
	return errors.Join(errs...)
}
