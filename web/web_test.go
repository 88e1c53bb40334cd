package web

import (
	"io/fs"
	"net/http"
	"net/http/httptest"
	"path"
	"regexp"
	"strings"
	"testing"
)

// do sends one request straight to h and returns the recorded response.
func do(t *testing.T, h http.Handler, method, target string, header http.Header) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	for k, vs := range header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// checkSecurityHeaders asserts the headers every response must carry.
func checkSecurityHeaders(t *testing.T, rec *httptest.ResponseRecorder) {
	t.Helper()
	want := map[string]string{
		"Content-Security-Policy": ContentSecurityPolicy,
		"X-Content-Type-Options":  "nosniff",
		"Referrer-Policy":         "no-referrer",
	}
	for k, v := range want {
		if got := rec.Header().Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
}

// staticFile returns the content of an embedded asset.
func staticFile(t *testing.T, name string) string {
	t.Helper()
	b, err := fs.ReadFile(embedded, "static/"+name)
	if err != nil {
		t.Fatalf("reading embedded %s: %v", name, err)
	}
	return string(b)
}

func TestHandlerRoutes(t *testing.T) {
	h := Handler()
	tests := []struct {
		name     string
		method   string
		path     string
		status   int
		ctype    string // prefix; empty: not checked
		cache    string // empty: not checked
		wantBody bool
		allow    string // expected Allow header; empty: not checked
	}{
		{name: "index at root", method: "GET", path: "/", status: 200, ctype: "text/html", cache: "no-cache", wantBody: true},
		{name: "index by name", method: "GET", path: "/index.html", status: 200, ctype: "text/html", cache: "no-cache", wantBody: true},
		{name: "script", method: "GET", path: "/app.js", status: 200, ctype: "text/javascript", wantBody: true},
		{name: "stylesheet", method: "GET", path: "/style.css", status: 200, ctype: "text/css", wantBody: true},
		{name: "icon", method: "GET", path: "/favicon.svg", status: 200, ctype: "image/svg+xml", wantBody: true},
		{name: "head has no body", method: "HEAD", path: "/", status: 200, ctype: "text/html"},
		{name: "query string ignored", method: "GET", path: "/app.js?v=2", status: 200, ctype: "text/javascript", wantBody: true},
		{name: "unknown path", method: "GET", path: "/nope.html", status: 404},
		{name: "embed dir not exposed", method: "GET", path: "/static/app.js", status: 404},
		{name: "no traversal", method: "GET", path: "/../web.go", status: 404},
		{name: "no directory listing", method: "GET", path: "/static/", status: 404},
		{name: "websocket path not ours", method: "GET", path: "/ws", status: 404},
		{name: "post", method: "POST", path: "/", status: 405, allow: "GET, HEAD"},
		{name: "put asset", method: "PUT", path: "/app.js", status: 405, allow: "GET, HEAD"},
		{name: "delete unknown", method: "DELETE", path: "/nope", status: 405, allow: "GET, HEAD"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := do(t, h, tc.method, tc.path, nil)
			if rec.Code != tc.status {
				t.Fatalf("%s %s: status %d, want %d", tc.method, tc.path, rec.Code, tc.status)
			}
			checkSecurityHeaders(t, rec)
			if ct := rec.Header().Get("Content-Type"); tc.ctype != "" && !strings.HasPrefix(ct, tc.ctype) {
				t.Errorf("Content-Type = %q, want prefix %q", ct, tc.ctype)
			}
			if cc := rec.Header().Get("Cache-Control"); tc.cache != "" && cc != tc.cache {
				t.Errorf("Cache-Control = %q, want %q", cc, tc.cache)
			}
			if allow := rec.Header().Get("Allow"); tc.allow != "" && allow != tc.allow {
				t.Errorf("Allow = %q, want %q", allow, tc.allow)
			}
			if tc.status == 200 && (rec.Body.Len() > 0) != tc.wantBody {
				t.Errorf("body length %d, want body: %v", rec.Body.Len(), tc.wantBody)
			}
		})
	}
}

