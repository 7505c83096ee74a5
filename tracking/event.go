package tracking

import (
	"bytes"
	"encoding/json"
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
	Time      time.Time `json:"time"`
	Server    string    `json:"server"`
	Kind      string    `json:"event"`
	QueueID   string    `json:"queue_id"`
	OriginID  string    `json:"origin_id"`
	MessageID string    `json:"message_id"`
	Recipient string    `json:"recipient,omitempty"`
	Details   Details   `json:"details,omitempty"` // rule, store, folder, path, cost, reason, next_hop, code ...
}

// Details are an event's facts by name. Values are kept as text; in JSON a
// value that is a plain integer (a cost, a hop count, a size) is written as
// a number, so tools read numbers as numbers, and either form is read back.
type Details map[string]string

// MarshalJSON writes integer values as JSON numbers.
func (d Details) MarshalJSON() ([]byte, error) {
	if d == nil {
		return []byte("null"), nil
	}
	out := make(map[string]json.RawMessage, len(d))
	for k, v := range d {
		if isJSONInteger(v) {
			out[k] = json.RawMessage(v)
			continue
		}
		b, err := marshalNoEscape(v)
		if err != nil {
			return nil, err
		}
		out[k] = b
	}
	return marshalNoEscape(out)
}

// UnmarshalJSON reads strings, numbers and booleans as text.
func (d *Details) UnmarshalJSON(b []byte) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	if raw == nil {
		*d = nil
		return nil
	}
	out := make(Details, len(raw))
	for k, v := range raw {
		var s string
		if err := json.Unmarshal(v, &s); err == nil {
			out[k] = s
			continue
		}
		out[k] = strings.TrimSpace(string(v))
	}
	*d = out
	return nil
}

// isJSONInteger: an optional minus, then 0 or a digit 1-9 and at most 14
// more digits (exact in a float64, so every JSON reader keeps it).
func isJSONInteger(s string) bool {
	t := strings.TrimPrefix(s, "-")
	if t == "" || len(t) > 15 || (len(t) > 1 && t[0] == '0') {
		return false
	}
	for _, c := range t {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// marshalNoEscape is json.Marshal without HTML escaping: tracking data is
// read by people and tools, never embedded in HTML, and Message-IDs are
// full of angle brackets.
func marshalNoEscape(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
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
