package console

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"pfrouter/admin"
	"pfrouter/routing"
	"pfrouter/tracking"
)

var pageNames = []string{"login", "topology", "path", "route", "queues", "confirm", "settings", "replicas"}

func parseTemplates() (map[string]*template.Template, error) {
	funcs := template.FuncMap{
		"when": func(t time.Time) string {
			if t.IsZero() {
				return ""
			}
			return t.UTC().Format("2006-01-02 15:04:05.000")
		},
		"ago": func(t time.Time) string {
			if t.IsZero() {
				return ""
			}
			return time.Since(t).Round(time.Second).String()
		},
		"join": strings.Join,
		// concat lists the connectors between routing groups, then the
		// outbound ones: one settings table for both.
		"concat": func(a, b []Connector) []Connector { return append(append([]Connector(nil), a...), b...) },
	}
	out := map[string]*template.Template{}
	for _, name := range pageNames {
		t, err := template.New(name).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("console: template %s: %w", name, err)
		}
		out[name] = t
	}
	return out, nil
}

// page is what every template gets.
type page struct {
	Title string
	Nav   string // which menu entry is current
	Self  string
	CSRF  string
	Flash string
	Error string
	// Route is the JSON the map highlights: {"servers":[...],"connectors":[...]}.
	Route string
	Data  any
}

