// Package config reads and validates a pfrouter organization file (YAML).
//
// The organization file is the one source of truth every server of the
// organization loads: domains, sites, routing groups, connectors, servers with
// their stores, public folder hierarchies, folders and users. Its keys are a
// public interface. Load returns either a fully defaulted, validated Org or an
// error listing every problem as "file:line: field.path: problem", so an
// operator can fix them all in one pass. The directory package turns an Org
// into indexed tables; nothing else parses YAML.
package config

import (
	"fmt"
	"os"
	"path/filepath"
	"pfrouter/servercred"
	"strings"
	"time"
)

// Modes of an organization (SPEC R15).
const (
	ModeMixed  = "mixed"
	ModeNative = "native"
)

// Top-level hierarchy kinds.
const (
	TLHMapi        = "mapi"
	TLHApplication = "application"
)

// Store kinds.
const (
	StorePublic  = "public"
	StoreMailbox = "mailbox"
)

// User kinds (SPEC A4).
const (
	KindUser  = "user"
	KindAdmin = "admin"
	KindGuest = "guest"
)

// Cross-site access policies (SPEC A5).
const (
	CrossSiteProxy  = "proxy"
	CrossSiteRefuse = "refuse"
)

// Login types (SPEC A2).
const (
	LoginPlainText     = "PlainTextLogin"
	LoginPlainTextAuth = "PlainTextAuthentication"
	LoginSecure        = "SecureLogin"
)

// Message classes (SPEC R16).
const (
	ClassPost = "IPM.Post"
	ClassNote = "IPM.Note"
)

// Org is a whole organization.
type Org struct {
	Organization  string         `yaml:"organization"`
	Domains       []Domain       `yaml:"domains"`
	Secret        string         `yaml:"secret"`
	SecretFile    string         `yaml:"secret_file"`
	Mode          string         `yaml:"mode"`
	Routing       Routing        `yaml:"routing"`
	Access        Access         `yaml:"access"`
	TLS           TLS            `yaml:"tls"`
	Telemetry     Telemetry      `yaml:"telemetry"`
	Sites         []Site         `yaml:"sites"`
	RoutingGroups []RoutingGroup `yaml:"routing_groups"`
	Connectors    []Connector    `yaml:"connectors"`
	Outbound      []Outbound     `yaml:"outbound"`
	Servers       []Server       `yaml:"servers"`
	Hierarchies   []Hierarchy    `yaml:"hierarchies"`
	Folders       []Folder       `yaml:"folders"`
	Users         []User         `yaml:"users"`
	Limits        Limits         `yaml:"limits"`
	Admin         Admin          `yaml:"admin"`
	Tracking      Tracking       `yaml:"tracking"`
	Replication   Replication    `yaml:"replication"`
	Path          string         `yaml:"-"` // file the Org was read from, "" if embedded
	Dir           string         `yaml:"-"` // relative data_dir and secret_file resolve against it
	lines         *lineIndex     `yaml:"-"`
}

// Domain is an accepted domain. A plain string in YAML is a domain whose
// local parts are case-insensitive (the default, as on every mainstream MTA).
type Domain struct {
	Name                   string `yaml:"name"`
	CaseSensitiveLocalPart bool   `yaml:"case_sensitive_local_part"`
}

// Routing holds the routing tunables.
type Routing struct {
	StoreMinAge          Duration `yaml:"store_min_age"`
	MessageClass         string   `yaml:"message_class"`
	MessageExpiry        Duration `yaml:"message_expiry"`
	HopLimit             int      `yaml:"hop_limit"`
	Spread               bool     `yaml:"spread"`
	SuppressStateChanges bool     `yaml:"suppress_state_changes"`
	FailureThreshold     int      `yaml:"failure_threshold"` // consecutive failures before a next hop is marked down (R13b)
	ProbeInterval        Duration `yaml:"probe_interval"`    // how often a down hop is probed again
	HoldDown             Duration `yaml:"hold_down"`         // minimum time a state stays before it may flip again
	RetryInitial         Duration `yaml:"retry_initial"`
	RetryMax             Duration `yaml:"retry_max"`
}

// Access holds the POP3/IMAP4 access-tier policy.
type Access struct {
	CrossSite string `yaml:"cross_site"`
	LoginType string `yaml:"login_type"`
	// MaxConnectionsPerIP and MaxConnectionsPerUser cap IMAP and POP3
	// sessions per client address and per user on each server (0: 100
	// and 50; -1: no cap). A user's sessions count once logged in; POP3
	// also locks a local maildrop to one session.
	MaxConnectionsPerIP   int `yaml:"max_connections_per_ip"`
	MaxConnectionsPerUser int `yaml:"max_connections_per_user"`
}

