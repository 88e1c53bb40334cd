package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/rsa"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func TestLoadKeysErrors(t *testing.T) {
	dir := t.TempDir()
	rsaA, ecA := rsaKey(t, "a"), ecKey(t, "a")
	goodPEM := pemPublicKey(t, &rsaA.PublicKey, "r1")
	corrupt := func(typ string) []byte {
		return []byte("-----BEGIN " + typ + "-----\nAAAAAAAA\n-----END " + typ + "-----\n")
	}
	cases := []struct {
		name    string
		content []byte // nil: no file
		wantErr string
	}{
		{"missing file", nil, "jwt keys"},
		{"empty file", []byte{}, "no RSA or ECDSA public key"},
		{"white space only", []byte(" \n\t\n"), "no RSA or ECDSA public key"},
		{"not PEM", []byte("hello"), "no RSA or ECDSA public key"},
		{"broken JWKS", []byte(`{"keys": [`), "JWKS"},
		{"JWKS with an unknown key type", []byte(`{"keys":[{"kty":"XYZ","kid":"x"}]}`), "JWKS"},
		{"empty JWKS", []byte(`{"keys": []}`), "no RSA or ECDSA public key"},
		{"JWKS without keys", []byte(`{}`), "no RSA or ECDSA public key"},
		{"JWKS with only an encryption key", jwks(t, jwk(&rsaA.PublicKey, "k1", "enc")), "no RSA or ECDSA public key"},
		{"JWKS with only an Ed25519 key", jwks(t, jwk(ed25519Key(t).Public(), "ed", "sig")), "no RSA or ECDSA public key"},
		{"JWKS with a private RSA key", jwks(t, jwk(&rsaA.PublicKey, "k1", "sig"), jwk(rsaA, "k2", "sig")), `key "k2" is private`},
		{"JWKS with a private EC key", jwks(t, jwk(ecA, "e1", "")), `key "e1" is private`},
		{"JWKS with a private key marked enc", jwks(t, jwk(&rsaA.PublicKey, "k1", "sig"), jwk(ecA, "e1", "enc")), `key "e1" is private`},
		{"JWKS with a symmetric key", jwks(t, jwk([]byte(testSecret), "hs", "sig")), `key "hs" is private`},
		{"corrupt PUBLIC KEY block", append(append([]byte{}, goodPEM...), corrupt("PUBLIC KEY")...), "jwt keys"},
		{"corrupt CERTIFICATE block", corrupt("CERTIFICATE"), "jwt keys"},
		{"only a private key block", corrupt("PRIVATE KEY"), "no RSA or ECDSA public key"},
		{"only an RSA PUBLIC KEY (PKCS #1) block", corrupt("RSA PUBLIC KEY"), "no RSA or ECDSA public key"},
		{"only an Ed25519 key", pemPublicKey(t, ed25519Key(t).Public(), ""), "no RSA or ECDSA public key"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_"))
			if tc.content != nil {
				writeFile(t, dir, filepath.Base(file), tc.content)
			}
			ks, err := loadKeys(file)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("loadKeys = %v, %v; want an error containing %q", ks, err, tc.wantErr)
			}
			// New reports the same problem.
			if _, err := New(Config{KeysFile: file}, nil); err == nil {
				t.Fatal("New accepted the file")
			}
		})
	}
}

func TestLoadKeysKinds(t *testing.T) {
	dir := t.TempDir()
	rsaA, ecA := rsaKey(t, "a"), ecKey(t, "a")
	cases := []struct {
		name    string
		content []byte
		want    []string // kid and type of each key, in order
	}{
		{"PEM public keys", append(pemPublicKey(t, &rsaA.PublicKey, "r1"), pemPublicKey(t, &ecA.PublicKey, "")...), []string{"r1 rsa", " ec"}},
		{"PEM certificates", append(pemCertificate(t, ecA, "e1"), pemCertificate(t, rsaA, "r1")...), []string{"e1 ec", "r1 rsa"}},
		{"PEM with other headers", pemWithHeaders(t, &rsaA.PublicKey, map[string]string{"Comment": "x", "kid": "r9"}), []string{"r9 rsa"}},
		{"JWKS, enc and Ed25519 dropped", jwks(t,
			jwk(&ecA.PublicKey, "e1", "sig"),
			jwk(&rsaA.PublicKey, "r1", "enc"),
			jwk(ed25519Key(t).Public(), "ed", ""),
			jwk(&rsaA.PublicKey, "", ""),
		), []string{"e1 ec", " rsa"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ks, err := loadKeys(writeFile(t, dir, "keys", tc.content))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, k := range ks.keys {
				typ := "?"
				switch k.key.(type) {
				case *rsa.PublicKey:
					typ = "rsa"
				case *ecdsa.PublicKey:
					typ = "ec"
				}
				got = append(got, k.kid+" "+typ)
			}
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Errorf("keys %q, want %q", got, tc.want)
			}
		})
	}
}

