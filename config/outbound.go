package config

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
)

// TLS modes of an outbound connector.
const (
	OutboundTLSRequired      = "required"
	OutboundTLSOpportunistic = "opportunistic"
)

// Outbound is an outbound SMTP connector: mail for addresses outside the
// accepted domains that its address spaces cover leaves the organization
// through its source servers to its smarthost.
type Outbound struct {
	Name string `yaml:"name"`
	// AddressSpaces are "*", a domain ("example.net") or a domain's
	// subdomains ("*.example.net"); the most specific match wins.
	AddressSpaces []string `yaml:"address_spaces"`
	Smarthost     string   `yaml:"smarthost"` // host:port
	Cost          int      `yaml:"cost"`      // default 1
	// TLS is required (default: STARTTLS with a verified certificate or
	// nothing is sent) or opportunistic (STARTTLS when offered).
	TLS string `yaml:"tls"`
	// CAFile verifies the smarthost's certificate instead of the system
	// roots (a PEM file).
	CAFile string `yaml:"ca_file"`
	// AuthFile holds "user:password" for AUTH PLAIN at the smarthost; mode
	// 0600 or stricter.
	AuthFile string `yaml:"auth_file"`
	// SourceServers are the servers the connector is homed on: the only
	// ones that talk to the smarthost (like a connector's bridgeheads).
	SourceServers []string `yaml:"source_servers"`
	State         string   `yaml:"state"` // up (default) or down
}

// OutboundByName returns the named outbound connector or nil.
func (o *Org) OutboundByName(name string) *Outbound {
	for i := range o.Outbound {
		if o.Outbound[i].Name == name {
			return &o.Outbound[i]
		}
	}
	return nil
}

// Resolve makes a path from the config relative to the config file's
// directory absolute.
func (o *Org) Resolve(path string) string {
	if path == "" || filepath.IsAbs(path) {
		return path
	}
	return filepath.Join(o.Dir, path)
}

// CheckPrivateFile refuses a credential file that its group or others may
// read or write: whoever can read it can use the credential.
func CheckPrivateFile(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("%s has mode %#o: group and others must have no access (chmod 600 %s)", path, perm, path)
	}
	return nil
}

func (o *Org) outboundDefaults() {
	for i := range o.Outbound {
		c := &o.Outbound[i]
		if c.TLS == "" {
			c.TLS = OutboundTLSRequired
		}
		if c.Cost == 0 {
			c.Cost = 1
		}
		if c.State == "" {
			c.State = "up"
		}
	}
}

func (o *Org) validateOutbound(p *problems, servers, domains map[string]bool) {
	names(p, "outbound", len(o.Outbound), func(i int) string { return o.Outbound[i].Name })
	// Outbound connectors are link-state entries beside the connectors
	// between routing groups: `admin connector` names either.
	conns := map[string]bool{}
	for _, c := range o.Connectors {
		conns[c.Name] = true
	}
	for i, c := range o.Outbound {
		f := fmt.Sprintf("outbound[%d]", i)
		if conns[c.Name] {
			p.add(f+".name", "%q is also the name of a connector; connector names are shared with outbound connectors", c.Name)
		}
		if len(c.AddressSpaces) == 0 {
			p.add(f+".address_spaces", `at least one address space is required ("*" for every outside domain)`)
		}
		for j, sp := range c.AddressSpaces {
			sf := fmt.Sprintf("%s.address_spaces[%d]", f, j)
			d := strings.ToLower(strings.TrimSuffix(sp, "."))
			if d == "*" {
				continue
			}
			d = strings.TrimPrefix(d, "*.")
			switch {
			case !validDomain(d):
				p.add(sf, `%q is not "*", a domain or "*.domain"`, sp)
			case domains[d] && !strings.HasPrefix(sp, "*."):
				p.add(sf, "%q is an accepted domain of this organization; its mail is delivered inside", sp)
			}
		}
		if host, port, err := net.SplitHostPort(c.Smarthost); err != nil || host == "" || port == "" {
			p.add(f+".smarthost", "%q is not host:port", c.Smarthost)
		}
		if c.Cost < 1 || c.Cost > 100 {
			p.add(f+".cost", "%d is outside 1..100", c.Cost)
		}
		if !oneOf(c.TLS, OutboundTLSRequired, OutboundTLSOpportunistic) {
			p.add(f+".tls", "%q is not required or opportunistic", c.TLS)
		}
		if !oneOf(c.State, "up", "down") {
			p.add(f+".state", "%q is not up or down", c.State)
		}
		if len(c.SourceServers) == 0 {
			p.add(f+".source_servers", "name at least one server the connector is homed on")
		}
		for _, s := range c.SourceServers {
			if !servers[s] {
				p.add(f+".source_servers", "server %q is not defined", s)
			}
		}
		if c.CAFile != "" {
			if _, err := os.Stat(o.Resolve(c.CAFile)); err != nil {
				p.add(f+".ca_file", "%v", err)
			}
		}
		if c.AuthFile != "" {
			if err := CheckPrivateFile(o.Resolve(c.AuthFile)); err != nil {
				p.add(f+".auth_file", "%v", err)
			}
		}
	}
}
