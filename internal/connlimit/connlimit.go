// Package connlimit counts open sessions per client IP and per user for
// the access protocols (imapfront, pop3d), so one address or one account
// cannot hold every connection a server can take (issue 14: 2,000 idle
// connections each were accepted). It decides only; the protocols say no
// in their own words (IMAP "* BYE", POP3 "-ERR [SYS/TEMP]").
package connlimit

import (
	"net"
	"sync"
)

// Defaults: generous for NAT'd offices and for clients that open a
// connection per folder (IDLE), far below what exhausts a server.
const (
	DefaultPerIP   = 100
	DefaultPerUser = 50
)

// Limiter counts sessions. The zero value is not usable; use New.
type Limiter struct {
	perIP, perUser int

	mu    sync.Mutex
	ips   map[string]int
	users map[string]int
}

// New returns a Limiter; a limit of 0 takes the default, < 0 means none.
func New(perIP, perUser int) *Limiter {
	if perIP == 0 {
		perIP = DefaultPerIP
	}
	if perUser == 0 {
		perUser = DefaultPerUser
	}
	return &Limiter{perIP: perIP, perUser: perUser, ips: map[string]int{}, users: map[string]int{}}
}

// IP admits one more session from addr's IP. ok=false: refuse it. When
// ok, release must be called once when the session ends.
func (l *Limiter) IP(addr net.Addr) (release func(), ok bool) {
	return l.acquire(l.ips, ipOf(addr), l.perIP)
}

// User admits one more session of user (a canonical user name).
func (l *Limiter) User(user string) (release func(), ok bool) {
	return l.acquire(l.users, user, l.perUser)
}

func (l *Limiter) acquire(m map[string]int, key string, limit int) (func(), bool) {
	if key == "" || limit < 0 {
		return func() {}, true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if m[key] >= limit {
		return nil, false
	}
	m[key]++
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			if m[key]--; m[key] <= 0 {
				delete(m, key)
			}
		})
	}, true
}

func ipOf(addr net.Addr) string {
	if addr == nil {
		return ""
	}
	if a, ok := addr.(*net.TCPAddr); ok {
		return a.IP.String()
	}
	host, _, err := net.SplitHostPort(addr.String())
	if err != nil {
		return ""
	}
	return host
}
