package auth

import (
	"crypto/subtle"
	"sync"

	"golang.org/x/crypto/bcrypt"

	"pfrouter/directory"
)

// passwords checks login passwords so that a login for an unknown user
// (or one without a password) does the work a known user's wrong password
// does: one bcrypt comparison at the directory's cost when its users have
// password hashes, one constant-time comparison when they have plain
// (demo) passwords. Timing then does not tell user names apart (issue 14).
type passwords struct {
	// compare is bcrypt.CompareHashAndPassword; tests record the calls.
	compare func(hash, password []byte) error

	mu     sync.Mutex
	hashed bool   // most users have a bcrypt hash: unknown users cost one bcrypt
	cost   int    // the cost of the directory's hashes
	dummy  []byte // a bcrypt hash at cost of a password nobody uses
}

// dummyPassword is compared against for unknown users; nothing accepts it.
const dummyPassword = "pfrouter dummy password, never valid"

func newPasswords() *passwords {
	return &passwords{compare: bcrypt.CompareHashAndPassword, hashed: true, cost: bcrypt.DefaultCost}
}

// learn takes the directory's password scheme (hashed or plain, by
// majority) and bcrypt cost, so the dummy check costs what a real one does.
func (pw *passwords) learn(snap *directory.Snapshot) {
	hashed, plain, cost := 0, 0, bcrypt.DefaultCost
	for _, u := range snap.Users() {
		switch {
		case u.PasswordHash != "":
			if hashed == 0 {
				if c, err := bcrypt.Cost([]byte(u.PasswordHash)); err == nil {
					cost = c
				}
			}
			hashed++
		case u.Password != "":
			plain++
		}
	}
	pw.mu.Lock()
	defer pw.mu.Unlock()
	pw.hashed = hashed >= plain
	if pw.cost != cost || pw.dummy == nil {
		pw.cost, pw.dummy = cost, nil
	}
}

// dummyHash is the bcrypt hash unknown users are compared against, made
// once per cost.
func (pw *passwords) dummyHash() ([]byte, bool) {
	pw.mu.Lock()
	defer pw.mu.Unlock()
	if !pw.hashed {
		return nil, false
	}
	if pw.dummy == nil {
		h, err := bcrypt.GenerateFromPassword([]byte(dummyPassword), pw.cost)
		if err != nil {
			h, _ = bcrypt.GenerateFromPassword([]byte(dummyPassword), bcrypt.DefaultCost)
		}
		pw.dummy = h
	}
	return pw.dummy, true
}

// check verifies a password against the user's bcrypt hash or (demo
// configs) its plain password.
func (pw *passwords) check(u *directory.User, password string) bool {
	switch {
	case u != nil && u.PasswordHash != "":
		return pw.compare([]byte(u.PasswordHash), []byte(password)) == nil
	case u != nil && u.Password != "":
		return subtle.ConstantTimeCompare([]byte(u.Password), []byte(password)) == 1
	}
	// Unknown user, or no password set: cannot log in, at the same cost.
	if h, ok := pw.dummyHash(); ok {
		_ = pw.compare(h, []byte(password))
	} else {
		_ = subtle.ConstantTimeCompare([]byte(dummyPassword), []byte(password))
	}
	return false
}
