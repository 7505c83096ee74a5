package auth

import "fmt"

// Kind classifies a refused login so each protocol can print its own
// response code for it.
type Kind int

const (
	// AuthFailed: wrong user name or password, or a malformed request.
	AuthFailed Kind = iota + 1
	// PrivacyRequired: the login type forbids this mechanism without TLS (A2).
	PrivacyRequired
	// Disabled: POP3 or IMAP4 is turned off for this user (A3).
	Disabled
	// Refused: the account may not log in over this protocol at all
	// (guest, anonymous, admin: A4), or a server login does not fit.
	Refused
	// CrossSite: the mailbox is in another site and cross_site is refuse (A5).
	CrossSite
	// RateLimited: too many failures from this client address.
	RateLimited
	// TempFail: a transient problem on our side (no directory, no listener).
	TempFail
)

var kindNames = map[Kind]string{
	AuthFailed: "auth_failed", PrivacyRequired: "privacy_required", Disabled: "disabled",
	Refused: "refused", CrossSite: "cross_site", RateLimited: "rate_limited", TempFail: "temp_fail",
}

func (k Kind) String() string {
	if s, ok := kindNames[k]; ok {
		return s
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// Error is a refused login. Msg is safe to show to the client: it never says
// whether a user exists when the password was wrong.
type Error struct {
	Kind Kind
	Msg  string
}

func (e *Error) Error() string { return "login refused (" + e.Kind.String() + "): " + e.Msg }

// IMAPCode is the RFC 5530 response code an IMAP server prints with NO.
func (e *Error) IMAPCode() string {
	switch e.Kind {
	case PrivacyRequired:
		return "PRIVACYREQUIRED"
	case Disabled, Refused, CrossSite:
		return "CONTACTADMIN"
	case RateLimited, TempFail:
		return "UNAVAILABLE"
	default:
		return "AUTHENTICATIONFAILED"
	}
}

// POP3Code is the RFC 3206 response code a POP3 server prints with -ERR.
func (e *Error) POP3Code() string {
	switch e.Kind {
	case RateLimited, TempFail:
		return "SYS/TEMP"
	default:
		return "AUTH"
	}
}

func refuse(k Kind, format string, args ...any) *Error {
	return &Error{Kind: k, Msg: fmt.Sprintf(format, args...)}
}
