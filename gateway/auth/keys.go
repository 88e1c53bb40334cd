package auth

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/go-jose/go-jose/v4"
)

// keySet is one loaded generation of public keys.
type keySet struct {
	keys []publicKey
}

type publicKey struct {
	kid string
	key any // *rsa.PublicKey or *ecdsa.PublicKey
}

// lookup returns the key for kid and alg. Without a kid, a single key of
// the right type is used.
func (ks *keySet) lookup(kid, alg string) (any, error) {
	var match []any
	for _, k := range ks.keys {
		if kid != "" && k.kid != kid {
			continue
		}
		switch k.key.(type) {
		case *rsa.PublicKey:
			if alg == "RS256" {
				match = append(match, k.key)
			}
		case *ecdsa.PublicKey:
			if alg == "ES256" {
				match = append(match, k.key)
			}
		}
	}
	switch {
	case len(match) == 1:
		return match[0], nil
	case len(match) == 0 && kid != "":
		return nil, fmt.Errorf("unknown kid %q", kid)
	case len(match) == 0:
		return nil, fmt.Errorf("no %s key", alg)
	default:
		return nil, errors.New("several keys match; the token needs a kid")
	}
}

func readFile(file string) ([]byte, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	return b, nil
}

// loadKeys reads a JWKS document (JSON) or PEM public keys / certificates.
// For PEM, a block's kid is its "kid" header when present.
func loadKeys(file string) (*keySet, error) {
	b, err := readFile(file)
	if err != nil {
		return nil, fmt.Errorf("jwt keys: %w", err)
	}
	var ks keySet
	if trimmed := bytes.TrimSpace(b); len(trimmed) > 0 && trimmed[0] == '{' {
		var set jose.JSONWebKeySet
		if err := json.Unmarshal(trimmed, &set); err != nil {
			return nil, fmt.Errorf("jwt keys %s: JWKS: %w", file, err)
		}
		for _, k := range set.Keys {
			if !k.IsPublic() {
				return nil, fmt.Errorf("jwt keys %s: key %q is private; publish only public keys", file, k.KeyID)
			}
			if k.Use != "" && k.Use != "sig" {
				continue
			}
			switch k.Key.(type) {
			case *rsa.PublicKey, *ecdsa.PublicKey:
				ks.keys = append(ks.keys, publicKey{kid: k.KeyID, key: k.Key})
			}
		}
	} else {
		for rest := b; ; {
			var block *pem.Block
			block, rest = pem.Decode(rest)
			if block == nil {
				break
			}
			var key any
			switch block.Type {
			case "PUBLIC KEY":
				key, err = x509.ParsePKIXPublicKey(block.Bytes)
			case "CERTIFICATE":
				var cert *x509.Certificate
				if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
					key = cert.PublicKey
				}
			default:
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("jwt keys %s: %w", file, err)
			}
			switch key.(type) {
			case *rsa.PublicKey, *ecdsa.PublicKey:
				ks.keys = append(ks.keys, publicKey{kid: block.Headers["kid"], key: key})
			}
		}
	}
	if len(ks.keys) == 0 {
		return nil, fmt.Errorf("jwt keys %s: no RSA or ECDSA public key found", file)
	}
	return &ks, nil
}

// WatchFile calls reload whenever file may have changed, until ctx ends.
// It watches the directory, so an atomic rename or a Kubernetes volume's
// symlink swap is seen as well as an in-place write; events about other
// files of the directory are ignored (a log file beside the keys must not
// reload them at every line); events are debounced.
// what names the file in the log ("jwt keys", "api keys").
func WatchFile(ctx context.Context, file, what string, log *slog.Logger, reload func()) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	defer w.Close()
	if err := w.Add(filepath.Dir(file)); err != nil {
		return err
	}
	const debounce = 100 * time.Millisecond
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if concerns(file, ev.Name) {
				timer.Reset(debounce)
			}
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			log.Warn("watching "+what, "file", file, "err", err)
		case <-timer.C:
			reload()
		}
	}
}

// concerns reports whether a change to the directory entry name may have
// changed file: file itself (written, replaced by a rename, removed), or
// an entry whose name starts with "..", which is how a Kubernetes volume
// swaps its files (the ..data symlink and the ..<timestamp> directories
// it points to).
func concerns(file, name string) bool {
	base := filepath.Base(name)
	return base == filepath.Base(file) || strings.HasPrefix(base, "..")
}