// Every embedded file is reachable and carries the security and caching
// headers, so a newly added asset cannot slip through without them.
func TestEveryAssetHasHeaders(t *testing.T) {
	h := Handler()
	var names []string
	err := fs.WalkDir(embedded, "static", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			names = append(names, strings.TrimPrefix(p, "static"))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(names) < 3 {
		t.Fatalf("only %d embedded assets: %v", len(names), names)
	}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			rec := do(t, h, "GET", name, nil)
			if rec.Code != http.StatusOK {
				t.Fatalf("GET %s: status %d", name, rec.Code)
			}
			checkSecurityHeaders(t, rec)
			if got := rec.Header().Get("Cache-Control"); got == "" {
				t.Error("no Cache-Control")
			}
			if rec.Header().Get("ETag") == "" {
				t.Error("no ETag")
			}
			if ct := rec.Header().Get("Content-Type"); ct == "" || ct == "application/octet-stream" {
				t.Errorf("Content-Type = %q, want a specific type", ct)
			}
		})
	}
}

func TestConditionalGet(t *testing.T) {
	h := Handler()
	for _, path := range []string{"/", "/app.js", "/style.css"} {
		t.Run(path, func(t *testing.T) {
			first := do(t, h, "GET", path, nil)
			etag := first.Header().Get("ETag")
			if etag == "" {
				t.Fatal("no ETag")
			}
			again := do(t, h, "GET", path, http.Header{"If-None-Match": {etag}})
			if again.Code != http.StatusNotModified {
				t.Fatalf("revalidation: status %d, want 304", again.Code)
			}
			checkSecurityHeaders(t, again)
			stale := do(t, h, "GET", path, http.Header{"If-None-Match": {`"stale"`}})
			if stale.Code != http.StatusOK {
				t.Fatalf("stale ETag: status %d, want 200", stale.Code)
			}
		})
	}
}

// scripts returns the embedded JavaScript modules, by path under static/.
func scripts(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := fs.WalkDir(embedded, "static", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".js") {
			b, err := fs.ReadFile(embedded, p)
			if err != nil {
				return err
			}
			out[strings.TrimPrefix(p, "static/")] = string(b)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := out["app.js"]; !ok || len(out) < 2 {
		t.Fatalf("embedded scripts: %v", out)
	}
	return out
}

// The page must build its DOM from text only. Any HTML-parsing sink in any
// module is a regression, even in a comment (grep cannot tell them apart,
// and neither can a reviewer skimming a diff).
func TestScriptHasNoHTMLSinks(t *testing.T) {
	sinks := []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "createContextualFragment",
		"DOMParser", "eval(", "new Function", "setHTML", "parseHTMLUnsafe", "srcdoc", ".style.cssText", "setAttribute('style'",
		"setAttribute(\"on", "setAttribute('on", "javascript:"}
	for name, src := range scripts(t) {
		for _, sink := range sinks {
			if strings.Contains(src, sink) {
				t.Errorf("%s uses %s; build DOM nodes with textContent instead", name, sink)
			}
		}
		// setTimeout/setInterval with a string argument is eval too.
		if m := regexp.MustCompile("set(Timeout|Interval)\\(\\s*['\"`]").FindString(src); m != "" {
			t.Errorf("%s: %s… evaluates a string", name, m)
		}
	}
}

// Every import in every module is relative and names an embedded file, so
// a renamed module cannot leave the page blank; nothing comes from
// elsewhere.
func TestModuleImportsResolve(t *testing.T) {
	importRE := regexp.MustCompile(`(?m)(?:^\s*import\b[^'"]*|\bimport\s*\(\s*)['"]([^'"]+)['"]`)
	all := scripts(t)
	for name, src := range all {
		for _, m := range importRE.FindAllStringSubmatch(src, -1) {
			spec := m[1]
			if !strings.HasPrefix(spec, "./") && !strings.HasPrefix(spec, "../") {
				t.Errorf("%s imports %q: only relative imports of embedded modules are allowed", name, spec)
				continue
			}
			target := path.Join(path.Dir(name), spec)
			if _, ok := all[target]; !ok {
				t.Errorf("%s imports %q, which is not embedded (%s)", name, spec, target)
			}
		}
	}
}

