// Package envelope is a queued message's envelope: sender, recipients with
// their routing state, and the message-level routing metadata (origin queue
// id, hop count, servers visited, trace context). It says how the envelope
// is stored (JSON in the queue) and how the routing metadata travels between
// servers (X-Pfrouter-* header fields, trusted only on sessions
// authenticated as a server of the organization, SPEC S5).
//
// smtpd builds envelopes; qmgr updates and relays them.
package envelope

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Recipient stages: how much of the routing decision is already made.
const (
	StageNew       = ""          // decide from scratch (step 1 here)
	StageHierarchy = "hierarchy" // step 1 chose HierarchyStore on HierarchyServer; step 2 runs there
	StageTarget    = "target"    // destination decided: forward to Server, deliver into Store
)

// Recipient states.
const (
	Pending   = "pending"
	Delivered = "delivered" // delivered locally or handed to the next hop
	Failed    = "failed"    // a non-delivery report was sent (or is due)
)

// Recipient is one recipient and its routing state.
type Recipient struct {
	Addr            string    `json:"addr"`
	Stage           string    `json:"stage,omitempty"`
	HierarchyStore  string    `json:"hstore,omitempty"`
	HierarchyServer string    `json:"hserver,omitempty"`
	Server          string    `json:"server,omitempty"`
	Store           string    `json:"store,omitempty"`
	Excluded        []string  `json:"excluded,omitempty"`
	State           string    `json:"state"`
	Attempts        int       `json:"attempts,omitempty"`
	NextAttempt     time.Time `json:"next_attempt,omitzero"`
	Waiting         bool      `json:"waiting,omitempty"` // no route now; retried when link state changes
	Code            string    `json:"code,omitempty"`
	Reason          string    `json:"reason,omitempty"`
	NextHop         string    `json:"next_hop,omitempty"`
	// Visits are the servers this recipient left, each with the stage and
	// destination it was routed toward there: what R14 compares against.
	Visits []Visit `json:"visits,omitempty"`
	// Outbound names the outbound connector of a recipient outside the
	// organization (stage target: Server is the connector's source server).
	Outbound string `json:"outbound,omitempty"`
	// Blockers are, for a recipient waiting for a routing decision (R6b,
	// R10), the servers whose reachability can change it: the queue
	// manager wakes it when one of them changes. Not stored.
	Blockers []string `json:"-"`
}

// Visit is one pass of a recipient through a server (R14): the server it
// left, the stage it was in when it left, and the destination of that
// stage (the hierarchy store in stage hierarchy, the target store in
// stage target). A route may pass a server twice (a1, a2, a1, b1: first
// toward the hierarchy store, then toward the replica); it is a loop only
// when a recipient comes back to a server in the same stage for the same
// destination.
type Visit struct {
	Server string `json:"server"`
	Stage  string `json:"stage,omitempty"`
	Dest   string `json:"dest,omitempty"`
}

// Dest is the destination of the recipient's current stage (see Visit).
func (r *Recipient) Dest() string {
	switch r.Stage {
	case StageHierarchy:
		return r.HierarchyStore
	case StageTarget:
		if r.Outbound != "" {
			return "outbound:" + r.Outbound
		}
		return r.Store
	}
	return ""
}

// maxVisits bounds the visits a recipient header may carry; the hop limit
// (at most 1000) ends a message long before.
const maxVisits = 1000

// Envelope is what the queue stores beside the body.
type Envelope struct {
	ID          string      `json:"id"`
	OriginID    string      `json:"origin_id"` // queue id at the first server: the idempotency key of delivery
	MessageID   string      `json:"message_id,omitempty"`
	From        string      `json:"from"`
	SenderUser  string      `json:"sender_user,omitempty"` // authenticated submitter; "" is Anonymous
	Arrived     time.Time   `json:"arrived"`
	FirstSeen   time.Time   `json:"first_seen"` // at the origin server; expiry counts from it
	Size        int64       `json:"size"`       // as received at the origin server (Route.Size)
	Hops        int         `json:"hops"`
	Visited     []string    `json:"visited,omitempty"`
	TraceParent string      `json:"traceparent,omitempty"`
	Recipients  []Recipient `json:"recipients"`
	// Bounce marks a non-delivery report: it never causes another one.
	Bounce bool `json:"bounce,omitempty"`
}

