package console

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// cookieName is the session cookie. It carries only a random id: the
// admin token stays in the server-side session map.
const cookieName = "pfrouter_console"

// maxSessions bounds the session map, so logins cannot grow it without end.
const maxSessions = 1000

type session struct {
	id      string
	csrf    string // per-session token every state-changing form carries
	token   string // the admin bearer token, used to call the admin APIs
	created time.Time
	seen    time.Time
	flash   string // one message shown on the next page
}

type sessions struct {
	mu   sync.Mutex
	m    map[string]*session
	idle time.Duration // a session unused this long ends
	max  time.Duration // a session ends this long after login regardless
	now  func() time.Time
}

func newSessions(idle, max time.Duration, now func() time.Time) *sessions {
	return &sessions{m: map[string]*session{}, idle: idle, max: max, now: now}
}

func randomID() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b)
}

// create starts a session for a checked token.
func (s *sessions) create(token string) *session {
	now := s.now()
	ss := &session{id: randomID(), csrf: randomID(), token: token, created: now, seen: now}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweepLocked(now)
	if len(s.m) >= maxSessions {
		// Full even after expiry: the oldest session makes room.
		var oldest *session
		for _, o := range s.m {
			if oldest == nil || o.seen.Before(oldest.seen) {
				oldest = o
			}
		}
		delete(s.m, oldest.id)
	}
	s.m[ss.id] = ss
	return ss
}

func (s *sessions) expired(ss *session, now time.Time) bool {
	return now.Sub(ss.seen) > s.idle || now.Sub(ss.created) > s.max
}

func (s *sessions) sweepLocked(now time.Time) {
	for id, ss := range s.m {
		if s.expired(ss, now) {
			delete(s.m, id)
		}
	}
}

// get returns the live session of the request's cookie and marks it used.
func (s *sessions) get(r *http.Request) *session {
	c, err := r.Cookie(cookieName)
	if err != nil || c.Value == "" {
		return nil
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, ok := s.m[c.Value]
	if !ok {
		return nil
	}
	if s.expired(ss, now) {
		delete(s.m, ss.id)
		return nil
	}
	ss.seen = now
	return ss
}

func (s *sessions) remove(id string) {
	s.mu.Lock()
	delete(s.m, id)
	s.mu.Unlock()
}

// setFlash and takeFlash carry one message across a redirect without
// putting it in the URL.
func (s *sessions) setFlash(ss *session, msg string) {
	s.mu.Lock()
	ss.flash = msg
	s.mu.Unlock()
}

func (s *sessions) takeFlash(ss *session) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := ss.flash
	ss.flash = ""
	return f
}

// cookie is the session cookie: HttpOnly, SameSite=Strict, scoped to the
// console, and Secure when the request came over TLS (the admin listener
// is plain HTTP today, where a Secure cookie would never be sent back).
func cookie(r *http.Request, value string, maxAge int) *http.Cookie {
	return &http.Cookie{Name: cookieName, Value: value, Path: Prefix, MaxAge: maxAge,
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode}
}

func scheme(r *http.Request) string {
	if r.TLS != nil {
		return "https"
	}
	return "http"
}

// sameOrigin is the Origin check of every POST: the request's Origin (or,
// without one, its Referer) must be this console's own scheme and host. A
// POST with neither is refused: browsers send Origin on form posts.
func sameOrigin(r *http.Request) bool {
	want := scheme(r) + "://" + r.Host
	if o := r.Header.Get("Origin"); o != "" {
		return o == want
	}
	if ref := r.Header.Get("Referer"); ref != "" {
		u, err := url.Parse(ref)
		return err == nil && u.Scheme+"://"+u.Host == want
	}
	return false
}

// csrfOK compares the form's CSRF token with the session's in constant time.
func csrfOK(r *http.Request, ss *session) bool {
	got := r.PostFormValue("csrf")
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(ss.csrf)) == 1
}

// loginLimit bounds wrong-token guesses per client address: after
// maxFailures within failWindow, logins from that address are refused
// until the window passes. The map is bounded too.
type loginLimit struct {
	mu    sync.Mutex
	fails map[string][]time.Time
	now   func() time.Time
}

const (
	maxFailures = 10
	failWindow  = time.Minute
	maxTracked  = 10000
)

func (l *loginLimit) recent(host string, now time.Time) []time.Time {
	var keep []time.Time
	for _, t := range l.fails[host] {
		if now.Sub(t) < failWindow {
			keep = append(keep, t)
		}
	}
	return keep
}

// blocked reports whether host has used up its failures.
func (l *loginLimit) blocked(host string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.recent(host, l.now())) >= maxFailures
}

func (l *loginLimit) fail(host string) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.fails) >= maxTracked {
		for h := range l.fails {
			if len(l.recent(h, now)) == 0 {
				delete(l.fails, h)
			}
		}
		if len(l.fails) >= maxTracked {
			return // still full: rely on the per-address entries kept
		}
	}
	l.fails[host] = append(l.recent(host, now), now)
}
