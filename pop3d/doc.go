// Package pop3d is pfrouter's POP3 front end (SPEC A1, A5, A6): the RFC 1939
// wire protocol with CAPA (RFC 2449), STLS (RFC 2595), AUTH PLAIN (RFC 5034)
// and response codes (RFC 2449, RFC 3206).
//
// The protocol code decides nothing about who may log in or where a mailbox
// lives. Those decisions sit behind the Authenticator seam; Front (front.go)
// implements it for a pfrouter server with the auth policy (A2–A4) and the
// message store: a login yields either
// a local Maildrop (the Inbox snapshot this package serves, deleting only in
// the UPDATE state after QUIT) or an already-authenticated connection to the
// POP3 server that holds the mailbox, to which this package relays bytes
// (A5). DialAuthenticated builds such a connection.
//
// Neighbours: auth decides logins; store holds the Inbox Front serves as a
// Maildrop; imapfront serves the same mailboxes over IMAP4; smtpd and qmgr
// deliver the mail that appears here; node wires a Front into each server.
package pop3d
