package tracking

import (
	"encoding/json"
	"errors"
	"net/http"
)

// Answer is the admin API's reply to a tracking query, and what Collect
// reads from each server.
type Answer struct {
	Server string  `json:"server"`
	Events []Event `json:"events"`
}

// Handler serves GET ?id=<Message-ID or queue id> with this server's
// events as JSON (Answer). Authentication is the admin mux's job.
func Handler(l *Log) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "use GET ?id=<message-id or queue id>"})
			return
		}
		id := r.URL.Query().Get("id")
		if normID(id) == "" {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "missing id: use ?id=<message-id or queue id>"})
			return
		}
		events, err := l.Query(r.Context(), id)
		switch {
		case errors.Is(err, ErrClosed):
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
			return
		case err != nil:
			writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, Answer{Server: l.server, Events: events})
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false) // Message-IDs are <...>
	_ = enc.Encode(v)        // the client is gone if this fails
}
