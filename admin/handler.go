package admin

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"pfrouter/linkstate"
)

// ByHeader names who makes a change (recorded as ChangedBy in link state);
// without it the change is by "admin-api".
const ByHeader = "X-Pfrouter-By"

const maxBody = 1 << 20

type handler struct {
	ops    Ops
	token  [32]byte
	log    *slog.Logger
	mux    *http.ServeMux
	hasTok bool
	peer   func(*http.Request) (string, bool)
}

// HandlerOption changes how NewHandler's API authenticates.
type HandlerOption func(*handler)

// WithPeers lets peer servers read without a token: peer names the server
// of the organization a request comes from (its verified TLS client
// certificate, a server in the directory), or ok=false. Such a request may
// use GET and HEAD (link state, queues, tracking, route explanations,
// replica status, metrics: what the console and trace of another server
// read); changes still need the bearer token, so a server that joins the
// organization cannot delete another's mail or reload its config.
func WithPeers(peer func(r *http.Request) (server string, ok bool)) HandlerOption {
	return func(h *handler) { h.peer = peer }
}

// NewHandler serves the admin API. Every path, extra ones included (the
// node mounts e.g. "/v1/tracking" and "/metrics"), needs
// "Authorization: Bearer <token>", except reads by a peer server when
// WithPeers is given; an extra key without a method or a trailing slash
// also serves its subpaths.
func NewHandler(ops Ops, token string, extra map[string]http.Handler, logger *slog.Logger, opts ...HandlerOption) http.Handler {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	h := &handler{ops: ops, token: sha256.Sum256([]byte(token)), hasTok: token != "", log: logger.With("component", "admin"), mux: http.NewServeMux()}
	for _, o := range opts {
		o(h)
	}
	m := h.mux
	m.HandleFunc("GET /v1/store-min-age", h.getMinAge)
	m.HandleFunc("PUT /v1/store-min-age", h.setMinAge)
	m.HandleFunc("GET /v1/linkstate", h.linkState)
	m.HandleFunc("PUT /v1/connectors/{name}/cost", h.connectorCost)
	m.HandleFunc("PUT /v1/connectors/{name}/state", h.connectorState)
	m.HandleFunc("PUT /v1/servers/{name}/maintenance", h.maintenance)
	m.HandleFunc("POST /v1/stores", h.addStore)
	m.HandleFunc("POST /v1/replicas", h.addReplica)
	m.HandleFunc("POST /v1/folders/rename", h.renameFolder)
	m.HandleFunc("POST /v1/folders/delete", h.deleteFolder)
	m.HandleFunc("POST /v1/folders/permission", h.setPermission)
	m.HandleFunc("POST /v1/folders/permission/remove", h.removePermission)
	m.HandleFunc("GET /v1/route", h.route)
	m.HandleFunc("GET /v1/queue", h.queueList)
	m.HandleFunc("GET /v1/queue/{id}", h.queueShow)
	m.HandleFunc("DELETE /v1/queue/{id}", h.queueDelete)
	m.HandleFunc("POST /v1/queue/{id}/retry", h.queueRetry)
	m.HandleFunc("POST /v1/queue/flush", h.queueFlush)
	m.HandleFunc("POST /v1/reload", h.reload)
	for pat, eh := range extra {
		m.Handle(pat, eh)
		if !strings.Contains(pat, " ") && !strings.HasSuffix(pat, "/") {
			m.Handle(pat+"/", eh)
		}
	}
	return h
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !h.authorized(r) {
		peer, isPeer := h.peerOf(r)
		switch {
		case isPeer && (r.Method == http.MethodGet || r.Method == http.MethodHead):
			// A peer server reading: proven by its certificate.
		case isPeer:
			writeJSON(w, http.StatusForbidden, apiError{Error: "server " + peer + " may only read this server's admin API; a change needs the admin token"})
			return
		default:
			w.Header().Set("WWW-Authenticate", `Bearer realm="pfrouter admin"`)
			writeJSON(w, http.StatusUnauthorized, apiError{Error: "missing or wrong bearer token"})
			return
		}
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	h.mux.ServeHTTP(&jsonErrors{ResponseWriter: w}, r)
}

// peerOf names the peer server a request comes from: only over TLS, and
// only as WithPeers' function says.
func (h *handler) peerOf(r *http.Request) (string, bool) {
	if h.peer == nil || r.TLS == nil {
		return "", false
	}
	return h.peer(r)
}

// authorized compares hashes in constant time, so neither the token's
// content nor its length leaks through timing.
func (h *handler) authorized(r *http.Request) bool {
	auth := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(auth, "Bearer ")
	if !ok || !h.hasTok {
		return false
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	return subtle.ConstantTimeCompare(got[:], h.token[:]) == 1
}

// jsonErrors turns the mux's own plain-text 404 and 405 into JSON errors.
type jsonErrors struct {
	http.ResponseWriter
	swallow bool
}

func (j *jsonErrors) WriteHeader(code int) {
	if (code == http.StatusNotFound || code == http.StatusMethodNotAllowed) &&
		strings.HasPrefix(j.Header().Get("Content-Type"), "text/plain") {
		j.swallow = true
		msg := "no such endpoint"
		if code == http.StatusMethodNotAllowed {
			msg = "method not allowed; allowed: " + j.Header().Get("Allow")
		}
		j.Header().Del("X-Content-Type-Options")
		writeJSON(j.ResponseWriter, code, apiError{Error: msg})
		return
	}
	j.ResponseWriter.WriteHeader(code)
}

func (j *jsonErrors) Write(b []byte) (int, error) {
	if j.swallow {
		return len(b), nil
	}
	return j.ResponseWriter.Write(b)
}

// Flush lets extra handlers stream.
func (j *jsonErrors) Flush() {
	if f, ok := j.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

type apiError struct {
	Error string `json:"error"`
	Field string `json:"field,omitempty"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false) // addresses and Message-IDs are <...>
	_ = enc.Encode(v)
}

func badField(w http.ResponseWriter, field, msg string) {
	writeJSON(w, http.StatusBadRequest, apiError{Error: field + ": " + msg, Field: field})
}

// fail maps an Ops error to a status.
func (h *handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	var fe *FieldError
	switch {
	case errors.As(err, &fe):
		badField(w, fe.Field, fe.Msg)
	case errors.Is(err, ErrNotFound), errors.Is(err, linkstate.ErrUnknown):
		writeJSON(w, http.StatusNotFound, apiError{Error: err.Error()})
	case errors.Is(err, ErrInvalid):
		writeJSON(w, http.StatusBadRequest, apiError{Error: err.Error()})
	default:
		h.log.Error("admin: request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		writeJSON(w, http.StatusInternalServerError, apiError{Error: err.Error()})
	}
}

// decode reads a JSON object body into v. Unknown fields are refused, so a
// typo is a 400 naming the field rather than a silent no-op.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	dec.UseNumber()
	err := dec.Decode(v)
	if err == nil {
		if _, extra := dec.Token(); extra != io.EOF {
			err = errors.New("trailing data after the JSON object")
		}
	}
	if err == nil {
		return true
	}
	var te *json.UnmarshalTypeError
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &te) && te.Field != "":
		badField(w, te.Field, fmt.Sprintf("must be a %s", jsonType(te.Type.String())))
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		f := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		badField(w, f, "unknown field")
	case errors.As(err, &mbe):
		writeJSON(w, http.StatusRequestEntityTooLarge, apiError{Error: "request body too large"})
	case errors.Is(err, io.EOF):
		writeJSON(w, http.StatusBadRequest, apiError{Error: "request body must be a JSON object"})
	default:
		writeJSON(w, http.StatusBadRequest, apiError{Error: "bad JSON body: " + err.Error()})
	}
	return false
}

func jsonType(goType string) string {
	switch goType {
	case "bool", "*bool":
		return "boolean"
	case "string":
		return "string"
	case "json.Number":
		return "number"
	}
	return "value of type " + goType
}

func by(r *http.Request) string {
	if b := strings.TrimSpace(r.Header.Get(ByHeader)); b != "" && len(b) <= 200 {
		return b
	}
	return "admin-api"
}

func (h *handler) getMinAge(w http.ResponseWriter, r *http.Request) {
	d := h.ops.StoreMinAge()
	writeJSON(w, http.StatusOK, MinAge{StoreMinAge: formatDuration(d), Seconds: d.Seconds()})
}

// setMinAge changes store_min_age (R6, O1).
func (h *handler) setMinAge(w http.ResponseWriter, r *http.Request) {
	var body struct {
		StoreMinAge *string `json:"store_min_age"`
	}
	if !decode(w, r, &body) {
		return
	}
	if body.StoreMinAge == nil {
		badField(w, "store_min_age", "required (a duration such as 24h, or 0 to disable the age check)")
		return
	}
	d, err := ParseStoreMinAge(*body.StoreMinAge)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if err := h.ops.SetStoreMinAge(r.Context(), d, by(r)); err != nil {
		h.fail(w, r, err)
		return
	}
	h.getMinAge(w, r)
}

func (h *handler) linkState(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, h.ops.LinkState())
}

func (h *handler) writeConnector(w http.ResponseWriter, name string) {
	for _, c := range h.ops.LinkState().Connectors {
		if c.Name == name {
			writeJSON(w, http.StatusOK, c)
			return
		}
	}
	writeJSON(w, http.StatusOK, OK{OK: true})
}

// connectorCost changes a connector's cost (R9, O1).
func (h *handler) connectorCost(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	var body struct {
		Cost any `json:"cost"` // any, so "ten" is a field error, not a JSON error
	}
	if !decode(w, r, &body) {
		return
	}
	num, ok := body.Cost.(json.Number)
	if !ok {
		badField(w, "cost", costMsg)
		return
	}
	cost, err := ParseCost(num.String())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if err := h.ops.SetConnectorCost(r.Context(), name, cost, by(r)); err != nil {
		h.fail(w, r, err)
		return
	}
	h.writeConnector(w, name)
}

// connectorState marks a connector up or down (R10, O1).
func (h *handler) connectorState(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	var body ConnectorState
	if !decode(w, r, &body) {
		return
	}
	if body.Up == nil {
		badField(w, "up", "required: true or false")
		return
	}
	if err := h.ops.SetConnectorState(r.Context(), name, *body.Up, by(r)); err != nil {
		h.fail(w, r, err)
		return
	}
	h.writeConnector(w, name)
}

// maintenance takes a server down for maintenance or back (R6b, R10).
func (h *handler) maintenance(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	var body Maintenance
	if !decode(w, r, &body) {
		return
	}
	if body.Maintenance == nil {
		badField(w, "maintenance", "required: true or false")
		return
	}
	if err := h.ops.SetServerMaintenance(r.Context(), name, *body.Maintenance, by(r)); err != nil {
		h.fail(w, r, err)
		return
	}
	for _, s := range h.ops.LinkState().Servers {
		if s.Name == name {
			writeJSON(w, http.StatusOK, s)
			return
		}
	}
	writeJSON(w, http.StatusOK, OK{OK: true})
}

// addStore adds a store whose created time is now (R6, O1).
func (h *handler) addStore(w http.ResponseWriter, r *http.Request) {
	var body StoreRequest
	if !decode(w, r, &body) {
		return
	}
	if body.Kind == "" {
		body.Kind = "public"
	}
	switch {
	case body.Name == "":
		badField(w, "name", "required")
	case body.Server == "":
		badField(w, "server", "required")
	case body.Kind != "public" && body.Kind != "mailbox":
		badField(w, "kind", fmt.Sprintf("%q is not public or mailbox", body.Kind))
	case body.Kind == "public" && body.Hierarchy == "":
		badField(w, "hierarchy", "required for a public store")
	default:
		if err := h.ops.AddStore(r.Context(), body.Server, body.Name, body.Kind, body.Hierarchy); err != nil {
			h.fail(w, r, err)
			return
		}
		writeJSON(w, http.StatusCreated, body)
	}
}

func (h *handler) addReplica(w http.ResponseWriter, r *http.Request) {
	var body ReplicaRequest
	if !decode(w, r, &body) {
		return
	}
	switch {
	case body.Hierarchy == "":
		badField(w, "hierarchy", "required")
	case body.Folder == "":
		badField(w, "folder", "required")
	case body.Store == "":
		badField(w, "store", "required")
	default:
		if err := h.ops.AddReplica(r.Context(), body.Hierarchy, body.Folder, body.Store); err != nil {
			h.fail(w, r, err)
			return
		}
		writeJSON(w, http.StatusCreated, body)
	}
}

func (h *handler) renameFolder(w http.ResponseWriter, r *http.Request) { h.folderOp(w, r, true) }

func (h *handler) deleteFolder(w http.ResponseWriter, r *http.Request) { h.folderOp(w, r, false) }

// folderOp renames (to required) or deletes a public folder.
func (h *handler) folderOp(w http.ResponseWriter, r *http.Request, rename bool) {
	var body FolderRequest
	if !decode(w, r, &body) {
		return
	}
	switch {
	case body.Hierarchy == "":
		badField(w, "hierarchy", "required")
	case body.Folder == "":
		badField(w, "folder", "required")
	case rename && body.To == "":
		badField(w, "to", "required: the new path")
	default:
		var err error
		if rename {
			err = h.ops.RenameFolder(r.Context(), body.Hierarchy, body.Folder, body.To)
		} else {
			err = h.ops.DeleteFolder(r.Context(), body.Hierarchy, body.Folder)
		}
		if err != nil {
			h.fail(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, body)
	}
}

func (h *handler) setPermission(w http.ResponseWriter, r *http.Request) { h.permissionOp(w, r, true) }

func (h *handler) removePermission(w http.ResponseWriter, r *http.Request) {
	h.permissionOp(w, r, false)
}

// permissionOp sets (role required) or removes a principal's role on a
// public folder.
func (h *handler) permissionOp(w http.ResponseWriter, r *http.Request, set bool) {
	var body PermissionRequest
	if !decode(w, r, &body) {
		return
	}
	if !set {
		body.Role = ""
	}
	switch {
	case body.Hierarchy == "":
		badField(w, "hierarchy", "required")
	case body.Folder == "":
		badField(w, "folder", "required")
	case body.Principal == "":
		badField(w, "principal", "required: a user name, Anonymous or Default")
	case set && body.Role == "":
		badField(w, "role", "required: Owner, PublishingEditor, Editor, PublishingAuthor, Author, NonEditingAuthor, Reviewer, Contributor or None")
	default:
		if err := h.ops.SetFolderPermission(r.Context(), body.Hierarchy, body.Folder, body.Principal, body.Role); err != nil {
			h.fail(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, body)
	}
}

// route explains a routing decision (O2).
func (h *handler) route(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	to := strings.TrimSpace(q.Get("to"))
	if to == "" {
		badField(w, "to", "required: the recipient address")
		return
	}
	now := time.Now()
	if s := q.Get("now"); s != "" {
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			badField(w, "now", fmt.Sprintf("%q is not an RFC 3339 time", s))
			return
		}
		now = t
	}
	d, err := h.ops.Route(r.Context(), strings.TrimSpace(q.Get("at")), to, now)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, d)
}

func (h *handler) queueList(w http.ResponseWriter, r *http.Request) {
	items, err := h.ops.QueueList(r.Context())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if items == nil {
		items = []QueueItem{}
	}
	writeJSON(w, http.StatusOK, struct {
		Items []QueueItem `json:"items"`
	}{items})
}

func (h *handler) queueShow(w http.ResponseWriter, r *http.Request) {
	it, err := h.ops.QueueShow(r.Context(), r.PathValue("id"))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, it)
}

func (h *handler) queueDelete(w http.ResponseWriter, r *http.Request) {
	if err := h.ops.QueueDelete(r.Context(), r.PathValue("id")); err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, OK{OK: true})
}

func (h *handler) queueRetry(w http.ResponseWriter, r *http.Request) {
	if err := h.ops.QueueRetry(r.Context(), r.PathValue("id")); err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, OK{OK: true})
}

func (h *handler) queueFlush(w http.ResponseWriter, r *http.Request) {
	if err := h.ops.QueueRetry(r.Context(), ""); err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, OK{OK: true})
}

// reload re-reads the config; a bad one is a 400 carrying the config
// errors, and the old config stays in force (O5).
func (h *handler) reload(w http.ResponseWriter, r *http.Request) {
	if err := h.ops.Reload(r.Context()); err != nil {
		var fe *FieldError
		if errors.As(err, &fe) || errors.Is(err, ErrNotFound) {
			h.fail(w, r, err)
			return
		}
		writeJSON(w, http.StatusBadRequest, apiError{Error: err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, OK{OK: true})
}