func (c *Console) render(w http.ResponseWriter, status int, name string, p page) {
	var buf bytes.Buffer
	if err := c.tmpl[name].ExecuteTemplate(&buf, "layout", p); err != nil {
		c.log.Error("console: render", "page", name, "err", err)
		http.Error(w, "console: cannot render the page", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

func (c *Console) newPage(ss *session, title, nav string) page {
	p := page{Title: title, Nav: nav, Self: c.cfg.Self, Route: routeJSON(nil, nil, nil)}
	if ss != nil {
		p.CSRF = ss.csrf
		p.Flash = c.ss.takeFlash(ss)
	}
	return p
}

// routeJSON is what the map highlights: servers, connectors by name, and
// hops (server pairs) whose connector the map finds.
func routeJSON(servers, connectors []string, hops [][2]string) string {
	if hops == nil {
		hops = [][2]string{}
	}
	b, _ := json.Marshal(struct {
		Servers    []string    `json:"servers"`
		Connectors []string    `json:"connectors"`
		Hops       [][2]string `json:"hops"`
	}{nonNil(servers), nonNil(connectors), hops})
	return string(b)
}

// errText says why an admin call failed, for the page.
func errText(err error) string {
	var ae *admin.APIError
	if errors.As(err, &ae) {
		return ae.Message
	}
	return err.Error()
}

func (c *Console) loginPage(w http.ResponseWriter, r *http.Request) {
	if c.ss.get(r) != nil {
		http.Redirect(w, r, Prefix, http.StatusSeeOther)
		return
	}
	c.render(w, http.StatusOK, "login", c.newPage(nil, "Log in", ""))
}

// login checks the admin token against this server's admin API and starts
// a session. The token comes in a POST body only, never in a URL.
func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	p := c.newPage(nil, "Log in", "")
	if !sameOrigin(r) {
		p.Error = "refused: the login form did not come from this console"
		c.render(w, http.StatusForbidden, "login", p)
		return
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if c.lim.blocked(host) {
		p.Error = "too many wrong tokens from your address; wait a minute"
		c.render(w, http.StatusTooManyRequests, "login", p)
		return
	}
	token := strings.TrimSpace(r.PostFormValue("token"))
	if token == "" {
		p.Error = "enter the admin token (admin.token in the configuration, or the admin.token file in the server's data directory)"
		c.render(w, http.StatusBadRequest, "login", p)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	if err := c.checkToken(ctx, token); err != nil {
		var ae *admin.APIError
		if errors.As(err, &ae) && ae.Status == http.StatusUnauthorized {
			c.lim.fail(host)
			c.log.Warn("console: login refused: wrong token", "remote", r.RemoteAddr)
			p.Error = "wrong token"
			c.render(w, http.StatusUnauthorized, "login", p)
			return
		}
		p.Error = "cannot check the token with this server's admin API: " + errText(err)
		c.render(w, http.StatusBadGateway, "login", p)
		return
	}
	ss := c.ss.create(token)
	http.SetCookie(w, cookie(r, ss.id, 0))
	c.log.Info("console: login", "remote", r.RemoteAddr)
	http.Redirect(w, r, Prefix, http.StatusSeeOther)
}

func (c *Console) logout(w http.ResponseWriter, r *http.Request, ss *session) {
	c.ss.remove(ss.id)
	http.SetCookie(w, cookie(r, "", -1))
	http.Redirect(w, r, Prefix+"login", http.StatusSeeOther)
}

func (c *Console) topology(ctx context.Context, ss *session) Topology {
	ls, err := c.selfClient(ss).LinkState(ctx)
	if err != nil {
		return Topology{Self: c.cfg.Self, Groups: []Group{}, Connectors: []Connector{}, Error: errText(err)}
	}
	return buildTopology(c.cfg.Self, ls)
}

func (c *Console) topologyPage(w http.ResponseWriter, r *http.Request, ss *session) {
	p := c.newPage(ss, "Topology", "topology")
	t := c.topology(r.Context(), ss)
	p.Error, p.Data = t.Error, t
	c.render(w, http.StatusOK, "topology", p)
}

func (c *Console) topologyJSON(w http.ResponseWriter, r *http.Request, ss *session) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(c.topology(r.Context(), ss))
}

type pathData struct {
	ID       string
	Searched bool
	Timeline Timeline
}

// pathPage follows a message across every server, from the same tracking
// answers as `pfrouter trace` (SPEC O4).
func (c *Console) pathPage(w http.ResponseWriter, r *http.Request, ss *session) {
	p := c.newPage(ss, "Message path", "path")
	id := strings.TrimSpace(r.URL.Query().Get("id"))
	d := pathData{ID: id}
	if id != "" {
		d.Searched = true
		var eps []tracking.Endpoint
		for _, s := range c.cfg.Servers() {
			if s.AdminURL != "" {
				cl := c.reader(s, ss)
				eps = append(eps, tracking.Endpoint{Server: s.Name, URL: s.AdminURL, Token: cl.Token, HTTP: cl.HTTP})
			}
		}
		ctx, cancel := context.WithTimeout(r.Context(), 15*time.Second)
		defer cancel()
		d.Timeline = buildTimeline(tracking.Collect(ctx, eps, id))
		p.Route = routeJSON(d.Timeline.Servers, nil, d.Timeline.Hops)
	}
	p.Data = d
	c.render(w, http.StatusOK, "path", p)
}

type routeData struct {
	At, To   string
	Servers  []Server
	Decision *routing.Decision
}

// routePage shows `pfrouter route`'s decision, asked of this server's
// admin route endpoint (SPEC O2).
func (c *Console) routePage(w http.ResponseWriter, r *http.Request, ss *session) {
	p := c.newPage(ss, "Route explainer", "route")
	q := r.URL.Query()
	d := routeData{At: strings.TrimSpace(q.Get("at")), To: strings.TrimSpace(q.Get("to")), Servers: c.cfg.Servers()}
	if d.At == "" {
		d.At = c.cfg.Self
	}
	if d.To != "" {
		dec, err := c.selfClient(ss).Route(r.Context(), d.To, d.At, time.Time{})
		if err != nil {
			p.Error = errText(err)
		} else {
			d.Decision = &dec
			var conns []string
			if dec.Step2 != nil {
				conns = dec.Step2.Connectors
			}
			p.Route = routeJSON(dec.Route, conns, nil)
		}
	}
	p.Data = d
	c.render(w, http.StatusOK, "route", p)
}

// queues asks every server for its queue, concurrently.
func (c *Console) queues(ctx context.Context, ss *session) []QueueSummary {
	servers := c.cfg.Servers()
	out := make([]QueueSummary, len(servers))
	var wg sync.WaitGroup
	for i, s := range servers {
		wg.Go(func() {
			if s.AdminURL == "" {
				out[i] = QueueSummary{Server: s.Name, Error: "no admin listener"}
				return
			}
			items, err := c.reader(s, ss).QueueList(ctx)
			if err != nil {
				out[i] = QueueSummary{Server: s.Name, Error: errText(err)}
				return
			}
			out[i] = summarizeQueue(s.Name, items)
		})
	}
	wg.Wait()
	return out
}

func (c *Console) queuesPage(w http.ResponseWriter, r *http.Request, ss *session) {
	p := c.newPage(ss, "Queues", "queues")
	ctx, cancel := context.WithTimeout(r.Context(), 15*time.Second)
	defer cancel()
	p.Data = c.queues(ctx, ss)
	c.render(w, http.StatusOK, "queues", p)
}

type confirmData struct {
	Server, ID, Action string
	Item               *admin.QueueItem
}

// queueAction retries, deletes or flushes after a confirmation step: the
// first POST shows what will happen, the second (confirm=yes) does it.
func (c *Console) queueAction(w http.ResponseWriter, r *http.Request, ss *session) {
	d := confirmData{Server: r.PostFormValue("server"), ID: r.PostFormValue("id"), Action: r.PostFormValue("action")}
	var srv *Server
	for _, s := range c.cfg.Servers() {
		if s.Name == d.Server && s.AdminURL != "" {
			srv = &s
		}
	}
	if srv == nil {
		http.Error(w, fmt.Sprintf("unknown server %q (or it has no admin listener)", d.Server), http.StatusBadRequest)
		return
	}
	if d.Action != "flush" && d.Action != "retry" && d.Action != "delete" {
		http.Error(w, fmt.Sprintf("unknown action %q: retry, delete or flush", d.Action), http.StatusBadRequest)
		return
	}
	if d.Action != "flush" && d.ID == "" {
		http.Error(w, "a queue id is required", http.StatusBadRequest)
		return
	}
	cl := c.client(*srv, c.tokenFor(*srv, ss))
	if r.PostFormValue("confirm") != "yes" {
		p := c.newPage(ss, "Confirm", "queues")
		if d.ID != "" {
			it, err := c.reader(*srv, ss).QueueShow(r.Context(), d.ID)
			if err != nil {
				p.Error = errText(err)
			} else {
				d.Item = &it
			}
		}
		p.Data = d
		c.render(w, http.StatusOK, "confirm", p)
		return
	}
	var err error
	switch d.Action {
	case "retry":
		err = cl.QueueRetry(r.Context(), d.ID)
	case "delete":
		err = cl.QueueDelete(r.Context(), d.ID)
	case "flush":
		err = cl.QueueFlush(r.Context())
	}
	if err != nil {
		c.ss.setFlash(ss, fmt.Sprintf("%s %s on %s failed: %s", d.Action, d.ID, d.Server, errText(err)))
	} else {
		c.log.Info("console: queue action", "action", d.Action, "id", d.ID, "server", d.Server)
		c.ss.setFlash(ss, fmt.Sprintf("%s %s on %s: done", d.Action, d.ID, d.Server))
	}
	http.Redirect(w, r, Prefix+"queues", http.StatusSeeOther)
}

type settingsData struct {
	MinAge string
	Topo   Topology
}

func (c *Console) settingsPage(w http.ResponseWriter, r *http.Request, ss *session) {
	p := c.newPage(ss, "Settings", "settings")
	d := settingsData{Topo: c.topology(r.Context(), ss)}
	if age, err := c.selfClient(ss).StoreMinAge(r.Context()); err != nil {
		p.Error = errText(err)
	} else {
		d.MinAge = age.String()
	}
	if d.Topo.Error != "" {
		p.Error = d.Topo.Error
	}
	p.Data = d
	c.render(w, http.StatusOK, "settings", p)
}

const spreads = "; gossip spreads the change to every server"

// setMinAge changes store_min_age with the admin API's own check and call
// (R6, O1).
func (c *Console) setMinAge(w http.ResponseWriter, r *http.Request, ss *session) {
	d, err := admin.ParseStoreMinAge(r.PostFormValue("store_min_age"))
	if err == nil {
		d, err = c.selfClient(ss).SetStoreMinAge(r.Context(), d)
	}
	if err != nil {
		c.ss.setFlash(ss, "not changed: "+errText(err))
	} else {
		c.ss.setFlash(ss, "store_min_age is now "+d.String()+spreads)
	}
	http.Redirect(w, r, Prefix+"settings", http.StatusSeeOther)
}

// setConnector changes a connector's cost and/or state (R9, R10, O1).
func (c *Console) setConnector(w http.ResponseWriter, r *http.Request, ss *session) {
	name := r.PostFormValue("name")
	cl := c.selfClient(ss)
	msg, err := c.changeConnector(r.Context(), cl, name, r.PostFormValue("cost"), r.PostFormValue("state"))
	if err != nil {
		c.ss.setFlash(ss, "connector "+name+" not changed: "+errText(err))
	} else {
		c.ss.setFlash(ss, msg+spreads)
	}
	http.Redirect(w, r, Prefix+"settings", http.StatusSeeOther)
}

func (c *Console) changeConnector(ctx context.Context, cl *admin.Client, name, costStr, state string) (string, error) {
	ls, err := cl.LinkState(ctx)
	if err != nil {
		return "", err
	}
	var cur *Connector
	topo := buildTopology("", ls)
	for _, k := range append(topo.Connectors, topo.Outbound...) {
		if k.Name == name {
			cur = &k
		}
	}
	if cur == nil {
		return "", fmt.Errorf("no connector %q", name)
	}
	var done []string
	if strings.TrimSpace(costStr) != "" {
		cost, err := admin.ParseCost(costStr)
		if err != nil {
			return "", err
		}
		if cost != cur.Cost {
			got, err := cl.SetConnectorCost(ctx, name, cost)
			if err != nil {
				return "", err
			}
			done = append(done, fmt.Sprintf("cost %d", got.Cost))
		}
	}
	if state == "up" || state == "down" {
		if up := state == "up"; up != cur.Up {
			if _, err := cl.SetConnectorState(ctx, name, up); err != nil {
				return "", err
			}
			done = append(done, state)
		}
	} else if state != "" {
		return "", &admin.FieldError{Field: "state", Msg: "must be up or down"}
	}
	if len(done) == 0 {
		return "connector " + name + ": nothing to change", nil
	}
	return "connector " + name + ": " + strings.Join(done, ", "), nil
}

// setMaintenance takes a server out of routing or back (R6b, R10).
func (c *Console) setMaintenance(w http.ResponseWriter, r *http.Request, ss *session) {
	name := r.PostFormValue("server")
	down := r.PostFormValue("maintenance") == "on"
	if _, err := c.selfClient(ss).SetServerMaintenance(r.Context(), name, down); err != nil {
		c.ss.setFlash(ss, "server "+name+" not changed: "+errText(err))
	} else if down {
		c.ss.setFlash(ss, "server "+name+" is in maintenance"+spreads)
	} else {
		c.ss.setFlash(ss, "server "+name+" is back in routing"+spreads)
	}
	http.Redirect(w, r, Prefix+"settings", http.StatusSeeOther)
}

// replicaStatusTimeout bounds the Replicas page's status reads, so a
// server that does not answer shows as unreadable instead of hanging it.
const replicaStatusTimeout = 20 * time.Second

// replicasPage shows each folder's replicas with their live sync state,
// read per folder with the admin call of `pfrouter admin replica status
// --folder` (the server asks the replicas' servers; nothing is computed
// here), folders not in sync first.
func (c *Console) replicasPage(w http.ResponseWriter, r *http.Request, ss *session) {
	p := c.newPage(ss, "Replicas", "replicas")
	if c.cfg.Directory != nil {
		folders := buildReplicas(c.cfg.Directory())
		ctx, cancel := context.WithTimeout(r.Context(), replicaStatusTimeout)
		defer cancel()
		cl := c.selfClient(ss)
		sem := make(chan struct{}, 4) // a few folders at a time: each read fans out to servers
		var wg sync.WaitGroup
		for i := range folders {
			f := &folders[i]
			if len(f.Replicas) == 0 {
				continue
			}
			wg.Go(func() {
				sem <- struct{}{}
				defer func() { <-sem }()
				st, err := cl.ReplicaStatus(ctx, f.Hierarchy, f.Path)
				msg := ""
				if err != nil {
					msg = errText(err)
				}
				addStatus(f, st, msg)
			})
		}
		wg.Wait()
		sortReplicas(folders)
		p.Data = folders
	}
	c.render(w, http.StatusOK, "replicas", p)
}
