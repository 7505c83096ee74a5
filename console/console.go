// Package console is pfrouter's web console: HTML pages served on every
// server's admin listener under /console/ that picture what the admin API
// knows — the routing topology (live), a message's path across servers,
// the routing decision for a recipient, queues, the tunables of `admin
// set` / `admin connector`, and each folder's replicas with whether they
// are in sync (as `admin replica status` reads it).
//
// It holds no state of its own beyond login sessions: every page is built
// from the admin API of the servers (package admin's Client, with the
// token the admin logged in with) and the tracking log (tracking.Collect,
// as `pfrouter trace` does), so a change made here goes through the same
// validation and gossip as the CLI's. The node package mounts it beside
// the admin API; templates, CSS and JS are embedded, with no CDN and no
// build step.
package console

import (
	"context"
	"embed"
	"errors"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"time"

	"pfrouter/admin"
	"pfrouter/directory"
)

// Prefix is where the console is mounted on the admin listener.
const Prefix = "/console/"

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Server is one server of the organization as the console reaches it.
type Server struct {
	Name         string
	RoutingGroup string
	// AdminURL is its admin API's base URL, e.g. http://127.0.0.1:8011;
	// "" when it has no admin listener.
	AdminURL string
	// HTTP, when set, is a client that proves this server to that one
	// (https:// AdminURL, organization certificate): reads need no token
	// then, and the operator's token is sent only with changes.
	HTTP *http.Client
}

// Config is what the console needs from the node.
type Config struct {
	// Self is the name of the server serving the console.
	Self string
	// Servers lists the organization's servers in force (reloadable).
	Servers func() []Server
	// PeerToken, when set, gives the admin token of another server when
	// this one can read it locally (servers of one process or machine with
	// generated tokens); otherwise the console sends the token the admin
	// logged in with, which is right when they share one. Only changes on
	// another server (queue actions) need it: reads go with the server's
	// certificate (Server.HTTP).
	PeerToken func(server string) (string, bool)
	// Directory is the directory snapshot in force (folders, replicas).
	Directory func() *directory.Snapshot
	// HTTP calls the admin APIs; nil means a client with a 15 s timeout.
	HTTP   *http.Client
	Logger *slog.Logger
	// IdleTimeout ends an unused session (default 30 min); MaxAge ends any
	// session after login (default 12 h).
	IdleTimeout, MaxAge time.Duration
	// Now is the clock (tests); nil means time.Now.
	Now func() time.Time
}

// Console is the console's http.Handler.
type Console struct {
	cfg  Config
	log  *slog.Logger
	tmpl map[string]*template.Template
	ss   *sessions
	lim  *loginLimit
	mux  *http.ServeMux
}

// New builds the console. It fails only on a broken embedded template.
func New(cfg Config) (*Console, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.HTTP == nil {
		cfg.HTTP = &http.Client{Timeout: 15 * time.Second}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 30 * time.Minute
	}
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = 12 * time.Hour
	}
	if cfg.Servers == nil {
		return nil, errors.New("console: Config.Servers is required")
	}
	tm, err := parseTemplates()
	if err != nil {
		return nil, err
	}
	c := &Console{cfg: cfg, log: cfg.Logger.With("component", "console"), tmpl: tm,
		ss: newSessions(cfg.IdleTimeout, cfg.MaxAge, cfg.Now), mux: http.NewServeMux(),
		lim: &loginLimit{fails: map[string][]time.Time{}, now: cfg.Now}}
	static, _ := fs.Sub(staticFS, "static")
	m := c.mux
	m.Handle("GET "+Prefix+"static/", http.StripPrefix(Prefix+"static/", http.FileServerFS(static)))
	m.HandleFunc("GET "+Prefix+"login", c.loginPage)
	m.HandleFunc("POST "+Prefix+"login", c.login)
	m.HandleFunc("POST "+Prefix+"logout", c.authed(c.logout))
	m.HandleFunc("GET "+Prefix+"{$}", c.authed(c.topologyPage))
	m.HandleFunc("GET "+Prefix+"api/topology", c.authed(c.topologyJSON))
	m.HandleFunc("GET "+Prefix+"path", c.authed(c.pathPage))
	m.HandleFunc("GET "+Prefix+"route", c.authed(c.routePage))
	m.HandleFunc("GET "+Prefix+"queues", c.authed(c.queuesPage))
	m.HandleFunc("POST "+Prefix+"queues/action", c.authed(c.queueAction))
	m.HandleFunc("GET "+Prefix+"settings", c.authed(c.settingsPage))
	m.HandleFunc("POST "+Prefix+"settings/min-age", c.authed(c.setMinAge))
	m.HandleFunc("POST "+Prefix+"settings/connector", c.authed(c.setConnector))
	m.HandleFunc("POST "+Prefix+"settings/maintenance", c.authed(c.setMaintenance))
	m.HandleFunc("GET "+Prefix+"replicas", c.authed(c.replicasPage))
	return c, nil
}

func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	// Everything is same-origin: no inline script, no framing, no third
	// party, so injected markup could not run even if escaping failed.
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	c.mux.ServeHTTP(w, r)
}

// authed lets a request through with a live session; POSTs must also pass
// the Origin and CSRF checks.
func (c *Console) authed(next func(http.ResponseWriter, *http.Request, *session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ss := c.ss.get(r)
		if ss == nil {
			if r.Method == http.MethodGet && r.URL.Path != Prefix+"api/topology" {
				http.Redirect(w, r, Prefix+"login", http.StatusSeeOther)
				return
			}
			http.Error(w, "not logged in", http.StatusUnauthorized)
			return
		}
		if r.Method == http.MethodPost {
			if !sameOrigin(r) {
				http.Error(w, "refused: the request does not come from this console (Origin check)", http.StatusForbidden)
				return
			}
			if !csrfOK(r, ss) {
				http.Error(w, "refused: missing or wrong CSRF token; reload the page and try again", http.StatusForbidden)
				return
			}
		}
		next(w, r, ss)
	}
}

// self is this server's entry in Servers.
func (c *Console) self() Server {
	for _, s := range c.cfg.Servers() {
		if s.Name == c.cfg.Self {
			return s
		}
	}
	return Server{Name: c.cfg.Self}
}

// client calls server's admin API with token; changes are recorded as
// made by the console.
func (c *Console) client(s Server, token string) *admin.Client {
	hc := c.cfg.HTTP
	if s.HTTP != nil {
		hc = s.HTTP
	}
	return &admin.Client{BaseURL: s.AdminURL, Token: token, HTTP: hc, By: "console"}
}

// reader calls server s to read: a peer server reached with this server's
// certificate gets no token (the certificate is the proof), others the
// token tokenFor gives.
func (c *Console) reader(s Server, ss *session) *admin.Client {
	if s.HTTP != nil && s.Name != c.cfg.Self {
		return c.client(s, "")
	}
	return c.client(s, c.tokenFor(s, ss))
}

func (c *Console) selfClient(ss *session) *admin.Client { return c.client(c.self(), ss.token) }

// tokenFor is the token to call server s with for a session: what a
// change on another server needs (its reads go with reader).
func (c *Console) tokenFor(s Server, ss *session) string {
	if s.Name != c.cfg.Self && c.cfg.PeerToken != nil {
		if tok, ok := c.cfg.PeerToken(s.Name); ok {
			return tok
		}
	}
	return ss.token
}

// checkToken asks this server's own admin API whether token is right, so
// the console accepts exactly the tokens the API does.
func (c *Console) checkToken(ctx context.Context, token string) error {
	_, err := c.client(c.self(), token).LinkState(ctx)
	return err
}