// TLS names a certificate and key; empty means a self-signed certificate
// generated into each server's data directory.
type TLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Telemetry selects the trace exporter.
type Telemetry struct {
	Traces   string `yaml:"traces"` // none|stdout|otlp
	Endpoint string `yaml:"endpoint"`
}

// Admin configures the admin API: a bearer token, or a file holding one;
// neither means a token generated into each server's data directory (0600).
type Admin struct {
	Token     string `yaml:"token"`
	TokenFile string `yaml:"token_file"`
}

// Replication schedules public folder replication (docs/replication.md).
type Replication struct {
	// Interval between pulls of a folder from another replica; 0 (the
	// default) replicates at once: a change is sent when it is committed,
	// batched with whatever else is waiting.
	Interval Duration `yaml:"interval"`
	// MaxBatchBytes bounds the message bytes of one replication answer
	// (at least one message is always sent). Default 4 MB.
	MaxBatchBytes ByteSize `yaml:"max_batch_bytes"`
	// CompactEvery is how often each server compacts its replicas' change
	// logs and expires old delivery dedup records (0: DefaultCompactEvery).
	CompactEvery Duration `yaml:"compact_every"`
	// DedupRetention is how long a delivery is remembered so that a retry
	// of it (a relay retried by a peer, the queue delivering again after a
	// crash) is not stored twice; it must outlive routing.message_expiry,
	// the longest a message is retried (0: see Org.DedupRetention).
	DedupRetention Duration `yaml:"dedup_retention"`
	// SilenceLimit is how long a replica may go without pulling before it
	// no longer holds its folders' change-log compaction back (it resyncs
	// when it returns); 0: DefaultSilenceLimit.
	SilenceLimit Duration `yaml:"silence_limit"`
}

// ReplicaSilenceLimit is replication.silence_limit in force.
func (o *Org) ReplicaSilenceLimit() time.Duration {
	if o.Replication.SilenceLimit > 0 {
		return time.Duration(o.Replication.SilenceLimit)
	}
	return DefaultSilenceLimit
}

// CompactInterval is replication.compact_every in force.
func (o *Org) CompactInterval() time.Duration {
	if o.Replication.CompactEvery > 0 {
		return time.Duration(o.Replication.CompactEvery)
	}
	return DefaultCompactEvery
}

// DedupRetention is replication.dedup_retention in force: by default the
// longer of DefaultDedupRetention and twice routing.message_expiry, so a
// message retried until it expires is deduplicated throughout.
func (o *Org) DedupRetention() time.Duration {
	if o.Replication.DedupRetention > 0 {
		return time.Duration(o.Replication.DedupRetention)
	}
	exp := time.Duration(o.Routing.MessageExpiry)
	if exp <= 0 {
		exp = DefaultMessageExpiry
	}
	return max(DefaultDedupRetention, 2*exp)
}

// Tracking configures each server's tracking log.
type Tracking struct {
	Retention Duration `yaml:"retention"` // default 7 days
}

// Limits are SMTP ingress limits, per server.
type Limits struct {
	MaxMessageSize ByteSize `yaml:"max_message_size"`
	MaxRecipients  int      `yaml:"max_recipients"`
	MaxConnections int      `yaml:"max_connections"`
	// MaxConnectionsPerIP caps the connections one client address may
	// hold, so one client cannot take every slot (default 20).
	MaxConnectionsPerIP int `yaml:"max_connections_per_ip"`
	MaxLineLength       int `yaml:"max_line_length"`
	// MemoryPerServer sets the Go heap's soft limit of a pfrouter process
	// (runtime/debug.SetMemoryLimit) to this times the servers it runs:
	// past it the garbage collector runs more often instead of letting
	// the heap grow with badger's compactions and reads (default 768MB;
	// GOMEMLIMIT in the environment wins).
	MemoryPerServer ByteSize `yaml:"memory_per_server"`
	// StoreBodies says where the message store keeps bodies: "inline"
	// (default) in badger's LSM tree, one write-ahead-log sync per commit
	// and the least written to disk, at more CPU per message under load
	// (compactions copy the bodies); "value_log" in badger's value log,
	// two syncs per commit, less CPU under load, several times the bytes
	// written (bench/README.md, "One sync per message"). Either reads a
	// store the other wrote.
	StoreBodies string `yaml:"store_bodies"`
}

type Site struct {
	Name string `yaml:"name"`
}

type RoutingGroup struct {
	Name string `yaml:"name"`
}

