package auth

import (
	"context"
	"net"
	"strings"

	"pfrouter/config"
)

// Mechanism names as the protocols pass them in Request.Mechanism.
const (
	MechLogin    = "LOGIN" // IMAP LOGIN command
	MechUser     = "USER"  // POP3 USER/PASS
	MechPlain    = "PLAIN" // SASL PLAIN
	MechSCRAM256 = "SCRAM-SHA-256"
	// MechExternal is SASL EXTERNAL: the identity is the TLS client
	// certificate. Only peer servers use it (servercred), with TLS.
	MechExternal = "EXTERNAL"
)

// plainMechanism reports whether a mechanism sends the password itself.
func plainMechanism(mech string) bool {
	switch strings.ToUpper(mech) {
	case MechLogin, MechUser, MechPlain:
		return true
	}
	return false
}

// knownMechanism reports whether the policy can decide a mechanism.
func knownMechanism(mech string) bool {
	return plainMechanism(mech) || strings.EqualFold(mech, MechSCRAM256) || strings.EqualFold(mech, MechExternal)
}

// allowed applies the login type (A2) to one mechanism.
func allowed(loginType, mech string, tls bool) bool {
	if !knownMechanism(mech) {
		return false
	}
	if tls {
		return true
	}
	if strings.EqualFold(mech, MechExternal) {
		return false // no certificate without TLS
	}
	switch loginType {
	case config.LoginPlainText:
		return true
	case config.LoginPlainTextAuth:
		return !plainMechanism(mech) // challenge-response only before TLS
	default: // SecureLogin, and anything unknown: fail closed
		return false
	}
}

// Allowed reports whether the login type lets a client use mechanism now
// (A2). Protocols use it to build CAPABILITY/CAPA and to refuse before the
// client sends a password.
func (p *Policy) Allowed(mech string, tls bool) bool {
	return allowed(p.access().LoginType, mech, tls)
}

// PlainAllowed reports whether plain credentials (LOGIN, USER/PASS, SASL
// PLAIN) are allowed now: false means IMAP advertises LOGINDISABLED.
func (p *Policy) PlainAllowed(tls bool) bool { return p.Allowed(MechPlain, tls) }

// SASLMechanisms lists the SASL mechanisms to advertise now, in preference
// order.
func (p *Policy) SASLMechanisms(tls bool) []string {
	var out []string
	for _, m := range []string{MechSCRAM256, MechPlain} {
		if p.Allowed(m, tls) {
			out = append(out, m)
		}
	}
	return out
}

// Check applies what needs no credentials — the login type (A2) — so a
// protocol can refuse a mechanism before the client sends a password. A
// refusal is an *Error and is logged. The failed-login lockout waits for
// Authenticate: until the credentials arrive, a front end proxying for a
// user cannot be told from a client, and its own address is never locked.
func (p *Policy) Check(ctx context.Context, proto Protocol, mech string, tls bool, remote net.Addr) error {
	return p.precheck(ctx, proto, mech, tls, nil, "")
}
