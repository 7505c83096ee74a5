package tracking

import (
	"strings"
	"time"
)

// Event kinds the queue manager records. Kind is a free string so a new
// step needs no change here; these are the ones SPEC O4 names.
const (
	Received  = "received"
	Routed    = "routed"
	Queued    = "queued"
	Relayed   = "relayed"
	Delivered = "delivered"
	Deferred  = "deferred"
	NDR       = "ndr"
	Expired   = "expired"
)

// Event is one step of one message on one server.
type Event struct {
	Time      time.Time         `json:"time"`
	Server    string            `json:"server"`
	Kind      string            `json:"event"`
	QueueID   string            `json:"queue_id"`
	OriginID  string            `json:"origin_id"`
	MessageID string            `json:"message_id"`
	Recipient string            `json:"recipient,omitempty"`
	Details   map[string]string `json:"details,omitempty"` // rule, store, folder, path, cost, reason, next_hop, code ...
}

// maxIDLen bounds an indexed id; longer ids are indexed (and looked up) by
// their prefix, which keeps keys small whatever a sender puts in Message-ID.
const maxIDLen = 512

// normID is the index form of an id: Message-IDs with or without their
// angle brackets and queue ids all compare case-insensitively. "" means the
// id cannot be indexed.
func normID(id string) string {
	id = strings.TrimSpace(id)
	id = strings.TrimPrefix(id, "<")
	id = strings.TrimSuffix(id, ">")
	id = strings.TrimSpace(id)
	if strings.IndexByte(id, 0) >= 0 {
		return ""
	}
	if len(id) > maxIDLen {
		id = id[:maxIDLen]
	}
	return strings.ToLower(id)
}

// ids returns the distinct index forms of an event's ids.
func (e *Event) ids() []string {
	out := make([]string, 0, 3)
	for _, raw := range [...]string{e.MessageID, e.QueueID, e.OriginID} {
		id := normID(raw)
		if id == "" {
			continue
		}
		dup := false
		for _, o := range out {
			dup = dup || o == id
		}
		if !dup {
			out = append(out, id)
		}
	}
	return out
}
