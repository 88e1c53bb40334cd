package bench

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/chatgate/chatgate/gateway/auth"
)

// tokenSlack is added to a minted token's lifetime beyond what the run
// needs, so no connection outlives its token whatever the clocks do.
const tokenSlack = 15 * time.Minute

// maxTokenBytes bounds --token-file.
const maxTokenBytes = 16 << 10

// credentials are what a handshake sends as Authorization: Bearer, for a
// gateway started with --auth jwt: one fixed token (--token, --token-file)
// or a token minted per connection (--jwt-secret-file). Tokens never reach
// logs, errors or reports.
type credentials struct {
	fixed  string
	secret []byte
	id     string // bench id, the prefix of every minted sub
	ttl    time.Duration
}

// loadCredentials reads the token or secret file cfg names; nil when the
// run sends no token.
func loadCredentials(cfg *Config, id string) (*credentials, error) {
	switch {
	case cfg.JWTSecretFile != "":
		secret, err := auth.ReadSecret(cfg.JWTSecretFile)
		if err != nil {
			return nil, fmt.Errorf("--jwt-secret-file: %w", err)
		}
		return &credentials{secret: secret, id: id, ttl: tokenTTL(cfg)}, nil
	case cfg.TokenFile != "":
		b, err := readTokenFile(cfg.TokenFile)
		if err != nil {
			return nil, fmt.Errorf("--token-file: %w", err)
		}
		tok := strings.TrimSpace(string(b))
		if err := checkToken(tok); err != nil {
			return nil, fmt.Errorf("--token-file %s: %w", cfg.TokenFile, err)
		}
		return &credentials{fixed: tok}, nil
	case cfg.Token != "":
		tok := strings.TrimSpace(cfg.Token)
		if err := checkToken(tok); err != nil {
			return nil, fmt.Errorf("--token: %w", err)
		}
		return &credentials{fixed: tok}, nil
	}
	return nil, nil
}

func readTokenFile(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxTokenBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxTokenBytes {
		return nil, fmt.Errorf("%s is larger than %d bytes", name, maxTokenBytes)
	}
	return b, nil
}

// checkToken refuses what cannot be a bearer token, without quoting it.
func checkToken(tok string) error {
	if tok == "" {
		return errors.New("the token is empty")
	}
	for i := 0; i < len(tok); i++ {
		if c := tok[i]; c <= ' ' || c >= 0x7f {
			return fmt.Errorf("the token has a space or control character at byte %d", i)
		}
	}
	return nil
}

// tokenTTL is how long a minted token lives: the whole run from the first
// dial, whatever the connection, plus tokenSlack.
func tokenTTL(cfg *Config) time.Duration {
	ttl := cfg.Duration + cfg.Settle + cfg.Hold + cfg.ChurnHold + 2*cfg.HandshakeTimeout + tokenSlack
	if cfg.ConnectRate > 0 {
		// The setup itself: the first connection waits for the last.
		ttl += time.Duration(float64(cfg.Conns) / cfg.ConnectRate * float64(time.Second))
	}
	return ttl
}

// header is the handshake header of connection conn (0-based: traffic
// members, then churn arrivals, or the connect scenario's connections);
// nil without credentials. A reconnecting member gets a fresh token for the
// same user.
func (c *credentials) header(conn int) (http.Header, error) {
	if c == nil {
		return nil, nil
	}
	tok := c.fixed
	if c.secret != nil {
		n := strconv.Itoa(conn)
		var err error
		tok, err = auth.Mint(c.secret, c.id+"-"+n, "bench-"+n, nil, c.ttl, time.Now())
		if err != nil {
			return nil, fmt.Errorf("minting a token: %w", err)
		}
	}
	return http.Header{"Authorization": {"Bearer " + tok}}, nil
}
