package gateway

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// sendBudgets holds the send budgets shared by all connections of one user
// (--auth jwt) or of one client address (anonymous users, counted like the
// per-IP limits). Each connection also has its own budget (--send-rate);
// a send needs a token from both. Because the shared budget outlives any one
// connection, a client that reconnects in a loop cannot get a fresh burst
// each time, and many connections from one user or address send no faster
// together than one may.
//
// Memory is bounded: a budget is kept while a connection uses it, and
// after the last one closes only until it has refilled completely (at
// most burst/rate, 2 s with the defaults). A full budget is the same as a
// new one, so forgetting it then loses nothing. Idle budgets are swept at
// most once per sweepEvery, from acquire and release: no goroutine of its own.
type sendBudgets struct {
	// static after construction
	rate  rate.Limit
	burst int
	now   func() time.Time

	mu        sync.Mutex
	budgets   map[string]*sendBudget // guarded by mu
	lastSweep time.Time              // guarded by mu
}

// sendBudget is one shared budget. lim is safe for concurrent use; refs is
// guarded by sendBudgets.mu.
type sendBudget struct {
	lim  *rate.Limiter
	refs int
}

// sweepEvery bounds how often idle budgets are looked for.
const sweepEvery = time.Second

func newSendBudgets(r float64, burst int, now func() time.Time) *sendBudgets {
	if now == nil {
		now = time.Now
	}
	return &sendBudgets{rate: rate.Limit(r), burst: burst, now: now, budgets: make(map[string]*sendBudget)}
}

// budgetKey is the key of the budget shared by a connection: its user with
// a token, its address (ipLimitKey) without.
func budgetKey(userKey, ipKey string) string {
	if userKey != "" {
		return "user " + userKey
	}
	return "addr " + ipKey
}

// acquire returns the budget for key, creating it if needed; the caller
// must release(key) once the connection is gone. r and burst, when
// positive, replace the defaults (a token's send_rate and send_burst).
func (b *sendBudgets) acquire(key string, r float64, burst int) *rate.Limiter {
	lr, lb := b.rate, b.burst
	if r > 0 {
		lr = rate.Limit(r)
	}
	if burst > 0 {
		lb = burst
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	b.sweepLocked(now)
	sb := b.budgets[key]
	if sb == nil {
		sb = &sendBudget{lim: rate.NewLimiter(lr, lb)}
		b.budgets[key] = sb
	} else if sb.lim.Limit() != lr || sb.lim.Burst() != lb {
		// The newest token's limits apply to all of the user's connections.
		sb.lim.SetLimitAt(now, lr)
		sb.lim.SetBurstAt(now, lb)
	}
	sb.refs++
	return sb.lim
}

// release drops one reference to key's budget.
func (b *sendBudgets) release(key string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	if sb := b.budgets[key]; sb != nil {
		sb.refs--
		if sb.refs == 0 && full(sb.lim, now) {
			delete(b.budgets, key)
		}
	}
	b.sweepLocked(now)
}

// sweepLocked forgets the idle budgets that have refilled. b.mu must be
// held.
func (b *sendBudgets) sweepLocked(now time.Time) {
	if now.Sub(b.lastSweep) < sweepEvery {
		return
	}
	b.lastSweep = now
	for key, sb := range b.budgets {
		if sb.refs == 0 && full(sb.lim, now) {
			delete(b.budgets, key)
		}
	}
}

// len reports how many budgets are held.
func (b *sendBudgets) len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.budgets)
}

func full(lim *rate.Limiter, now time.Time) bool {
	return lim.TokensAt(now) >= float64(lim.Burst())
}