// Connector links two routing groups.
type Connector struct {
	Name        string              `yaml:"name"`
	Between     []string            `yaml:"between"`
	Cost        int                 `yaml:"cost"`
	State       string              `yaml:"state"`
	Bridgeheads map[string][]string `yaml:"bridgeheads"`
	OneWay      bool                `yaml:"one_way"`
	// AllowReferrals false takes the connector out of public folder
	// referral paths (Exchange 2003's "Do not allow public folder
	// referrals"): a reader is never referred to a replica whose only path
	// crosses it. Mail still flows over it. Default true.
	AllowReferrals *bool `yaml:"allow_referrals"`
}

// ReferralsAllowed applies allow_referrals' default (true).
func (c Connector) ReferralsAllowed() bool { return c.AllowReferrals == nil || *c.AllowReferrals }

// ReferralTarget is one entry of a server's custom referral list: a server
// readers may be referred to, and what referring there costs.
type ReferralTarget struct {
	Server string `yaml:"server"`
	Cost   int    `yaml:"cost"`
}

// Listen holds a server's listener addresses; empty means not listening.
type Listen struct {
	SMTP   string `yaml:"smtp"`
	IMAP   string `yaml:"imap"`
	IMAPS  string `yaml:"imaps"`
	POP3   string `yaml:"pop3"`
	POP3S  string `yaml:"pop3s"`
	Admin  string `yaml:"admin"`
	Gossip string `yaml:"gossip"`
	// Replication is where peers pull public folder changes from this
	// server (TLS, org server certificates only); empty: replication off.
	Replication string `yaml:"replication"`
}

type Server struct {
	Name         string  `yaml:"name"`
	Site         string  `yaml:"site"`
	RoutingGroup string  `yaml:"routing_group"`
	Listen       Listen  `yaml:"listen"`
	DataDir      string  `yaml:"data_dir"`
	TLS          TLS     `yaml:"tls"`
	Stores       []Store `yaml:"stores"`
	// ReferralList, when set, replaces the computed referral choice for
	// readers on this server (Exchange 2003's custom referral list): a
	// folder without a local replica is read from the listed server with
	// the lowest cost that holds a replica and is not down.
	ReferralList []ReferralTarget `yaml:"referral_list"`
}

type Store struct {
	Name      string    `yaml:"name"`
	Kind      string    `yaml:"kind"`
	Hierarchy string    `yaml:"hierarchy"`
	Created   time.Time `yaml:"created"`
	// HierarchySynced false marks a public store whose copy of the hierarchy
	// is still incomplete: it knows no folder yet (the case R6 and R12 guard
	// against). Default true.
	HierarchySynced *bool `yaml:"hierarchy_synced"`
}

type Hierarchy struct {
	Name string `yaml:"name"`
	TLH  string `yaml:"tlh"`
}

type Folder struct {
	Path           string            `yaml:"path"`
	Hierarchy      string            `yaml:"hierarchy"`
	MailEnabled    *bool             `yaml:"mail_enabled"`
	Hidden         *bool             `yaml:"hidden"`
	CreatedMode    string            `yaml:"created_mode"` // mode the folder was created in; default the org's mode (R15)
	Alias          string            `yaml:"alias"`
	Addresses      []string          `yaml:"addresses"`
	Replicas       []string          `yaml:"replicas"`
	MaxMessageSize ByteSize          `yaml:"max_message_size"`
	AcceptFrom     []string          `yaml:"accept_from"`
	RejectFrom     []string          `yaml:"reject_from"`
	Permissions    map[string]string `yaml:"permissions"`
	// Replication overrides the organization's replication schedule for
	// this folder; a key left out keeps the organization's value.
	Replication *FolderReplication `yaml:"replication"`
}

// FolderReplication is a folder's own replication schedule: a key given
// replaces the organization's (interval 0 replicates this folder at once
// even when the organization's interval is longer).
type FolderReplication struct {
	Interval      *Duration `yaml:"interval"`
	MaxBatchBytes ByteSize  `yaml:"max_batch_bytes"`
}

// FolderReplication is the schedule in force for folder f (nil: a folder
// without its own): the organization's, with f's keys over it.
func (o *Org) FolderReplication(f *FolderReplication) Replication {
	r := o.Replication
	if r.MaxBatchBytes == 0 {
		r.MaxBatchBytes = DefaultReplicationBatch
	}
	if f != nil {
		if f.Interval != nil {
			r.Interval = *f.Interval
		}
		if f.MaxBatchBytes != 0 {
			r.MaxBatchBytes = f.MaxBatchBytes
		}
	}
	return r
}