// The page works offline on a LAN: no asset, font, stylesheet or script
// from another origin, in any file.
func TestNoExternalAssets(t *testing.T) {
	external := regexp.MustCompile(`(?i)(@import|url\(\s*['"]?(https?:)?//|(src|href)\s*=\s*['"]?(https?:)?//|from\s+['"](https?:)?//|import\(\s*['"](https?:)?//)`)
	err := fs.WalkDir(embedded, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(embedded, p)
		if err != nil {
			return err
		}
		if m := external.FindString(string(b)); m != "" && !strings.HasSuffix(p, ".svg") {
			t.Errorf("%s refers to another origin: %q", p, m)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Every form control has a label, every button an accessible name, every
// id is unique and every id reference points somewhere.
func TestIndexIsLabelled(t *testing.T) {
	page := staticFile(t, "index.html")
	attr := func(tag, name string) (string, bool) {
		m := regexp.MustCompile(`\s` + name + `="([^"]*)"`).FindStringSubmatch(tag)
		if m == nil {
			return "", false
		}
		return m[1], true
	}
	ids := map[string]int{}
	for _, m := range regexp.MustCompile(`\sid="([^"]+)"`).FindAllStringSubmatch(page, -1) {
		ids[m[1]]++
	}
	for id, n := range ids {
		if n > 1 {
			t.Errorf("id %q is used %d times", id, n)
		}
	}
	labelled := map[string]bool{}
	for _, m := range regexp.MustCompile(`<label[^>]*\sfor="([^"]+)"`).FindAllStringSubmatch(page, -1) {
		labelled[m[1]] = true
		if ids[m[1]] == 0 {
			t.Errorf("label for %q: no such element", m[1])
		}
	}
	for _, tag := range regexp.MustCompile(`<(input|textarea|select)\b[^>]*>`).FindAllString(page, -1) {
		id, _ := attr(tag, "id")
		_, aria := attr(tag, "aria-label")
		if !labelled[id] && !aria {
			t.Errorf("control without a label: %s", tag)
		}
	}
	for _, m := range regexp.MustCompile(`(?s)<button\b([^>]*)>(.*?)</button>`).FindAllStringSubmatch(page, -1) {
		_, aria := attr(m[1], "aria-label")
		text := strings.TrimSpace(regexp.MustCompile(`(?s)<[^>]*>`).ReplaceAllString(m[2], ""))
		if !aria && text == "" {
			t.Errorf("button without an accessible name: <button%s>", m[1])
		}
	}
	for _, m := range regexp.MustCompile(`\s(aria-describedby|aria-labelledby|aria-controls)="([^"]+)"`).FindAllStringSubmatch(page, -1) {
		for _, ref := range strings.Fields(m[2]) {
			if ids[ref] == 0 {
				t.Errorf("%s refers to missing id %q", m[1], ref)
			}
		}
	}
	if !strings.Contains(page, `<html lang="`) {
		t.Error("the page does not declare its language")
	}
	if !regexp.MustCompile(`<meta name="viewport" content="[^"]*width=device-width`).MatchString(page) {
		t.Error("no mobile viewport")
	}
}

// Light and dark follow the system; reduced motion is honoured.
func TestStylesheetThemes(t *testing.T) {
	css := staticFile(t, "style.css")
	for _, want := range []string{"@media (prefers-color-scheme: dark)", "@media (prefers-reduced-motion: reduce)", "color-scheme: light dark", ":focus-visible"} {
		if !strings.Contains(css, want) {
			t.Errorf("style.css lacks %q", want)
		}
	}
}

// The policy must never be loosened for the page.
func TestPolicyIsStrict(t *testing.T) {
	for _, bad := range []string{"unsafe-inline", "unsafe-eval", "unsafe-hashes", "*", "http:", "https:"} {
		if strings.Contains(ContentSecurityPolicy, bad) {
			t.Errorf("Content-Security-Policy contains %q", bad)
		}
	}
	for _, want := range []string{"default-src 'self'", "script-src 'self'", "style-src 'self'", "object-src 'none'", "base-uri 'none'", "frame-ancestors 'none'", "form-action 'none'"} {
		if !strings.Contains(ContentSecurityPolicy, want) {
			t.Errorf("Content-Security-Policy lacks %q", want)
		}
	}
}

// The CSP forbids inline script, inline style and inline event handlers,
// so index.html must not rely on any of them.
func TestIndexHasNothingInline(t *testing.T) {
	page := staticFile(t, "index.html")
	checks := []struct {
		name string
		re   *regexp.Regexp
	}{
		{"style element", regexp.MustCompile(`(?i)<style[\s>]`)},
		{"style attribute", regexp.MustCompile(`(?i)\sstyle\s*=`)},
		{"event handler attribute", regexp.MustCompile(`(?i)\son[a-z]+\s*=`)},
		{"javascript URL", regexp.MustCompile(`(?i)javascript:`)},
		{"external URL", regexp.MustCompile(`(?i)(src|href)\s*=\s*"(https?:)?//`)},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			if m := c.re.FindString(page); m != "" {
				t.Errorf("index.html contains %q", m)
			}
		})
	}
	t.Run("scripts are external modules", func(t *testing.T) {
		tags := regexp.MustCompile(`(?i)<script\b[^>]*>`).FindAllString(page, -1)
		if len(tags) == 0 {
			t.Fatal("no script tag")
		}
		for _, tag := range tags {
			if !strings.Contains(tag, `src="app.js"`) || !strings.Contains(tag, `type="module"`) {
				t.Errorf("unexpected script tag %s", tag)
			}
		}
	})
}

// The access token is a bearer credential, and so is a guest credential:
// they are kept in this tab's sessionStorage only (never localStorage,
// which outlives the tab and is shared by every tab), never put in a URL
// query, never logged, and they travel as subprotocols. Only
// js/storage.js touches the storage areas. The e2e suite checks the same
// things at run time (TestTokenSignIn).
func TestTokenHandling(t *testing.T) {
	all := scripts(t)
	app := all["app.js"]
	for _, use := range regexp.MustCompile(`\w+\.(?:get|set)\(KEYS\.(?:token|guest)\b`).FindAllString(app, -1) {
		if !strings.HasPrefix(use, "tabStore.") {
			t.Errorf("app.js: %s: credentials must be kept in sessionStorage (tabStore) only", use)
		}
	}
	if !strings.Contains(app, "tabStore.set(KEYS.token") {
		t.Error("app.js does not keep the token in sessionStorage")
	}
	if !regexp.MustCompile(`tabStore = wrap\('sessionStorage'\)`).MatchString(all["js/storage.js"]) {
		t.Error("js/storage.js: tabStore is not sessionStorage")
	}
	for name, src := range all {
		if name != "js/storage.js" && regexp.MustCompile(`\b(local|session)Storage\s*[.\[]|['"](local|session)Storage['"]`).MatchString(src) {
			t.Errorf("%s touches a storage area; only js/storage.js may (through tabStore and browserStore)", name)
		}
		if m := regexp.MustCompile(`console\.\w+\([^;]*(?i:token|credential|guest)`).FindString(src); m != "" {
			t.Errorf("%s may log a credential: %s", name, m)
		}
		if m := regexp.MustCompile(`[?&](token|guest)=`).FindString(src); m != "" {
			t.Errorf("%s puts a credential in a URL query (%q); send it as a subprotocol", name, m)
		}
	}
	if !strings.Contains(all["js/wire.js"], "`bearer.${token}`") {
		t.Error("wire.js does not offer the token as a bearer.<token> subprotocol")
	}
	page := staticFile(t, "index.html")
	for _, id := range []string{"welcome-token", "token-input"} {
		tag := regexp.MustCompile(`<input id="` + id + `"[^>]*>`).FindString(page)
		if !strings.Contains(tag, `type="password"`) || !strings.Contains(tag, `autocomplete="off"`) {
			t.Errorf("token field %s must be a password field without autocomplete: %s", id, tag)
		}
	}
}