// Marshal encodes an envelope for the queue.
func (e *Envelope) Marshal() []byte {
	b, err := json.Marshal(e)
	if err != nil {
		panic(fmt.Sprintf("envelope: %v", err)) // only plain fields: cannot fail
	}
	return b
}

// Unmarshal decodes a queued envelope.
func Unmarshal(b []byte) (*Envelope, error) {
	var e Envelope
	if err := json.Unmarshal(b, &e); err != nil {
		return nil, fmt.Errorf("corrupt envelope: %w", err)
	}
	return &e, nil
}

// Header field names of the relay metadata. They are removed from every
// message received from anyone but an authenticated server, and before
// local delivery.
const (
	HeaderRoute = "X-Pfrouter-Route"
	HeaderRcpt  = "X-Pfrouter-Rcpt"
)

// IsMetaHeader reports whether a header field is relay metadata.
func IsMetaHeader(name string) bool {
	return strings.EqualFold(name, HeaderRoute) || strings.EqualFold(name, HeaderRcpt)
}

// IsInternalHeader reports whether a header field must neither come in from
// a client nor go out of the organization: every X-Pfrouter-* field (relay
// metadata, admin and queue ids, whatever a later reader might take as
// ours) and the W3C trace context.
func IsInternalHeader(name string) bool {
	k := strings.ToLower(strings.TrimSpace(name))
	return strings.HasPrefix(k, "x-pfrouter-") || k == "traceparent" || k == "tracestate"
}

// Route is the message-level metadata carried between servers.
type Route struct {
	OriginID  string
	FirstSeen time.Time
	Hops      int
	Visited   []string
	Bounce    bool
	User      string // the submitter's principal at the origin (R17 was checked there)
	// Size is the message's size as the origin server received it, before
	// the organization added Received and relay headers: folder size
	// limits (R11) are checked against it on every server, so a message
	// under a limit where it entered stays under it all the way.
	Size int64
}

// EncodeRoute renders the message-level header value.
func EncodeRoute(r Route) string {
	v := url.Values{}
	v.Set("v", "1")
	v.Set("origin", r.OriginID)
	v.Set("first", strconv.FormatInt(r.FirstSeen.Unix(), 10))
	v.Set("hops", strconv.Itoa(r.Hops))
	v.Set("visited", strings.Join(r.Visited, ","))
	if r.Bounce {
		v.Set("bounce", "1")
	}
	if r.User != "" {
		v.Set("user", r.User)
	}
	if r.Size > 0 {
		v.Set("size", strconv.FormatInt(r.Size, 10))
	}
	return v.Encode()
}

// DecodeRoute parses a message-level header value.
func DecodeRoute(s string) (Route, error) {
	v, err := url.ParseQuery(strings.TrimSpace(s))
	if err != nil {
		return Route{}, fmt.Errorf("bad %s: %w", HeaderRoute, err)
	}
	if v.Get("v") != "1" {
		return Route{}, fmt.Errorf("bad %s: unknown version %q", HeaderRoute, v.Get("v"))
	}
	hops, err := strconv.Atoi(v.Get("hops"))
	if err != nil || hops < 0 || hops > 10000 {
		return Route{}, fmt.Errorf("bad %s: hops %q", HeaderRoute, v.Get("hops"))
	}
	first, err := strconv.ParseInt(v.Get("first"), 10, 64)
	if err != nil {
		return Route{}, fmt.Errorf("bad %s: first %q", HeaderRoute, v.Get("first"))
	}
	r := Route{OriginID: v.Get("origin"), FirstSeen: time.Unix(first, 0), Hops: hops, Bounce: v.Get("bounce") == "1", User: v.Get("user")}
	if r.OriginID == "" {
		return Route{}, fmt.Errorf("bad %s: no origin", HeaderRoute)
	}
	if sz := v.Get("size"); sz != "" {
		if r.Size, err = strconv.ParseInt(sz, 10, 64); err != nil || r.Size < 0 {
			return Route{}, fmt.Errorf("bad %s: size %q", HeaderRoute, sz)
		}
	}
	if vs := v.Get("visited"); vs != "" {
		r.Visited = strings.Split(vs, ",")
	}
	return r, nil
}

