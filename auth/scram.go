package auth

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"sync"

	"github.com/xdg-go/scram"

	"pfrouter/directory"
)

// scramStore keeps each user's SCRAM-SHA-256 stored credentials (salt,
// iterations, StoredKey, ServerKey), never the password. Users with a plain
// password get theirs when the directory is loaded; users with a bcrypt
// hash get theirs at their first successful password login (a bcrypt hash
// cannot be turned into SCRAM keys). An entry is tied to a fingerprint of
// the directory's password field, so a changed password drops it.
type scramStore struct {
	iters int
	key   []byte // per-process HMAC key for fingerprints and decoy salts

	mu    sync.Mutex
	creds map[string]scramEntry
}

type scramEntry struct {
	source [sha256.Size]byte
	cred   scram.StoredCredentials
}

func newSCRAMStore(iters int) *scramStore {
	if iters <= 0 {
		iters = 4096
	}
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	return &scramStore{iters: iters, key: key, creds: map[string]scramEntry{}}
}

func (s *scramStore) mac(parts ...string) [sha256.Size]byte {
	m := hmac.New(sha256.New, s.key)
	for _, p := range parts {
		m.Write([]byte(p))
		m.Write([]byte{0})
	}
	var out [sha256.Size]byte
	copy(out[:], m.Sum(nil))
	return out
}

func (s *scramStore) fingerprint(u *directory.User) [sha256.Size]byte {
	return s.mac("source", u.Name, u.PasswordHash, u.Password)
}

func (s *scramStore) derive(user, password string) (scram.StoredCredentials, error) {
	c, err := scram.SHA256.NewClient(user, password, "")
	if err != nil {
		if c, err = scram.SHA256.NewClientUnprepped(user, password, ""); err != nil {
			return scram.StoredCredentials{}, err
		}
	}
	salt := make([]byte, 16)
	_, _ = rand.Read(salt)
	return c.GetStoredCredentialsWithError(scram.KeyFactors{Salt: string(salt), Iters: s.iters})
}

// preload derives credentials for users with a plain password.
func (s *scramStore) preload(snap *directory.Snapshot) {
	for _, u := range snap.Users() {
		if u.Password != "" {
			_, _ = s.lookup(u)
		}
	}
}

// learn stores credentials from a password just proven by bcrypt.
func (s *scramStore) learn(u *directory.User, password string) {
	fp := s.fingerprint(u)
	s.mu.Lock()
	e, ok := s.creds[u.Name]
	s.mu.Unlock()
	if ok && e.source == fp {
		return
	}
	cred, err := s.derive(u.Name, password)
	if err != nil {
		return
	}
	s.mu.Lock()
	s.creds[u.Name] = scramEntry{source: fp, cred: cred}
	s.mu.Unlock()
}

var errNoSCRAM = errors.New("no SCRAM credential for this user yet: log in once with a password over TLS")

// lookup returns a user's credentials, deriving them from a plain password
// when missing or stale.
func (s *scramStore) lookup(u *directory.User) (scram.StoredCredentials, error) {
	fp := s.fingerprint(u)
	s.mu.Lock()
	e, ok := s.creds[u.Name]
	s.mu.Unlock()
	if ok && e.source == fp {
		return e.cred, nil
	}
	if u.Password == "" {
		return scram.StoredCredentials{}, errNoSCRAM
	}
	cred, err := s.derive(u.Name, u.Password)
	if err != nil {
		return scram.StoredCredentials{}, fmt.Errorf("derive SCRAM credential for %s: %w", u.Name, err)
	}
	s.mu.Lock()
	s.creds[u.Name] = scramEntry{source: fp, cred: cred}
	s.mu.Unlock()
	return cred, nil
}

