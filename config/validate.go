package config

import (
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"pfrouter/permissions"
	"pfrouter/servercred"
)

type problems []FieldError

func (p *problems) add(field, format string, args ...any) {
	*p = append(*p, FieldError{Field: field, Msg: fmt.Sprintf(format, args...)})
}

func oneOf(v string, allowed ...string) bool {
	for _, a := range allowed {
		if v == a {
			return true
		}
	}
	return false
}

// validate checks every cross-reference and value; it reports all problems.
func (o *Org) validate() Errors {
	var p problems
	if strings.TrimSpace(o.Organization) == "" {
		p.add("organization", "is required (the organization's name)")
	}
	if len(o.Domains) == 0 {
		p.add("domains", "at least one accepted domain is required")
	}
	domains := map[string]bool{}
	for i, d := range o.Domains {
		f := fmt.Sprintf("domains[%d]", i)
		if !validDomain(d.Name) {
			p.add(f, "%q is not a domain name", d.Name)
		}
		if domains[d.Name] {
			p.add(f, "domain %q is listed twice", d.Name)
		}
		domains[d.Name] = true
	}
	if o.Secret != "" && o.SecretFile != "" {
		p.add("secret_file", "set either secret or secret_file, not both")
	}
	if o.Secret != "" && servercred.CheckSecret(o.Secret) != nil {
		p.add("secret", "%v", servercred.CheckSecret(o.Secret))
	}
	if !oneOf(o.Mode, ModeMixed, ModeNative) {
		p.add("mode", "%q is not a mode (mixed or native)", o.Mode)
	}
	if !oneOf(o.Routing.MessageClass, ClassPost, ClassNote) {
		p.add("routing.message_class", "%q is not IPM.Post or IPM.Note", o.Routing.MessageClass)
	}
	if o.Replication.Interval < 0 {
		p.add("replication.interval", "must not be negative (0 replicates at once)")
	}
	if o.Replication.MaxBatchBytes < 64<<10 {
		p.add("replication.max_batch_bytes", "must be at least 64KB")
	}
	if c := o.Replication.CompactEvery; c < 0 || c > 0 && c < Duration(time.Second) {
		p.add("replication.compact_every", "must be at least 1s (0: the default, 5m)")
	}
	if l := o.Replication.SilenceLimit; l < 0 || l > 0 && l < Duration(time.Minute) {
		p.add("replication.silence_limit", "must be at least 1m (0: the default, 168h)")
	}
	if r := o.Replication.DedupRetention; r < 0 || r > 0 && r <= o.Routing.MessageExpiry {
		p.add("replication.dedup_retention", "must be longer than routing.message_expiry (%s): a message retried until it expires would otherwise be stored twice",
			time.Duration(o.Routing.MessageExpiry))
	}
	if o.Routing.HopLimit < 1 || o.Routing.HopLimit > 1000 {
		p.add("routing.hop_limit", "must be between 1 and 1000")
	}
	if o.Routing.FailureThreshold < 1 {
		p.add("routing.failure_threshold", "must be at least 1")
	}
	if !oneOf(o.Access.CrossSite, CrossSiteProxy, CrossSiteRefuse) {
		p.add("access.cross_site", "%q is not proxy or refuse", o.Access.CrossSite)
	}
	if !oneOf(o.Access.LoginType, LoginPlainText, LoginPlainTextAuth, LoginSecure) {
		p.add("access.login_type", "%q is not PlainTextLogin, PlainTextAuthentication or SecureLogin", o.Access.LoginType)
	}
	if !oneOf(o.Limits.StoreBodies, StoreBodiesInline, StoreBodiesValueLog) {
		p.add("limits.store_bodies", "%q is not inline or value_log", o.Limits.StoreBodies)
	}
	if !oneOf(o.Telemetry.Traces, "none", "stdout", "otlp") {
		p.add("telemetry.traces", "%q is not none, stdout or otlp", o.Telemetry.Traces)
	}
	if o.Telemetry.Traces == "otlp" {
		if o.Telemetry.Endpoint == "" {
			p.add("telemetry.endpoint", "is required when traces is otlp (e.g. http://127.0.0.1:4318)")
		} else if u, err := url.Parse(o.Telemetry.Endpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			p.add("telemetry.endpoint", "%q is not an http(s)://host:port URL of an OTLP/HTTP collector", o.Telemetry.Endpoint)
		}
	}
	if (o.TLS.CertFile == "") != (o.TLS.KeyFile == "") {
		p.add("tls", "cert_file and key_file go together")
	}

	sites := names(&p, "sites", len(o.Sites), func(i int) string { return o.Sites[i].Name })
	rgs := names(&p, "routing_groups", len(o.RoutingGroups), func(i int) string { return o.RoutingGroups[i].Name })
	servers := names(&p, "servers", len(o.Servers), func(i int) string { return o.Servers[i].Name })
	hier := names(&p, "hierarchies", len(o.Hierarchies), func(i int) string { return o.Hierarchies[i].Name })
	users := names(&p, "users", len(o.Users), func(i int) string { return o.Users[i].Name })
	names(&p, "connectors", len(o.Connectors), func(i int) string { return o.Connectors[i].Name })

	mapi := 0
	for i, h := range o.Hierarchies {
		if !oneOf(h.TLH, TLHMapi, TLHApplication) {
			p.add(fmt.Sprintf("hierarchies[%d].tlh", i), "%q is not mapi or application", h.TLH)
		}
		if h.TLH == TLHMapi {
			mapi++
			if mapi > 1 {
				p.add(fmt.Sprintf("hierarchies[%d].tlh", i), "only one hierarchy may be the MAPI tree")
			}
		}
	}

	serverRG := map[string]string{}
	type storeInfo struct{ kind, hierarchy string }
	stores := map[string]storeInfo{}
	listens := map[string]string{}
	for i, s := range o.Servers {
		f := fmt.Sprintf("servers[%d]", i)
		serverRG[s.Name] = s.RoutingGroup
		if err := servercred.CheckServerName(s.Name); s.Name != "" && err != nil {
			p.add(f+".name", "%v", err)
		}
		switch {
		case s.Site == "":
			p.add(f+".site", "is required: the site the server is in (one of sites: %s)", listOf(o.Sites, func(x Site) string { return x.Name }))
		case !sites[s.Site]:
			p.add(f+".site", "site %q is not defined in sites (%s)", s.Site, listOf(o.Sites, func(x Site) string { return x.Name }))
		}
		switch {
		case s.RoutingGroup == "":
			p.add(f+".routing_group", "is required: the routing group the server is in (one of routing_groups: %s)", listOf(o.RoutingGroups, func(x RoutingGroup) string { return x.Name }))
		case !rgs[s.RoutingGroup]:
			p.add(f+".routing_group", "routing group %q is not defined in routing_groups (%s)", s.RoutingGroup, listOf(o.RoutingGroups, func(x RoutingGroup) string { return x.Name }))
		}
		for _, l := range []struct{ key, addr string }{{"smtp", s.Listen.SMTP}, {"imap", s.Listen.IMAP}, {"imaps", s.Listen.IMAPS}, {"pop3", s.Listen.POP3}, {"pop3s", s.Listen.POP3S}, {"admin", s.Listen.Admin}, {"gossip", s.Listen.Gossip}, {"replication", s.Listen.Replication}} {
			if l.addr == "" {
				continue
			}
			lf := f + ".listen." + l.key
			_, port, err := net.SplitHostPort(l.addr)
			if err != nil {
				p.add(lf, "%q is not host:port", l.addr)
				continue
			}
			if port != "0" {
				if prev, dup := listens[l.addr]; dup {
					p.add(lf, "%s is already used by %s", l.addr, prev)
				}
				listens[l.addr] = lf
			}
		}
		if s.Listen.SMTP == "" {
			p.add(f+".listen.smtp", "every server needs an SMTP listener (servers relay to each other over it)")
		}
		if (s.TLS.CertFile == "") != (s.TLS.KeyFile == "") {
			p.add(f+".tls", "cert_file and key_file go together")
		}
		validateReferralList(&p, f, s, servers)
		for j, st := range s.Stores {
			sf := fmt.Sprintf("%s.stores[%d]", f, j)
			if st.Name == "" {
				p.add(sf+".name", "is required")
				continue
			}
			if _, dup := stores[st.Name]; dup {
				p.add(sf+".name", "store %q is defined twice (store names are organization-wide)", st.Name)
			}
			stores[st.Name] = storeInfo{st.Kind, st.Hierarchy}
			switch st.Kind {
			case StorePublic:
				if !hier[st.Hierarchy] {
					p.add(sf+".hierarchy", "hierarchy %q is not defined in hierarchies", st.Hierarchy)
				}
			case StoreMailbox:
				if st.Hierarchy != "" {
					p.add(sf+".hierarchy", "a mailbox store holds no hierarchy")
				}
			default:
				p.add(sf+".kind", "%q is not public or mailbox", st.Kind)
			}
		}
	}

	for i, c := range o.Connectors {
		f := fmt.Sprintf("connectors[%d]", i)
		if len(c.Between) != 2 {
			p.add(f+".between", "must name exactly two routing groups")
		} else {
			for _, rg := range c.Between {
				if !rgs[rg] {
					p.add(f+".between", "routing group %q is not defined in routing_groups", rg)
				}
			}
			if c.Between[0] == c.Between[1] {
				p.add(f+".between", "a connector links two different routing groups")
			}
		}
		if c.Cost < 1 || c.Cost > 100 {
			p.add(f+".cost", "%d is outside 1..100", c.Cost)
		}
		if !oneOf(c.State, "up", "down") {
			p.add(f+".state", "%q is not up or down", c.State)
		}
		for rg, bhs := range c.Bridgeheads {
			bf := f + ".bridgeheads." + rg
			if len(c.Between) == 2 && rg != c.Between[0] && rg != c.Between[1] {
				p.add(bf, "routing group %q is not one of the connector's ends", rg)
				continue
			}
			for _, b := range bhs {
				if !servers[b] {
					p.add(bf, "server %q is not defined", b)
				} else if serverRG[b] != rg {
					p.add(bf, "server %q is in routing group %q, not %q", b, serverRG[b], rg)
				}
			}
		}
	}

	o.validateOutbound(&p, servers, domains)

	addrOwner := map[string]string{}
	claim := func(field, addr, owner string) {
		a := strings.ToLower(addr)
		if prev, ok := addrOwner[a]; ok && prev != owner {
			p.add(field, "address %q is already used by %s", addr, prev)
		}
		addrOwner[a] = owner
	}
	checkAddr := func(field, addr string) bool {
		at := strings.LastIndexByte(addr, '@')
		if at <= 0 || at == len(addr)-1 || strings.ContainsAny(addr, " \t\r\n<>") {
			p.add(field, "%q is not an address (local@domain)", addr)
			return false
		}
		if !domains[strings.ToLower(addr[at+1:])] {
			p.add(field, "domain of %q is not an accepted domain", addr)
			return false
		}
		return true
	}

	folderKeys := map[string]bool{}
	for i, fo := range o.Folders {
		f := fmt.Sprintf("folders[%d]", i)
		if !strings.HasPrefix(fo.Path, "/") || strings.HasSuffix(fo.Path, "/") && fo.Path != "/" || strings.Contains(fo.Path, "//") || fo.Path == "/" {
			p.add(f+".path", "%q is not a folder path like /Sales/Announcements", fo.Path)
		}
		if !hier[fo.Hierarchy] {
			p.add(f+".hierarchy", "hierarchy %q is not defined in hierarchies", fo.Hierarchy)
		}
		key := fo.Hierarchy + ":" + fo.Path
		if folderKeys[key] {
			p.add(f+".path", "folder %q is defined twice in hierarchy %q", fo.Path, fo.Hierarchy)
		}
		folderKeys[key] = true
		if r := fo.Replication; r != nil {
			if r.Interval != nil && *r.Interval < 0 {
				p.add(f+".replication.interval", "must not be negative (0 replicates at once)")
			}
			if r.MaxBatchBytes != 0 && r.MaxBatchBytes < 64<<10 {
				p.add(f+".replication.max_batch_bytes", "must be at least 64KB")
			}
		}
		if !oneOf(fo.CreatedMode, ModeMixed, ModeNative) {
			p.add(f+".created_mode", "%q is not mixed or native", fo.CreatedMode)
		}
		owner := "folder " + fo.Path
		for j, a := range fo.Addresses {
			af := fmt.Sprintf("%s.addresses[%d]", f, j)
			if checkAddr(af, a) {
				claim(af, a, owner)
			}
		}
		if fo.Alias != "" {
			if !validLocal(fo.Alias) {
				p.add(f+".alias", "%q is not a valid mail nickname", fo.Alias)
			}
			for _, d := range o.Domains {
				claim(f+".alias", fo.Alias+"@"+d.Name, owner)
			}
		}
		seen := map[string]bool{}
		for _, r := range fo.Replicas {
			rf := fmt.Sprintf("%s.replicas", f)
			st, ok := stores[r]
			switch {
			case !ok:
				p.add(rf, "store %q is not defined", r)
			case st.kind != StorePublic:
				p.add(rf, "store %q is a mailbox store; replicas live in public stores", r)
			case st.hierarchy != fo.Hierarchy:
				p.add(rf, "store %q holds hierarchy %q, not %q", r, st.hierarchy, fo.Hierarchy)
			case seen[r]:
				p.add(rf, "store %q is listed twice", r)
			}
			seen[r] = true
		}
		for _, l := range []struct {
			key  string
			list []string
		}{{"accept_from", fo.AcceptFrom}, {"reject_from", fo.RejectFrom}} {
			for j, a := range l.list {
				if !strings.Contains(a, "@") && !users[a] {
					p.add(fmt.Sprintf("%s.%s[%d]", f, l.key, j), "%q is neither an address nor a user", a)
				}
			}
		}
		for principal, role := range fo.Permissions {
			pf := f + ".permissions." + principal
			if principal != permissions.Anonymous && principal != permissions.Default && !users[principal] {
				p.add(pf, "principal %q is not Anonymous, Default or a user", principal)
			}
			if _, err := permissions.ParseRole(role); err != nil {
				p.add(pf, "%v", err)
			}
		}
	}

	for i, u := range o.Users {
		f := fmt.Sprintf("users[%d]", i)
		if !oneOf(u.Kind, KindUser, KindAdmin, KindGuest) {
			p.add(f+".kind", "%q is not user, admin or guest", u.Kind)
		}
		st, ok := stores[u.MailboxStore]
		switch {
		case u.MailboxStore == "":
			p.add(f+".mailbox_store", "is required")
		case !ok:
			p.add(f+".mailbox_store", "store %q is not defined", u.MailboxStore)
		case st.kind != StoreMailbox:
			p.add(f+".mailbox_store", "store %q is a public store, not a mailbox store", u.MailboxStore)
		}
		if u.Password != "" && u.PasswordHash != "" {
			p.add(f+".password", "set either password or password_hash, not both")
		}
		if u.PasswordHash != "" && !strings.HasPrefix(u.PasswordHash, "$2") {
			p.add(f+".password_hash", "must be a bcrypt hash ($2a$/$2b$/$2y$)")
		}
		if len(u.Addresses) == 0 {
			p.add(f+".addresses", "a user needs at least one address")
		}
		for j, a := range u.Addresses {
			af := fmt.Sprintf("%s.addresses[%d]", f, j)
			if checkAddr(af, a) {
				claim(af, a, "user "+u.Name)
			}
		}
	}
	return Errors(p)
}