// EncodeRcpt renders a recipient's routing state for the next hop.
func EncodeRcpt(r Recipient) string {
	v := url.Values{}
	v.Set("rcpt", r.Addr)
	if r.Stage != "" {
		v.Set("stage", r.Stage)
	}
	for k, val := range map[string]string{"hstore": r.HierarchyStore, "hserver": r.HierarchyServer, "server": r.Server, "store": r.Store, "outbound": r.Outbound} {
		if val != "" {
			v.Set(k, val)
		}
	}
	if len(r.Excluded) > 0 {
		v.Set("excl", strings.Join(r.Excluded, ","))
	}
	for _, vi := range r.Visits {
		// Each part is escaped so that names may hold the separator.
		v.Add("via", url.QueryEscape(vi.Server)+":"+vi.Stage+":"+url.QueryEscape(vi.Dest))
	}
	return v.Encode()
}

// DecodeRcpt parses a recipient header value.
func DecodeRcpt(s string) (Recipient, error) {
	v, err := url.ParseQuery(strings.TrimSpace(s))
	if err != nil {
		return Recipient{}, fmt.Errorf("bad %s: %w", HeaderRcpt, err)
	}
	r := Recipient{Addr: v.Get("rcpt"), Stage: v.Get("stage"), HierarchyStore: v.Get("hstore"), HierarchyServer: v.Get("hserver"),
		Server: v.Get("server"), Store: v.Get("store"), Outbound: v.Get("outbound"), State: Pending}
	if r.Addr == "" {
		return Recipient{}, fmt.Errorf("bad %s: no rcpt", HeaderRcpt)
	}
	switch r.Stage {
	case StageNew:
	case StageHierarchy:
		if r.HierarchyStore == "" || r.HierarchyServer == "" {
			return Recipient{}, fmt.Errorf("bad %s: stage hierarchy without hstore/hserver", HeaderRcpt)
		}
	case StageTarget:
		if r.Server == "" || r.Store == "" && r.Outbound == "" {
			return Recipient{}, fmt.Errorf("bad %s: stage target without server and store or outbound connector", HeaderRcpt)
		}
	default:
		return Recipient{}, fmt.Errorf("bad %s: unknown stage %q", HeaderRcpt, r.Stage)
	}
	if e := v.Get("excl"); e != "" {
		r.Excluded = strings.Split(e, ",")
	}
	vias := v["via"]
	if len(vias) > maxVisits {
		return Recipient{}, fmt.Errorf("bad %s: %d visits, more than %d", HeaderRcpt, len(vias), maxVisits)
	}
	for _, via := range vias {
		parts := strings.Split(via, ":")
		if len(parts) != 3 {
			return Recipient{}, fmt.Errorf("bad %s: via %q is not server:stage:destination", HeaderRcpt, via)
		}
		srv, err1 := url.QueryUnescape(parts[0])
		dest, err2 := url.QueryUnescape(parts[2])
		if err1 != nil || err2 != nil || srv == "" {
			return Recipient{}, fmt.Errorf("bad %s: via %q", HeaderRcpt, via)
		}
		switch parts[1] {
		case StageNew, StageHierarchy, StageTarget:
		default:
			return Recipient{}, fmt.Errorf("bad %s: via %q: unknown stage", HeaderRcpt, via)
		}
		r.Visits = append(r.Visits, Visit{Server: srv, Stage: parts[1], Dest: dest})
	}
	return r, nil
}
