package auth

import (
	"crypto/subtle"

	"golang.org/x/crypto/bcrypt"

	"pfrouter/directory"
)

// dummyHash is compared against when the user does not exist, so an unknown
// user costs as much time as a wrong password and is not revealed by timing.
const dummyHash = "$2a$10$NxCtaKk1zo0EJDPl44nigeXdcujeMQW71EnkPEDo39NjqX06WQyR."

// checkPassword verifies a password against the user's bcrypt hash, or
// (demo configs) its plain password in constant time.
func checkPassword(u *directory.User, password string) bool {
	switch {
	case u == nil:
		_ = bcrypt.CompareHashAndPassword([]byte(dummyHash), []byte(password))
		return false
	case u.PasswordHash != "":
		return bcrypt.CompareHashAndPassword([]byte(u.PasswordHash), []byte(password)) == nil
	case u.Password != "":
		return subtle.ConstantTimeCompare([]byte(u.Password), []byte(password)) == 1
	default: // no password set: the account cannot log in
		_ = bcrypt.CompareHashAndPassword([]byte(dummyHash), []byte(password))
		return false
	}
}
