package auth

import (
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// maxKeys bounds a limiter's map: beyond it, a new key evicts another.
const maxKeys = 100_000

// limiter keeps one token bucket per key (a client address, an account)
// and forgets idle ones. It lives in one process: with several replicas,
// each keeps its own buckets.
type limiter struct {
	mu      sync.Mutex
	rate    rate.Limit
	burst   int
	max     int
	clients map[string]*client
	lastGC  time.Time
}

type client struct {
	lim  *rate.Limiter
	seen time.Time
}

func newLimiter(perSecond float64, burst int) *limiter {
	return &limiter{rate: rate.Limit(perSecond), burst: burst, max: maxKeys, clients: map[string]*client{}}
}

// addrKey is the bucket of a client address: an IPv4 address itself, an
// IPv6 address its /64 (one subscriber's usual allocation: a client must
// not get a fresh bucket per address it can take from its own /64).
func addrKey(addr string) string {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return addr
	}
	if a = a.Unmap(); a.Is4() {
		return a.String()
	}
	p, _ := a.Prefix(64)
	return p.String()
}

// evict makes room for one key when the map is full: it forgets a bucket
// that is full again (forgetting it changes nothing), or else whichever it
// met first (map order is random).
func (l *limiter) evict(now time.Time) {
	seen := 0
	var first string
	for k, c := range l.clients {
		if seen == 0 {
			first = k
		}
		if c.lim.TokensAt(now) >= float64(l.burst) {
			delete(l.clients, k)
			return
		}
		if seen++; seen == 64 {
			break
		}
	}
	delete(l.clients, first)
}

// allow reports whether key may proceed now, and if not, how long to wait.
func (l *limiter) allow(key string, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.lastGC) > time.Minute {
		for k, c := range l.clients {
			if now.Sub(c.seen) > 10*time.Minute {
				delete(l.clients, k)
			}
		}
		l.lastGC = now
	}
	c, ok := l.clients[key]
	if !ok {
		if len(l.clients) >= l.max {
			l.evict(now)
		}
		c = &client{lim: rate.NewLimiter(l.rate, l.burst)}
		l.clients[key] = c
	}
	c.seen = now
	r := c.lim.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// peek reports whether key has a token left now, taking none, and if not,
// how long until it has.
func (l *limiter) peek(key string, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	c, ok := l.clients[key]
	if !ok {
		return true, 0
	}
	r := c.lim.ReserveN(now, 1)
	d := r.DelayFrom(now)
	r.CancelAt(now)
	return d <= 0, d
}
