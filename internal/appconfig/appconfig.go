// Package appconfig composes the chatgate binary's configuration from the
// settings each package owns: the gateway's (gateway.Config), the room
// settings every broker takes (broker.Settings), the in-process hub's own
// (hub.Settings), the cluster backplane's (cluster.Settings), the server
// API's (api.Config) and the log settings (logging.Config). Each part has its defaults, its flags and its
// Validate in its own package; this package puts them on one flag set,
// reads the CHATGATE_* environment for the flags not given, and validates
// the whole. cmd/chatgate uses it, and so do the k8s tests that check the
// manifests' ConfigMap.
package appconfig

import (
	"errors"
	"flag"
	"fmt"
	"strings"

	"github.com/chatgate/chatgate/gateway"
	"github.com/chatgate/chatgate/gateway/api"
	"github.com/chatgate/chatgate/gateway/broker"
	"github.com/chatgate/chatgate/gateway/cluster"
	"github.com/chatgate/chatgate/gateway/hub"
	"github.com/chatgate/chatgate/internal/logging"
)

// Config is chatgate's whole configuration.
type Config struct {
	Gateway gateway.Config
	Rooms   broker.Settings
	Hub     hub.Settings
	Cluster cluster.Settings
	API     api.Config
	Log     logging.Config
}

// Default returns the embedded defaults: `go run ./cmd/chatgate` with no
// flags serves with these.
func Default() Config {
	return Config{
		Gateway: gateway.DefaultConfig(),
		Rooms:   broker.DefaultSettings(),
		Hub:     hub.DefaultSettings(),
		Cluster: cluster.DefaultSettings(),
		API:     api.DefaultConfig(),
		Log:     logging.DefaultConfig(),
	}
}

// RegisterFlags defines every part's flags on fs, using c's current values
// as defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	c.Gateway.RegisterFlags(fs)
	c.Rooms.RegisterFlags(fs)
	c.Hub.RegisterFlags(fs)
	c.Cluster.RegisterFlags(fs)
	c.API.RegisterFlags(fs)
	c.Log.RegisterFlags(fs)
}

// Validate reports every invalid setting of every part at once, and the
// settings that only make sense together.
func (c *Config) Validate() error {
	var cross error
	if c.API.JWT && c.Gateway.JWTSecretFile == "" && c.Gateway.JWTKeysFile == "" {
		cross = errors.New("--api-jwt needs --jwt-secret-file or --jwt-keys-file: the server API checks its tokens with the chat's keys")
	}
	return errors.Join(c.Gateway.Validate(), c.Rooms.Validate(), c.Hub.Validate(), c.Cluster.Validate(), c.API.Validate(), c.Log.Validate(), cross)
}

// APIDeps fills in the server API's dependencies that come from the other
// parts' settings: the text limit and the chat's JWT keys.
func (c *Config) APIDeps() api.Deps {
	g := &c.Gateway
	return api.Deps{
		MaxTextBytes: g.MaxTextBytes,
		JWT:          g.AuthConfig(), // the API sets its own audience
	}
}

// EnvPrefix prefixes every flag's environment variable.
const EnvPrefix = "CHATGATE_"

// EnvName returns the environment variable that backs flag name.
func EnvName(name string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// ApplyEnv sets, for every flag of fs not given on the command line, the
// value of its CHATGATE_* environment variable when that is set. Call it
// after fs.Parse.
func ApplyEnv(fs *flag.FlagSet, lookup func(string) (string, bool)) error {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] {
			return
		}
		env := EnvName(f.Name)
		if v, ok := lookup(env); ok {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %v", env, v, err))
			}
		}
	})
	return errors.Join(errs...)
}
