package gateway

import (
	"net"
	"net/http"
	"strconv"
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

// clientIP is the TCP peer's address; the gateway does not trust
// X-Forwarded-For (see docs/operations.md).
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// reject answers a refused upgrade with status, a Retry-After for the
// retryable ones, and a short text.
func reject(w http.ResponseWriter, status int, retryAfterSec int, msg string) {
	if retryAfterSec > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(retryAfterSec))
	}
	http.Error(w, msg, status)
}