func pemWithHeaders(t *testing.T, pub any, headers map[string]string) []byte {
	t.Helper()
	b := pemPublicKey(t, pub, "")
	var lines []string
	for k, v := range headers {
		lines = append(lines, k+": "+v)
	}
	// Headers go after the BEGIN line, followed by a blank line.
	begin, rest, _ := strings.Cut(string(b), "\n")
	return []byte(begin + "\n" + strings.Join(lines, "\n") + "\n\n" + rest)
}

func TestLookup(t *testing.T) {
	r1, r2 := &rsaKey(t, "a").PublicKey, &rsaKey(t, "b").PublicKey
	e1 := &ecKey(t, "a").PublicKey
	cases := []struct {
		name    string
		keys    []publicKey
		kid     string
		alg     string
		want    any
		wantErr string
	}{
		{"kid match", []publicKey{{"r1", r1}, {"r2", r2}}, "r2", "RS256", r2, ""},
		{"kid of the wrong type", []publicKey{{"r1", r1}, {"e1", e1}}, "e1", "RS256", nil, `unknown kid "e1"`},
		{"unknown kid", []publicKey{{"r1", r1}}, "r2", "RS256", nil, `unknown kid "r2"`},
		{"kid against keys without kid", []publicKey{{"", r1}}, "r1", "RS256", nil, "unknown kid"},
		{"no kid, one key of the type", []publicKey{{"r1", r1}, {"e1", e1}}, "", "ES256", e1, ""},
		{"no kid, one key", []publicKey{{"", r1}}, "", "RS256", r1, ""},
		{"no kid, several keys", []publicKey{{"r1", r1}, {"r2", r2}}, "", "RS256", nil, "needs a kid"},
		{"no kid, several keys sharing a kid", []publicKey{{"x", r1}, {"x", r2}}, "x", "RS256", nil, "needs a kid"},
		{"no key of the type", []publicKey{{"r1", r1}}, "", "ES256", nil, "no ES256 key"},
		{"other algorithm", []publicKey{{"r1", r1}}, "r1", "RS512", nil, "unknown kid"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ks := &keySet{keys: tc.keys}
			got, err := ks.lookup(tc.kid, tc.alg)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("lookup = %v, %v; want an error containing %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("lookup = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

const (
	msgReloaded = "reloaded jwt keys"
	msgFailed   = "reloading jwt keys failed; keeping the previous keys"
)

// watching starts a.Watch and returns once it has seen a change to file,
// so later changes cannot be missed. The watcher stops at the end of t.
func watching(t *testing.T, a *Authenticator, rec *logRecorder, file string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Watch(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Watch returned %v after cancel", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Watch did not return after cancel")
		}
	})
	// Until the directory watch is in place, changes go unseen. A change
	// to an entry named "..*" beside the file (how a Kubernetes volume
	// swaps files) reloads it, so touch one until a reload shows up. Touches are spaced more widely than the
	// debounce, which would otherwise swallow them all.
	before := rec.count(msgReloaded)
	var touched time.Time
	eventually(t, 10*time.Second, "the watcher to start", func() bool {
		if rec.count(msgReloaded) > before {
			return true
		}
		if time.Since(touched) > 300*time.Millisecond {
			writeFile(t, filepath.Dir(file), "..touch", []byte(time.Now().String()))
			touched = time.Now()
		}
		return false
	})
}

func TestWatchRotation(t *testing.T) {
	dir := t.TempDir()
	k1, k2, k3 := rsaKey(t, "a"), rsaKey(t, "b"), rsaKey(t, "c")
	e1 := ecKey(t, "a")
	file := writeFile(t, dir, "keys.jwks", jwks(t, jwk(&k1.PublicKey, "k1", "sig")))
	rec := &logRecorder{}
	a := newAuth(t, Config{KeysFile: file}, slog.New(rec))
	watching(t, a, rec, file)

	claims := claimsFor("alice")
	tokK1 := sign(t, jwt.SigningMethodRS256, k1, "k1", claims)
	tokK2 := sign(t, jwt.SigningMethodRS256, k2, "k2", claims)
	tokK3 := sign(t, jwt.SigningMethodRS256, k3, "k3", claims)
	tokE1 := sign(t, jwt.SigningMethodES256, e1, "e1", claims)
	verifies := func(tok string) bool { _, err := a.Authenticate(tok); return err == nil }
	// settled waits for one more reload, successful or not, after change.
	settled := func(t *testing.T, msg string, change func()) {
		t.Helper()
		before := rec.count(msg)
		change()
		eventually(t, 10*time.Second, "a log line "+msg, func() bool { return rec.count(msg) > before })
	}
	check := func(t *testing.T, good, bad []string) {
		t.Helper()
		for _, tok := range good {
			if _, err := a.Authenticate(tok); err != nil {
				t.Errorf("token with kid %v: %v", kidOf(tok), err)
			}
		}
		for _, tok := range bad {
			_, err := a.Authenticate(tok)
			checkErr(t, err, ErrInvalid)
		}
	}

	// Each step depends on the keys the previous one left in force.
	steps := []struct {
		name      string
		change    func(t *testing.T)
		good, bad []string
	}{
		{"k2 is unknown at first", func(*testing.T) {}, []string{tokK1}, []string{tokK2, tokK3, tokE1}},
		{"in-place write adds k2", func(t *testing.T) {
			writeFile(t, dir, "keys.jwks", jwks(t, jwk(&k1.PublicKey, "k1", "sig"), jwk(&k2.PublicKey, "k2", "sig")))
			eventually(t, 10*time.Second, "k2 to verify", func() bool { return verifies(tokK2) })
		}, []string{tokK1, tokK2}, []string{tokK3, tokE1}},
		{"atomic rename replaces k1 with k3 and e1", func(t *testing.T) {
			replaceFile(t, file, jwks(t, jwk(&k2.PublicKey, "k2", "sig"), jwk(&k3.PublicKey, "k3", "sig"), jwk(&e1.PublicKey, "e1", "sig")))
			eventually(t, 10*time.Second, "k3 to verify", func() bool { return verifies(tokK3) })
		}, []string{tokK2, tokK3, tokE1}, []string{tokK1}},
		{"broken rename keeps the keys", func(t *testing.T) {
			settled(t, msgFailed, func() { replaceFile(t, file, []byte(`{"keys": [`)) })
		}, []string{tokK2, tokK3, tokE1}, []string{tokK1}},
		{"private key written in place keeps the keys", func(t *testing.T) {
			settled(t, msgFailed, func() { writeFile(t, dir, "keys.jwks", jwks(t, jwk(k1, "k1", "sig"))) })
		}, []string{tokK2, tokK3, tokE1}, []string{tokK1}},
		{"removed file keeps the keys", func(t *testing.T) {
			settled(t, msgFailed, func() {
				if err := os.Remove(file); err != nil {
					t.Fatal(err)
				}
			})
		}, []string{tokK2, tokK3, tokE1}, []string{tokK1}},
		{"recreated file is loaded", func(t *testing.T) {
			replaceFile(t, file, pemPublicKey(t, &k1.PublicKey, "k1"))
			eventually(t, 10*time.Second, "k1 to verify", func() bool { return verifies(tokK1) })
		}, []string{tokK1}, []string{tokK2, tokK3, tokE1}},
	}
	for _, st := range steps {
		if !t.Run(st.name, func(t *testing.T) {
			st.change(t)
			check(t, st.good, st.bad)
		}) {
			return
		}
	}
}

// TestWatchSymlinkSwap rotates keys the way a Kubernetes volume does: the
// file is a symlink through "..data", which is swapped atomically to a new
// directory.
func TestWatchSymlinkSwap(t *testing.T) {
	dir := t.TempDir()
	k1, k2 := rsaKey(t, "a"), rsaKey(t, "b")
	version := func(name string, data []byte) {
		if err := os.Mkdir(filepath.Join(dir, name), 0o700); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dir, name), "keys.pem", data)
	}
	link := func(target, name string) {
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
			t.Skipf("symlinks unavailable: %v", err)
		}
	}
	version("..v1", pemPublicKey(t, &k1.PublicKey, "k1"))
	link("..v1", "..data")
	link(filepath.Join("..data", "keys.pem"), "keys.pem")
	file := filepath.Join(dir, "keys.pem")

	rec := &logRecorder{}
	a := newAuth(t, Config{KeysFile: file}, slog.New(rec))
	claims := claimsFor("alice")
	tokK1 := sign(t, jwt.SigningMethodRS256, k1, "k1", claims)
	tokK2 := sign(t, jwt.SigningMethodRS256, k2, "k2", claims)
	if _, err := a.Authenticate(tokK1); err != nil {
		t.Fatal(err)
	}
	watching(t, a, rec, file)

	version("..v2", pemPublicKey(t, &k2.PublicKey, "k2"))
	link("..v2", "..data_tmp")
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "k2 to verify", func() bool { _, err := a.Authenticate(tokK2); return err == nil })
	_, err := a.Authenticate(tokK1)
	checkErr(t, err, ErrInvalid)
}

