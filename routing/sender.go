package routing

import (
	"strings"

	"pfrouter/directory"
)

// NormalizeSender puts an address into the form sender lists are matched in
// (R11): lower case, no trailing dot on the domain, no subaddress
// ("spam+x@example.com" is "spam@example.com"). Without it a sender on a
// reject list gets through as "SPAM@EXAMPLE.COM." or "spam+x@...". Lists
// are matched case-insensitively even on domains whose local parts are
// case-sensitive: a sender list names people, not mailboxes.
func NormalizeSender(addr string) string {
	a := strings.ToLower(strings.TrimSpace(addr))
	a = strings.TrimSuffix(strings.TrimSuffix(a, ">"), ".")
	a = strings.TrimPrefix(a, "<")
	at := strings.LastIndexByte(a, '@')
	if at < 0 {
		return a
	}
	local, domain := a[:at], strings.TrimSuffix(a[at+1:], ".")
	if plus := strings.IndexByte(local, '+'); plus > 0 {
		local = local[:plus]
	}
	return local + "@" + domain
}

// senderMatches reports whether a sender list entry (an address or a user
// name) names the sender.
func senderMatches(list []string, sender, senderUser string) bool {
	ns := NormalizeSender(sender)
	for _, a := range list {
		if strings.Contains(a, "@") {
			if sender != "" && NormalizeSender(a) == ns {
				return true
			}
			continue
		}
		if senderUser != "" && strings.EqualFold(a, senderUser) {
			return true
		}
	}
	return false
}

// CheckSender applies the rule for an authenticated user's MAIL FROM: it
// must be one of that user's own addresses (compared as NormalizeSender
// does, so a subaddress of one's own address is fine). The null sender is
// refused too: a user's mail can always be reported back to the user.
func CheckSender(snap *directory.Snapshot, user, sender string) *Check {
	u := snap.User(user)
	if u == nil {
		return &Check{"5.7.1", "authenticated user " + user + " is not in the directory", true}
	}
	ns := NormalizeSender(sender)
	if ns != "" {
		for _, a := range u.Addresses {
			if NormalizeSender(a) == ns {
				return nil
			}
		}
	}
	return &Check{"5.7.1", "sender address <" + sender + "> is not one of " + user + "'s addresses", true}
}
