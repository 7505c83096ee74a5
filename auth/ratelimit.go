package auth

import (
	"net"
	"sync"
	"time"
)

// limiter counts failed logins per client IP. After max failures within
// window the address is locked out for lockout; each failure is answered
// after a growing delay, so guessing is slow even below the limit.
type limiter struct {
	max     int
	window  time.Duration
	lockout time.Duration
	now     func() time.Time

	mu      sync.Mutex
	clients map[string]*clientFailures
}

type clientFailures struct {
	times       []time.Time // failures inside the window, oldest first
	lockedUntil time.Time
}

// maxTracked bounds the table; past it, stale entries are pruned.
const maxTracked = 10000

func newLimiter(max int, window, lockout time.Duration, now func() time.Time) *limiter {
	return &limiter{max: max, window: window, lockout: lockout, now: now, clients: map[string]*clientFailures{}}
}

// clientKey is the IP of a remote address; "" (not limited) when unknown.
func clientKey(remote net.Addr) string {
	if remote == nil {
		return ""
	}
	switch a := remote.(type) {
	case *net.TCPAddr:
		return a.IP.String()
	}
	host, _, err := net.SplitHostPort(remote.String())
	if err != nil {
		return remote.String()
	}
	return host
}

// locked reports whether the client is locked out, and until when.
func (l *limiter) locked(key string) (bool, time.Time) {
	if key == "" || l.max <= 0 {
		return false, time.Time{}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.clients[key]
	if c == nil {
		return false, time.Time{}
	}
	now := l.now()
	if now.Before(c.lockedUntil) {
		return true, c.lockedUntil
	}
	return false, time.Time{}
}

// fail records a failure and returns how many failures the client has in
// the window (including this one).
func (l *limiter) fail(key string) int {
	if key == "" || l.max <= 0 {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if len(l.clients) >= maxTracked {
		l.pruneLocked(now)
	}
	c := l.clients[key]
	if c == nil {
		c = &clientFailures{}
		l.clients[key] = c
	}
	c.times = append(trimBefore(c.times, now.Add(-l.window)), now)
	if len(c.times) >= l.max {
		c.lockedUntil = now.Add(l.lockout)
		c.times = c.times[:0]
		return l.max
	}
	return len(c.times)
}

func trimBefore(ts []time.Time, cutoff time.Time) []time.Time {
	i := 0
	for i < len(ts) && ts[i].Before(cutoff) {
		i++
	}
	return append(ts[:0], ts[i:]...)
}

func (l *limiter) pruneLocked(now time.Time) {
	for k, c := range l.clients {
		c.times = trimBefore(c.times, now.Add(-l.window))
		if len(c.times) == 0 && !now.Before(c.lockedUntil) {
			delete(l.clients, k)
		}
	}
}