// TestWatchConcerns: only changes that may change the watched file reload
// it; a log file or an editor's swap file beside it do not.
func TestWatchConcerns(t *testing.T) {
	file := filepath.Join("/etc/chatgate", "keys.pem")
	for name, want := range map[string]bool{
		"/etc/chatgate/keys.pem":        true,  // written in place, renamed over, removed
		"/etc/chatgate/..data":          true,  // a Kubernetes volume's swap
		"/etc/chatgate/..2026_12_07_12": true,  // its new directory
		"/etc/chatgate/chatgate.log":    false, // a log beside the keys
		"/etc/chatgate/.keys.pem.swp":   false, // an editor's swap file
		"/etc/chatgate/keys.pem.tmp":    false, // a temporary file, before its rename
	} {
		if got := concerns(file, name); got != want {
			t.Errorf("concerns(%q) = %v; want %v", name, got, want)
		}
	}
}

func TestWatchEnds(t *testing.T) {
	dir := t.TempDir()
	secret := writeFile(t, dir, "secret", []byte(testSecret))
	keysDir := filepath.Join(dir, "keys")
	if err := os.Mkdir(keysDir, 0o700); err != nil {
		t.Fatal(err)
	}
	keys := writeFile(t, keysDir, "keys.pem", pemPublicKey(t, &rsaKey(t, "a").PublicKey, ""))

	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	cases := []struct {
		name    string
		cfg     Config
		ctx     context.Context
		prepare func(t *testing.T)
		wantErr bool
	}{
		{"no keys file: nothing to watch", Config{SecretFile: secret}, context.Background(), nil, false},
		{"context already cancelled", Config{KeysFile: keys}, cancelled, nil, false},
		{"directory gone", Config{KeysFile: keys}, context.Background(), func(t *testing.T) {
			if err := os.RemoveAll(keysDir); err != nil {
				t.Fatal(err)
			}
		}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := newAuth(t, tc.cfg, nil)
			if tc.prepare != nil {
				tc.prepare(t)
			}
			done := make(chan error, 1)
			go func() { done <- a.Watch(tc.ctx) }()
			select {
			case err := <-done:
				if (err != nil) != tc.wantErr {
					t.Fatalf("Watch = %v, want error %v", err, tc.wantErr)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Watch did not return")
			}
		})
	}
}

// kidOf reads a token's kid for messages.
func kidOf(tok string) any {
	parsed, _, err := jwt.NewParser().ParseUnverified(tok, jwt.MapClaims{})
	if err != nil {
		return errors.New("unparsable")
	}
	return parsed.Header["kid"]
}