// listOf names the elements of a list for a message, "none defined" when
// it is empty.
func listOf[T any](xs []T, name func(T) string) string {
	if len(xs) == 0 {
		return "none defined"
	}
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = name(x)
	}
	return strings.Join(out, ", ")
}

// names checks that each element has a unique, non-empty name.
func names(p *problems, field string, n int, name func(int) string) map[string]bool {
	set := make(map[string]bool, n)
	for i := 0; i < n; i++ {
		v := name(i)
		f := fmt.Sprintf("%s[%d].name", field, i)
		if strings.TrimSpace(v) == "" {
			p.add(f, "is required")
			continue
		}
		if set[v] {
			p.add(f, "%q is defined twice", v)
		}
		set[v] = true
	}
	return set
}

func validDomain(d string) bool {
	if d == "" || len(d) > 253 {
		return false
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

func validLocal(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("!#$%&'*+-/=?^_`{|}~.", c)) {
			return false
		}
	}
	return !strings.HasPrefix(s, ".") && !strings.HasSuffix(s, ".") && !strings.Contains(s, "..")
}

// validateReferralList checks a server's custom referral list: known
// servers other than itself, each once, costs 1..100 like connectors.
func validateReferralList(p *problems, f string, s Server, servers map[string]bool) {
	seen := map[string]bool{}
	for j, t := range s.ReferralList {
		rf := fmt.Sprintf("%s.referral_list[%d]", f, j)
		switch {
		case t.Server == "":
			p.add(rf+".server", "is required")
		case !servers[t.Server]:
			p.add(rf+".server", "server %q is not defined", t.Server)
		case t.Server == s.Name:
			p.add(rf+".server", "a server's own replicas are always read first; list other servers only")
		case seen[t.Server]:
			p.add(rf+".server", "server %q is listed twice", t.Server)
		}
		seen[t.Server] = true
		if t.Cost < 1 || t.Cost > 100 {
			p.add(rf+".cost", "%d is outside 1..100", t.Cost)
		}
	}
}
