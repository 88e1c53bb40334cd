package api

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
)

// Scope is one permission a key carries.
type Scope uint8

// The scopes.
const (
	ScopePublish  Scope = 1 << iota // publish and batch publish
	ScopeModerate                   // disconnect, ban, unban
	ScopeRead                       // presence, rooms, history
)

var scopeNames = map[string]Scope{"publish": ScopePublish, "moderate": ScopeModerate, "read": ScopeRead}

func (s Scope) String() string {
	for name, v := range scopeNames {
		if s == v {
			return name
		}
	}
	return fmt.Sprintf("scope(%d)", uint8(s))
}

// parseScopes reads scope names; unknown ones are an error.
func parseScopes(names []string) (Scope, error) {
	var s Scope
	for _, n := range names {
		v, ok := scopeNames[n]
		if !ok {
			return 0, fmt.Errorf("unknown scope %q (want publish, moderate or read)", n)
		}
		s |= v
	}
	return s, nil
}

// keyFile is the keys file's format (docs/api.md, "Keys").
type keyFile struct {
	Keys []struct {
		Name   string   `json:"name"`
		Key    string   `json:"key"`    // the key itself, or
		SHA256 string   `json:"sha256"` // the hex SHA-256 of the key
		Scopes []string `json:"scopes"`
	} `json:"keys"`
}

// MinKeyBytes is the shortest key accepted.
const MinKeyBytes = 32

var (
	keyNamePattern = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)
	// A key travels in an Authorization header: printable ASCII, no space.
	keyPattern = regexp.MustCompile(`^[\x21-\x7e]+$`)
)

// keySet is one loaded generation of keys; it is replaced whole on reload.
type keySet struct {
	keys []apiKey
}

// apiKey is one key: only the SHA-256 of the secret is kept.
type apiKey struct {
	name   string
	scopes Scope
	digest [sha256.Size]byte
}

// loadKeys reads and checks a keys file. An empty list is valid: it
// revokes every key.
func loadKeys(file string) (*keySet, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("api keys: %w", err)
	}
	ks, err := parseKeys(b)
	if err != nil {
		return nil, fmt.Errorf("api keys %s: %w", file, err)
	}
	return ks, nil
}

func parseKeys(b []byte) (*keySet, error) {
	var f keyFile
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("not a keys document: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("not a keys document: data after the object")
	}
	ks := &keySet{}
	names := map[string]bool{}
	digests := map[[sha256.Size]byte]string{}
	var errs []error
	for i, k := range f.Keys {
		bad := func(format string, args ...any) {
			errs = append(errs, fmt.Errorf("keys[%d] (%q): %s", i, k.Name, fmt.Sprintf(format, args...)))
		}
		if !keyNamePattern.MatchString(k.Name) {
			bad("name must match [A-Za-z0-9_.-]{1,64}")
		} else if names[k.Name] {
			bad("the name is used twice")
		}
		names[k.Name] = true
		scopes, err := parseScopes(k.Scopes)
		switch {
		case err != nil:
			bad("%v", err)
		case scopes == 0:
			bad("no scopes: give at least one of publish, moderate, read")
		}
		var digest [sha256.Size]byte
		switch {
		case k.Key != "" && k.SHA256 != "":
			bad("give key or sha256, not both")
			continue
		case k.Key != "":
			if len(k.Key) < MinKeyBytes || !keyPattern.MatchString(k.Key) {
				bad("key must be at least %d printable ASCII characters without spaces", MinKeyBytes)
				continue
			}
			digest = sha256.Sum256([]byte(k.Key))
		case k.SHA256 != "":
			d, err := hex.DecodeString(strings.ToLower(k.SHA256))
			if err != nil || len(d) != sha256.Size {
				bad("sha256 must be 64 hex digits")
				continue
			}
			copy(digest[:], d)
		default:
			bad("give key or sha256")
			continue
		}
		if other, dup := digests[digest]; dup {
			bad("the same key as %q", other)
		}
		digests[digest] = k.Name
		ks.keys = append(ks.keys, apiKey{name: k.Name, scopes: scopes, digest: digest})
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return ks, nil
}

// match finds the key whose secret is token. Every key is compared, each
// in constant time, so the time taken says nothing about which key (or
// how much of one) matched.
func (ks *keySet) match(token string) (apiKey, bool) {
	d := sha256.Sum256([]byte(token))
	found := -1
	for i := range ks.keys {
		if subtle.ConstantTimeCompare(ks.keys[i].digest[:], d[:]) == 1 {
			found = i
		}
	}
	if found < 0 {
		return apiKey{}, false
	}
	return ks.keys[found], true
}

func (ks *keySet) names() []string {
	out := make([]string, 0, len(ks.keys))
	for _, k := range ks.keys {
		out = append(out, k.name)
	}
	return out
}
