package web

import (
	"io/fs"
	"net/http"
	"net/http/httptest"
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

// The page must build its DOM from text only. Any HTML-parsing sink in the
// script is a regression, even in a comment (grep cannot tell them apart,
// and neither can a reviewer skimming a diff).
func TestScriptHasNoHTMLSinks(t *testing.T) {
	src := staticFile(t, "app.js")
	for _, sink := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "createContextualFragment", "DOMParser", "eval(", "new Function"} {
		t.Run(sink, func(t *testing.T) {
			if strings.Contains(src, sink) {
				t.Errorf("app.js uses %s; build DOM nodes with textContent instead", sink)
			}
		})
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
