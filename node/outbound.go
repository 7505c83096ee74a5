package node

import (
	"context"
	"crypto/x509"
	"fmt"
	"os"
	"strings"
	"time"

	"pfrouter/config"
	"pfrouter/relay"
)

// smarthosts is the queue manager's qmgr.Outbound: it hands mail leaving
// the organization to the smarthost of the named outbound connector, as
// the configuration in force describes it (a reload changes the smarthost,
// TLS mode, CA or credentials of the next attempt).
type smarthosts struct{ n *Node }

// SendOutbound implements qmgr.Outbound.
func (s smarthosts) SendOutbound(ctx context.Context, connector, from string, rcpts []string, body []byte) ([]relay.RcptResult, error) {
	org := s.n.CurrentOrg()
	c := org.OutboundByName(connector)
	if c == nil {
		return nil, fmt.Errorf("outbound connector %q is no longer in the configuration", connector)
	}
	sh, err := smarthostFor(org, c, s.n.Name)
	if err != nil {
		return nil, &relay.ConnError{Addr: c.Smarthost, Err: err}
	}
	return sh.Send(ctx, from, rcpts, body)
}

// ProbeOutbound implements qmgr.Outbound: a session with the smarthost up
// to AUTH, then QUIT, with the configuration in force.
func (s smarthosts) ProbeOutbound(ctx context.Context, connector string) error {
	org := s.n.CurrentOrg()
	c := org.OutboundByName(connector)
	if c == nil {
		return fmt.Errorf("outbound connector %q is no longer in the configuration", connector)
	}
	sh, err := smarthostFor(org, c, s.n.Name)
	if err != nil {
		return err
	}
	return sh.Probe(ctx)
}

// smarthostFor builds the relay client of an outbound connector, reading
// its CA and credential files now.
func smarthostFor(org *config.Org, c *config.Outbound, self string) (*relay.Smarthost, error) {
	sh := &relay.Smarthost{Self: self, Addr: c.Smarthost, TLSMode: c.TLS, Timeout: 30 * time.Second}
	if len(org.Domains) > 0 {
		sh.Self = self + "." + org.Domains[0].Name
	}
	if c.CAFile != "" {
		pem, err := os.ReadFile(org.Resolve(c.CAFile))
		if err != nil {
			return nil, fmt.Errorf("outbound connector %s: ca_file: %w", c.Name, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("outbound connector %s: ca_file %s holds no PEM certificate", c.Name, c.CAFile)
		}
		sh.RootCAs = pool
	}
	if c.AuthFile != "" {
		user, pass, err := readAuthFile(org.Resolve(c.AuthFile))
		if err != nil {
			return nil, fmt.Errorf("outbound connector %s: %w", c.Name, err)
		}
		sh.Username, sh.Password = user, pass
	}
	return sh, nil
}

// readAuthFile reads "user:password" from a file only its owner can read.
func readAuthFile(path string) (string, string, error) {
	if err := config.CheckPrivateFile(path); err != nil {
		return "", "", err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", "", fmt.Errorf("auth_file: %w", err)
	}
	user, pass, ok := strings.Cut(strings.TrimRight(string(b), "\r\n"), ":")
	if !ok || user == "" {
		return "", "", fmt.Errorf("auth_file %s: want one line user:password", path)
	}
	return user, pass, nil
}
