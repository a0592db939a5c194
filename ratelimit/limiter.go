package ratelimit

import (
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// maxKeys bounds the addresses a Limiter remembers; past it, buckets that
// have refilled (idle clients) are forgotten first, then arbitrary ones.
const maxKeys = 100_000

// Limiter is a token bucket per key (client address).
type Limiter struct {
	every time.Duration
	burst int
	now   func() time.Time

	mu      sync.Mutex
	buckets map[string]*rate.Limiter
}

// New returns a limiter allowing burst requests at once per key, refilled one
// every every. A zero every or burst means no limit (Allow always true).
func New(every time.Duration, burst int) *Limiter {
	return &Limiter{every: every, burst: burst, now: time.Now, buckets: map[string]*rate.Limiter{}}
}

// SetClock injects the clock (tests).
func (l *Limiter) SetClock(now func() time.Time) { l.now = now }

// IPv6PrefixLen is how much of an IPv6 client address names the client: one
// network (a /64 is what a single host or home is given), so that a client
// cannot take a fresh bucket for each of its 2^64 addresses.
const IPv6PrefixLen = 64

// Allow takes a token for key (a client address); when there is none it
// reports how long until there will be one. IPv6 addresses share the bucket
// of their /64.
func (l *Limiter) Allow(key string) (ok bool, retryAfter time.Duration) {
	if l == nil || l.every <= 0 || l.burst <= 0 {
		return true, 0
	}
	key = bucketKey(key)
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b, found := l.buckets[key]
	if !found {
		if len(l.buckets) >= maxKeys {
			l.evict(now)
		}
		b = rate.NewLimiter(rate.Every(l.every), l.burst)
		l.buckets[key] = b
	}
	r := b.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// bucketKey is the bucket of a client address: an IPv6 address's /64
// (IPv4-mapped ones are IPv4), anything else as it is.
func bucketKey(key string) string {
	a, err := netip.ParseAddr(key)
	if err != nil || !a.Unmap().Is6() {
		return key
	}
	p, err := a.WithZone("").Prefix(IPv6PrefixLen)
	if err != nil {
		return key
	}
	return p.String()
}

// evict forgets full buckets (nothing to remember), or half of all when none is.
func (l *Limiter) evict(now time.Time) {
	for k, b := range l.buckets {
		if b.TokensAt(now) >= float64(l.burst) {
			delete(l.buckets, k)
		}
	}
	for k := range l.buckets {
		if len(l.buckets) < maxKeys/2 {
			return
		}
		delete(l.buckets, k)
	}
}