// decoy returns credentials no password matches, with a salt stable per
// name, so an unknown user fails at the proof like a wrong password
// instead of revealing itself at the first step.
func (s *scramStore) decoy(name string) scram.StoredCredentials {
	salt := s.mac("decoy-salt", name)
	key := s.mac("decoy-key", name)
	return scram.StoredCredentials{KeyFactors: scram.KeyFactors{Salt: string(salt[:16]), Iters: s.iters},
		StoredKey: key[:], ServerKey: key[:]}
}

// SCRAMConversation is the server side of one SCRAM-SHA-256 exchange
// (RFC 5802, RFC 7677). The protocol feeds it the client's messages
// (decoded from base64) and sends back what Step returns.
type SCRAMConversation struct {
	p     *Policy
	req   Request
	conv  *scram.ServerConversation
	snap  *directory.Snapshot
	user  *directory.User // the user the client named, nil if unknown
	dec   Decision
	steps int
	ok    bool
}

// SCRAM starts a SCRAM-SHA-256 conversation. It refuses at once (an *Error)
// when the client is rate limited or the login type forbids SCRAM now.
func (p *Policy) SCRAM(ctx context.Context, proto Protocol, tls bool, remote net.Addr) (*SCRAMConversation, error) {
	if err := p.precheck(ctx, proto, MechSCRAM256, tls, remote, ""); err != nil {
		return nil, err
	}
	snap := p.snapshot()
	r := Request{Protocol: proto, Mechanism: MechSCRAM256, TLS: tls, Remote: remote}
	if snap == nil {
		return nil, p.refused(r, refuse(TempFail, "directory not available"), "no directory")
	}
	c := &SCRAMConversation{p: p, req: r, snap: snap}
	srv, err := scram.SHA256.NewServer(c.lookup)
	if err != nil {
		return nil, p.refused(r, refuse(TempFail, "SCRAM unavailable"), err.Error())
	}
	c.conv = srv.NewConversation()
	return c, nil
}

func (c *SCRAMConversation) lookup(name string) (scram.StoredCredentials, error) {
	c.req.Username = name
	u := lookupUser(c.snap, name)
	if u == nil {
		return c.p.scram.decoy(name), nil
	}
	cred, err := c.p.scram.lookup(u)
	if err != nil {
		return c.p.scram.decoy(name), nil //nolint:nilerr // fail at the proof, like a wrong password
	}
	c.user = u
	return cred, nil
}

// Step takes the client's next message and returns the server's answer.
// After the second step Done is true; a nil error then means the login is
// accepted (Decision) and the answer is the server signature ("v=...") the
// client must still see. Any error is an *Error to answer with NO/-ERR.
func (c *SCRAMConversation) Step(ctx context.Context, msg string) (string, error) {
	c.steps++
	switch c.steps {
	case 1:
		out, err := c.conv.Step(msg)
		if err != nil {
			return "", c.p.failed(ctx, c.req, "bad SCRAM client-first message: "+err.Error())
		}
		if az := c.conv.AuthzID(); az != "" {
			if a := lookupUser(c.snap, az); a == nil || c.user == nil || a.Name != c.user.Name {
				return "", c.p.failed(ctx, c.req, "authorization identity "+az+" is not the user")
			}
		}
		return out, nil
	case 2:
		out, err := c.conv.Step(msg)
		if err != nil || !c.conv.Valid() || c.user == nil {
			reason := "wrong SCRAM proof"
			if c.user == nil {
				reason = "unknown user or no SCRAM credential"
			}
			return "", c.p.failed(ctx, c.req, reason)
		}
		// The proof is right: now the account and location rules.
		d, err := c.p.admit(c.req, c.snap, c.user, "")
		if err != nil {
			return "", err
		}
		c.dec, c.ok = d, true
		return out, nil
	default:
		return "", refuse(AuthFailed, "SCRAM conversation already finished")
	}
}

// Done reports whether the exchange is over (accepted or not).
func (c *SCRAMConversation) Done() bool { return c.steps >= 2 }

// Decision is the accepted login; ok is false until Step accepted it.
func (c *SCRAMConversation) Decision() (Decision, bool) { return c.dec, c.ok }
