package gateway

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// originPattern is one --allowed-origins entry: scheme://host[:port], where
// host may start with "*." to match any subdomain.
type originPattern struct {
	scheme string
	host   string // lower case; may contain a leading "*."
}

func compileOrigin(s string) (originPattern, error) {
	u, err := url.Parse(strings.ToLower(strings.TrimSpace(s)))
	if err != nil || u.Scheme == "" || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return originPattern{}, fmt.Errorf("%q is not an origin like https://chat.example.com or https://*.example.com", s)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return originPattern{}, fmt.Errorf("%q: scheme must be http or https", s)
	}
	if strings.Contains(strings.TrimPrefix(u.Host, "*."), "*") {
		return originPattern{}, fmt.Errorf("%q: only a leading *. wildcard is allowed", s)
	}
	return originPattern{scheme: u.Scheme, host: u.Host}, nil
}

func (p originPattern) match(scheme, host string) bool {
	if p.scheme != scheme {
		return false
	}
	if suffix, wild := strings.CutPrefix(p.host, "*"); wild {
		// "*.example.com" matches "a.example.com" and "a.b.example.com",
		// never "example.com" or "badexample.com".
		return len(host) > len(suffix) && strings.HasSuffix(host, suffix)
	}
	return host == p.host
}

// originChecker decides whether a browser may open a WebSocket. It guards
// against cross-site WebSocket hijacking: a page on another site cannot use
// a visitor's browser to talk to the gateway.
type originChecker struct {
	allowed []originPattern // empty: same host only
}

func newOriginChecker(patterns []string) (originChecker, error) {
	var oc originChecker
	for _, s := range patterns {
		p, err := compileOrigin(s)
		if err != nil {
			return originChecker{}, err
		}
		oc.allowed = append(oc.allowed, p)
	}
	return oc, nil
}

func (oc originChecker) check(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true // not a browser: origin checks protect browsers only
	}
	scheme, host, ok := parseOrigin(origin)
	if !ok {
		return false
	}
	if len(oc.allowed) == 0 {
		return host == strings.ToLower(r.Host)
	}
	for _, p := range oc.allowed {
		if p.match(scheme, host) {
			return true
		}
	}
	return false
}

// parseOrigin reads an Origin header as a browser writes it for a web page:
// http or https, a host with an optional port, and nothing else. Anything
// else (another scheme such as ftp: or file:, userinfo as in
// http://evil@host, a path, a query or a fragment, "null") is not a web
// page's origin and is refused, whatever the allowlist.
func parseOrigin(origin string) (scheme, host string, ok bool) {
	u, err := url.Parse(strings.ToLower(origin))
	if err != nil || u.Opaque != "" || u.User != nil || u.Host == "" ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return "", "", false
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", "", false
	}
	return u.Scheme, u.Host, true
}