type User struct {
	Name         string   `yaml:"name"`
	Addresses    []string `yaml:"addresses"`
	MailboxStore string   `yaml:"mailbox_store"`
	PasswordHash string   `yaml:"password_hash"`
	Password     string   `yaml:"password"`
	POPEnabled   *bool    `yaml:"pop_enabled"`
	IMAPEnabled  *bool    `yaml:"imap_enabled"`
	Kind         string   `yaml:"kind"`
}

// Enabled reports whether a user flag is on; unset means true (A3).
func Enabled(b *bool) bool { return b == nil || *b }

// Defaults used when a key is absent.
const (
	DefaultReplicationBatch = 4 << 20
	DefaultCompactEvery     = 5 * time.Minute
	DefaultDedupRetention   = 7 * 24 * time.Hour
	DefaultSilenceLimit     = 7 * 24 * time.Hour
	DefaultStoreMinAge      = 48 * time.Hour
	DefaultMessageExpiry    = 48 * time.Hour
	DefaultHopLimit         = 30
	DefaultFailureThreshold = 3
	DefaultProbeInterval    = 60 * time.Second
	DefaultHoldDown         = 30 * time.Second
	DefaultRetryInitial     = 5 * time.Second
	DefaultRetryMax         = 15 * time.Minute
	DefaultMaxMessageSize   = 35 << 20
	DefaultMaxRecipients    = 500
	DefaultMaxConnections   = 1000
	DefaultMaxConnectionsIP = 20
	DefaultMaxLineLength    = 4096
	DefaultMemoryPerServer  = 768 << 20
	// limits.store_bodies values.
	StoreBodiesInline   = "inline"
	StoreBodiesValueLog = "value_log"
)

// Load reads, defaults and validates an organization file.
func Load(path string) (*Org, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read organization file: %w", err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		abs = path
	}
	return Parse(data, path, filepath.Dir(abs))
}

// Parse is Load on bytes; name is used in error messages and dir resolves
// relative paths.
func Parse(data []byte, name, dir string) (*Org, error) {
	org, lines, errs, err := decode(data, name)
	if err != nil {
		return nil, err
	}
	org.Path, org.Dir, org.lines = name, dir, lines
	org.applyDefaults()
	// A value that did not decode was left empty: validation would only
	// repeat it as "is required", so its findings under that field go.
	for _, v := range org.validate() {
		if !under(v.Field, errs) {
			errs = append(errs, v)
		}
	}
	if len(errs) > 0 {
		return nil, errs.withLines(name, lines)
	}
	return org, nil
}

// under reports whether field is one of errs' fields or inside one.
func under(field string, errs Errors) bool {
	for _, e := range errs {
		if field == e.Field || strings.HasPrefix(field, e.Field+".") || strings.HasPrefix(field, e.Field+"[") {
			return true
		}
	}
	return false
}

// EffectiveMinAge is store_min_age with its default applied.
func (r Routing) EffectiveMinAge() time.Duration { return time.Duration(r.StoreMinAge) }

// ApplyDefaults fills unset keys with their defaults, as Parse does; for
// organizations built in code (bench/orggen) rather than read from a file.
func (o *Org) ApplyDefaults() { o.applyDefaults() }

