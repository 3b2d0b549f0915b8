package daemon

import (
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// maxCallers bounds the budget table; past it, the table starts afresh
// (a flood of distinct callers then gets at most one more burst each).
const maxCallers = 4096

// budgets hands each caller (uid, executable, parent executable) a token
// bucket of perMinute mints a minute, so that one runaway or hostile
// program cannot mint without bound.
type budgets struct {
	mu      sync.Mutex
	perMin  int
	callers map[string]*rate.Limiter
}

// allow reports whether peer may have one more token now.
func (b *budgets) allow(peer Peer, perMinute int, now time.Time) bool {
	if perMinute <= 0 {
		return true
	}
	key := strconv.Itoa(peer.UID) + "\x00" + peer.Exe + "\x00" + peer.ParentExe
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.callers == nil || b.perMin != perMinute || len(b.callers) >= maxCallers {
		b.callers, b.perMin = map[string]*rate.Limiter{}, perMinute
	}
	l := b.callers[key]
	if l == nil {
		l = rate.NewLimiter(rate.Limit(float64(perMinute)/60), perMinute)
		b.callers[key] = l
	}
	return l.AllowN(now, 1)
}
