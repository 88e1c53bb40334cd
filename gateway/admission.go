package gateway

import (
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/time/rate"

	"github.com/chatgate/chatgate/gateway/observe"
)

// admission decides, before the upgrade, whether a connection may open.
type admission struct {
	// static after construction
	maxConns   int64
	maxPerIP   int
	maxPerUser int
	handshake  *rate.Limiter

	conns atomic.Int64

	mu      sync.Mutex
	perIP   map[string]int // guarded by mu; open connections per client IP
	perUser map[string]int // guarded by mu; open connections per authenticated user
}

func newAdmission(cfg *Config) *admission {
	return &admission{
		maxConns:   int64(cfg.MaxConns),
		maxPerIP:   cfg.MaxConnsPerIP,
		maxPerUser: cfg.MaxConnsPerUser,
		handshake:  rate.NewLimiter(rate.Limit(cfg.HandshakeRate), cfg.HandshakeBurst),
		perIP:      make(map[string]int),
		perUser:    make(map[string]int),
	}
}

// admit reserves a slot for ip and (when authenticated) user. On success
// the caller must call release(ip, user) exactly once; on failure it gets
// the reject reason and the HTTP status.
func (a *admission) admit(ip, user string) (ok bool, reason observe.RejectReason, status int) {
	if a.conns.Add(1) > a.maxConns {
		a.conns.Add(-1)
		return false, observe.RejectCapacity, http.StatusServiceUnavailable
	}
	a.mu.Lock()
	if a.perIP[ip] >= a.maxPerIP {
		a.mu.Unlock()
		a.conns.Add(-1)
		return false, observe.RejectPerIP, http.StatusTooManyRequests
	}
	if user != "" && a.perUser[user] >= a.maxPerUser {
		a.mu.Unlock()
		a.conns.Add(-1)
		return false, observe.RejectPerUser, http.StatusTooManyRequests
	}
	a.perIP[ip]++
	if user != "" {
		a.perUser[user]++
	}
	a.mu.Unlock()
	return true, "", 0
}

// allowHandshake spends one token of the gateway-wide handshake rate. It
// runs before token verification, so a flood of bad tokens is throttled too.
func (a *admission) allowHandshake() bool { return a.handshake.Allow() }

func (a *admission) release(ip, user string) {
	a.mu.Lock()
	decrement(a.perIP, ip)
	if user != "" {
		decrement(a.perUser, user)
	}
	a.mu.Unlock()
	a.conns.Add(-1)
}

func decrement(m map[string]int, key string) {
	if n := m[key] - 1; n > 0 {
		m[key] = n
	} else {
		delete(m, key)
	}
}

// clientIP is the address --max-conns-per-ip counts: the TCP peer, unless
// the peer is one of the trusted proxies. Then X-Forwarded-For is read from
// the right (the entry the nearest proxy appended) past every trusted proxy
// to the first address that is not one: entries further left were written by
// the client and could be anything. Without trusted proxies the header is
// ignored (docs/operations.md, "Behind a proxy").
func clientIP(r *http.Request, trusted []netip.Prefix) string {
	peer := peerAddr(r.RemoteAddr)
	if !peer.IsValid() {
		return r.RemoteAddr
	}
	if !isTrusted(peer, trusted) {
		return peer.String()
	}
	nearest := peer
	hops := r.Header.Values("X-Forwarded-For")
	for i := len(hops) - 1; i >= 0; i-- {
		entries := strings.Split(hops[i], ",")
		for j := len(entries) - 1; j >= 0; j-- {
			a := forwardedAddr(strings.TrimSpace(entries[j]))
			if !a.IsValid() {
				// A trusted proxy wrote something unreadable: stop at the
				// last address known to be real.
				return nearest.String()
			}
			if !isTrusted(a, trusted) {
				return a.String()
			}
			nearest = a
		}
	}
	return nearest.String()
}

// ipLimitKey is the key under which the per-IP limits count a client
// address (from clientIP): an IPv4 address as it is, an IPv6 address by its
// leading v6Bits bits (--ipv6-prefix-len, default 64), since one IPv6 user
// commonly holds a whole /64 and can pick a new address in it for every
// connection. Anything that is not an address is its own key.
func ipLimitKey(ip string, v6Bits int) string {
	a, err := netip.ParseAddr(ip)
	if err != nil || !a.Is6() || a.Is4In6() || v6Bits >= 128 {
		return ip
	}
	p, err := a.WithZone("").Prefix(v6Bits)
	if err != nil {
		return ip
	}
	return p.String()
}

// peerAddr parses a RemoteAddr ("ip:port").
func peerAddr(remote string) netip.Addr {
	if ap, err := netip.ParseAddrPort(remote); err == nil {
		return ap.Addr().Unmap()
	}
	a, _ := netip.ParseAddr(remote)
	return a.Unmap()
}

// forwardedAddr parses an X-Forwarded-For entry: an address, or an address
// with a port as some proxies write it.
func forwardedAddr(s string) netip.Addr {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap()
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}

func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// reject answers a refused upgrade with status, a Retry-After for the
// retryable ones, and a short text.
func reject(w http.ResponseWriter, status int, retryAfterSec int, msg string) {
	if retryAfterSec > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(retryAfterSec))
	}
	http.Error(w, msg, status)
}