func (o *Org) applyDefaults() {
	if o.Mode == "" {
		o.Mode = ModeMixed
	}
	r := &o.Routing
	if !o.lines.has("routing.store_min_age") {
		r.StoreMinAge = Duration(DefaultStoreMinAge) // an explicit 0 disables the skip (R6)
	}
	if r.MessageClass == "" {
		r.MessageClass = ClassPost
	}
	if r.MessageExpiry == 0 {
		r.MessageExpiry = Duration(DefaultMessageExpiry)
	}
	if r.HopLimit == 0 {
		r.HopLimit = DefaultHopLimit
	}
	if r.FailureThreshold == 0 {
		r.FailureThreshold = DefaultFailureThreshold
	}
	if r.ProbeInterval == 0 {
		r.ProbeInterval = Duration(DefaultProbeInterval)
	}
	if r.HoldDown == 0 {
		r.HoldDown = Duration(DefaultHoldDown)
	}
	if r.RetryInitial == 0 {
		r.RetryInitial = Duration(DefaultRetryInitial)
	}
	if r.RetryMax == 0 {
		r.RetryMax = Duration(DefaultRetryMax)
	}
	if o.Access.CrossSite == "" {
		o.Access.CrossSite = CrossSiteProxy
	}
	if o.Access.LoginType == "" {
		o.Access.LoginType = LoginSecure
	}
	if o.Tracking.Retention == 0 {
		o.Tracking.Retention = Duration(7 * 24 * time.Hour)
	}
	if o.Telemetry.Traces == "" {
		o.Telemetry.Traces = "none"
	}
	if o.Replication.MaxBatchBytes == 0 {
		o.Replication.MaxBatchBytes = DefaultReplicationBatch
	}
	l := &o.Limits
	if l.MaxMessageSize == 0 {
		l.MaxMessageSize = DefaultMaxMessageSize
	}
	if l.MaxRecipients == 0 {
		l.MaxRecipients = DefaultMaxRecipients
	}
	if l.MaxConnections == 0 {
		l.MaxConnections = DefaultMaxConnections
	}
	if l.MaxConnectionsPerIP == 0 {
		l.MaxConnectionsPerIP = DefaultMaxConnectionsIP
	}
	if l.MemoryPerServer == 0 {
		l.MemoryPerServer = DefaultMemoryPerServer
	}
	if l.StoreBodies == "" {
		l.StoreBodies = StoreBodiesInline
	}
	if l.MaxLineLength == 0 {
		l.MaxLineLength = DefaultMaxLineLength
	}
	for i := range o.Domains {
		o.Domains[i].Name = strings.ToLower(strings.TrimSuffix(o.Domains[i].Name, "."))
	}
	for i := range o.Connectors {
		if o.Connectors[i].State == "" {
			o.Connectors[i].State = "up"
		}
	}
	o.outboundDefaults()
	for i := range o.Hierarchies {
		if o.Hierarchies[i].TLH == "" {
			o.Hierarchies[i].TLH = TLHApplication
		}
	}
	for i := range o.Users {
		if o.Users[i].Kind == "" {
			o.Users[i].Kind = KindUser
		}
	}
	for i := range o.Folders {
		f := &o.Folders[i]
		if f.CreatedMode == "" {
			f.CreatedMode = o.Mode
		}
		if f.Permissions == nil {
			// A new folder's default permissions (R17).
			f.Permissions = map[string]string{"Default": "Author", "Anonymous": "Contributor"}
		}
	}
}

// FolderMailEnabled applies R15's defaults: MAPI folders created in mixed
// mode are mail-enabled (and stay so after a switch to native); native-mode
// and application-TLH folders default to mail-disabled.
func (o *Org) FolderMailEnabled(f *Folder) bool {
	if f.MailEnabled != nil {
		return *f.MailEnabled
	}
	return o.hierarchyTLH(f.Hierarchy) == TLHMapi && f.CreatedMode == ModeMixed
}

// FolderHidden applies R15: mixed-mode mail-enabled MAPI folders are hidden
// from the address list; native-mode ones are visible unless hidden.
func (o *Org) FolderHidden(f *Folder) bool {
	if f.Hidden != nil {
		return *f.Hidden
	}
	return f.CreatedMode == ModeMixed
}

func (o *Org) hierarchyTLH(name string) string {
	for _, h := range o.Hierarchies {
		if h.Name == name {
			return h.TLH
		}
	}
	return ""
}

// ResolveSecret returns the organization's shared secret: secret, else the
// contents of secret_file, else the contents of dataDir/org.secret,
// generated (0600, 256 bits) on first use. Servers of one organization must
// share it, so multi-process deployments set secret or secret_file. A
// secret under 128 bits (servercred.CheckSecret) or a file readable by
// group or others is refused.
func (o *Org) ResolveSecret(dataDir string) (string, error) {
	c := Credential{What: "secret", Inline: o.Secret, File: o.SecretFile, OrgDir: o.Dir}
	if dataDir != "" {
		c.Default = filepath.Join(dataDir, "org.secret")
	}
	v, err := c.Resolve()
	if err != nil {
		return "", err
	}
	if err := servercred.CheckSecret(v); err != nil {
		src := "secret"
		if o.Secret == "" {
			src = "secret_file"
		}
		return "", fmt.Errorf("%s: %w", src, err)
	}
	return v, nil
}

// DataDir returns a server's data directory: data_dir as configured
// (relative to the config file), else base/<server name>.
func (o *Org) DataDir(s *Server, base string) string {
	if s.DataDir == "" {
		return filepath.Join(base, s.Name)
	}
	if filepath.IsAbs(s.DataDir) {
		return s.DataDir
	}
	return filepath.Join(o.Dir, s.DataDir)
}

// ServerByName returns the named server or nil.
func (o *Org) ServerByName(name string) *Server {
	for i := range o.Servers {
		if o.Servers[i].Name == name {
			return &o.Servers[i]
		}
	}
	return nil
}
