// Package web is chatgate's browser client: a chat page, embedded in the
// binary, that speaks wire protocol v1 over /ws (several rooms per
// connection, optimistic sending, reconnects that rejoin with since).
// It is plain JavaScript modules under static/ with no build step:
//
//	static/app.js            the app: rooms, rendering, forms
//	static/js/wire.js        protocol helpers (pure)
//	static/js/connection.js  the reconnecting socket
//	static/js/sendqueue.js   outgoing messages: order, pacing, retries (no DOM)
//	static/js/storage.js     what is remembered per tab and per browser
//	static/js/tabs.js        the other open tabs (Web Locks)
//	static/js/mentions.js    @mention matching (pure)
//	static/js/notify.js      mention notifications
//	static/js/typing.js      typing indicators, for a gateway that announces them
//	static/js/dom.js         DOM helpers (text only)
//
// The e2e directory drives it in a real Chromium against a real gateway.
//
// Handler serves the page's files with a strict Content-Security-Policy.
// The page uses no inline script, inline style or third-party asset, so the
// policy never has to be loosened for it. Mount Handler at "/" next to the
// gateway's /ws endpoint on the chat listener.
package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"time"
)

//go:embed static
var embedded embed.FS

// ContentSecurityPolicy is sent with every response from Handler.
const ContentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; " +
	"connect-src 'self' ws: wss:; img-src 'self' data:; object-src 'none'; base-uri 'none'; " +
	"form-action 'none'; frame-ancestors 'none'"

// contentTypes pins the types of the files we ship so that they do not
// depend on the host's mime tables (with nosniff, a wrong type for app.js
// would stop the page from running).
var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".svg":  "image/svg+xml",
}

type asset struct {
	body  []byte
	ctype string
	etag  string
}

// Handler returns an http.Handler serving the embedded page: index.html at
// "/" and every other file under its own name. Other paths get 404 and
// methods other than GET and HEAD get 405.
//
// File names carry no content hash, so every response says
// "Cache-Control: no-cache" together with a strong ETag derived from the
// content: browsers revalidate on each load and get a cheap 304 unless the
// binary changed, and a deploy can never pair a fresh index.html with a
// stale app.js.
func Handler() http.Handler {
	assets := load()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", ContentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")

		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		name := r.URL.Path
		if name == "/" {
			name = "/index.html"
		}
		a, ok := assets[name]
		if !ok {
			http.NotFound(w, r)
			return
		}
		h.Set("Content-Type", a.ctype)
		h.Set("Cache-Control", "no-cache")
		h.Set("ETag", a.etag)
		// ServeContent handles HEAD, Range and If-None-Match (→ 304).
		http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(a.body))
	})
}

// load reads every embedded file once, keyed by its URL path ("/app.js").
func load() map[string]asset {
	root, err := fs.Sub(embedded, "static")
	if err != nil {
		panic("web: " + err.Error()) // cannot happen: the directory is embedded
	}
	assets := make(map[string]asset)
	err = fs.WalkDir(root, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := fs.ReadFile(root, p)
		if err != nil {
			return err
		}
		ext := path.Ext(p)
		ctype, ok := contentTypes[ext]
		if !ok {
			if ctype = mime.TypeByExtension(ext); ctype == "" {
				ctype = "application/octet-stream"
			}
		}
		sum := sha256.Sum256(body)
		assets["/"+p] = asset{
			body:  body,
			ctype: ctype,
			etag:  `"` + base64.RawURLEncoding.EncodeToString(sum[:16]) + `"`,
		}
		return nil
	})
	if err != nil {
		panic("web: reading embedded assets: " + err.Error())
	}
	return assets
}
