package admin

import (
	"crypto/tls"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

const tok = "s3cret-token"

func serve(h http.Handler, method, path, body, token string) *httptest.ResponseRecorder {
	var req *http.Request
	if body != "" {
		req = httptest.NewRequest(method, path, strings.NewReader(body))
	} else {
		req = httptest.NewRequest(method, path, nil)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set(ByHeader, "tester")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

func decodeErr(t *testing.T, w *httptest.ResponseRecorder) apiError {
	t.Helper()
	var e apiError
	if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil {
		t.Fatalf("error body %q is not JSON: %v", w.Body.String(), err)
	}
	return e
}

func TestUnauthorized(t *testing.T) {
	f := newFake()
	extra := map[string]http.Handler{"/metrics": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("m 1\n")) })}
	h := NewHandler(f, tok, extra, nil)
	for _, c := range []struct{ name, path, token string }{
		{"no token", "/v1/linkstate", ""},
		{"wrong token", "/v1/linkstate", "nope"},
		{"token prefix", "/v1/linkstate", tok[:4]},
		{"unknown path", "/v1/nothing", ""},
		{"extra handler", "/metrics", ""},
	} {
		w := serve(h, "GET", c.path, "", c.token)
		if w.Code != http.StatusUnauthorized {
			t.Errorf("%s: status %d, want 401", c.name, w.Code)
		}
		if w.Header().Get("WWW-Authenticate") == "" {
			t.Errorf("%s: no WWW-Authenticate", c.name)
		}
	}
	if len(f.calls) != 0 {
		t.Fatalf("Ops called without auth: %v", f.calls)
	}
	if w := serve(h, "GET", "/metrics", "", tok); w.Code != 200 || w.Body.String() != "m 1\n" {
		t.Fatalf("extra handler with token: %d %q", w.Code, w.Body.String())
	}
	// An empty configured token authorizes nobody.
	if w := serve(NewHandler(f, "", nil, nil), "GET", "/v1/linkstate", "", " "); w.Code != 401 {
		t.Fatalf("empty token: %d", w.Code)
	}
}

func TestBadRequestNamesField(t *testing.T) {
	h := NewHandler(newFake(), tok, nil, nil)
	for _, c := range []struct{ name, method, path, body, field string }{
		{"cost too high", "PUT", "/v1/connectors/tokyo-berlin/cost", `{"cost":101}`, "cost"},
		{"cost zero", "PUT", "/v1/connectors/tokyo-berlin/cost", `{"cost":0}`, "cost"},
		{"cost fraction", "PUT", "/v1/connectors/tokyo-berlin/cost", `{"cost":2.5}`, "cost"},
		{"cost string", "PUT", "/v1/connectors/tokyo-berlin/cost", `{"cost":"ten"}`, "cost"},
		{"cost missing", "PUT", "/v1/connectors/tokyo-berlin/cost", `{}`, "cost"},
		{"unknown field", "PUT", "/v1/connectors/tokyo-berlin/cost", `{"cots":5}`, "cots"},
		{"state missing", "PUT", "/v1/connectors/tokyo-berlin/state", `{}`, "up"},
		{"state not bool", "PUT", "/v1/connectors/tokyo-berlin/state", `{"up":"yes"}`, "up"},
		{"bad duration", "PUT", "/v1/store-min-age", `{"store_min_age":"two days"}`, "store_min_age"},
		{"negative duration", "PUT", "/v1/store-min-age", `{"store_min_age":"-1h"}`, "store_min_age"},
		{"maintenance missing", "PUT", "/v1/servers/ex1/maintenance", `{}`, "maintenance"},
		{"store name missing", "POST", "/v1/stores", `{"server":"ex1","hierarchy":"Public Folders"}`, "name"},
		{"store server missing", "POST", "/v1/stores", `{"name":"s","hierarchy":"Public Folders"}`, "server"},
		{"store kind", "POST", "/v1/stores", `{"server":"ex1","name":"s","kind":"private"}`, "kind"},
		{"store hierarchy", "POST", "/v1/stores", `{"server":"ex1","name":"s"}`, "hierarchy"},
		{"replica folder", "POST", "/v1/replicas", `{"hierarchy":"Public Folders","store":"ex1-pub"}`, "folder"},
		{"replica from ops", "POST", "/v1/replicas", `{"hierarchy":"H","folder":"/f","store":"taken"}`, "store"},
		{"route to missing", "GET", "/v1/route?at=ex1", "", "to"},
		{"route bad now", "GET", "/v1/route?to=a@contoso.example&now=yesterday", "", "now"},
	} {
		w := serve(h, c.method, c.path, c.body, tok)
		if w.Code != http.StatusBadRequest {
			t.Errorf("%s: status %d (%s), want 400", c.name, w.Code, w.Body.String())
			continue
		}
		if e := decodeErr(t, w); e.Field != c.field || !strings.HasPrefix(e.Error, c.field+": ") {
			t.Errorf("%s: error %+v, want field %q", c.name, e, c.field)
		}
	}
	w := serve(h, "PUT", "/v1/connectors/tokyo-berlin/cost", `{"cost":101}`, tok)
	if e := decodeErr(t, w); e.Error != "cost: must be an integer 1–100" {
		t.Errorf("cost message %q", e.Error)
	}
	for _, body := range []string{"", "not json", `{"cost":5} {"cost":6}`} {
		if w := serve(h, "PUT", "/v1/connectors/tokyo-berlin/cost", body, tok); w.Code != 400 {
			t.Errorf("body %q: status %d, want 400", body, w.Code)
		}
	}
}

func TestNotFoundAndMethod(t *testing.T) {
	h := NewHandler(newFake(), tok, nil, nil)
	for _, c := range []struct{ method, path, body string }{
		{"PUT", "/v1/connectors/nowhere/cost", `{"cost":5}`}, // linkstate.ErrUnknown
		{"PUT", "/v1/connectors/nowhere/state", `{"up":false}`},
		{"PUT", "/v1/servers/ex9/maintenance", `{"maintenance":true}`},
		{"POST", "/v1/stores", `{"server":"ex9","name":"s","hierarchy":"H"}`},
		{"GET", "/v1/queue/zz", ""},
		{"DELETE", "/v1/queue/zz", ""},
		{"POST", "/v1/queue/zz/retry", ""},
		{"GET", "/v1/route?to=nobody@contoso.example", ""},
		{"GET", "/v1/no-such-endpoint", ""},
	} {
		w := serve(h, c.method, c.path, c.body, tok)
		if w.Code != http.StatusNotFound {
			t.Errorf("%s %s: status %d, want 404", c.method, c.path, w.Code)
			continue
		}
		if e := decodeErr(t, w); e.Error == "" {
			t.Errorf("%s %s: empty error", c.method, c.path)
		}
	}
	w := serve(h, "POST", "/v1/linkstate", "", tok)
	if w.Code != http.StatusMethodNotAllowed {
		t.Fatalf("POST /v1/linkstate: %d, want 405", w.Code)
	}
	if e := decodeErr(t, w); !strings.Contains(e.Error, "GET") {
		t.Fatalf("405 error %q does not name the allowed method", e.Error)
	}
}

// Each endpoint calls the right Ops method with the right arguments (O1, O2, O5).
func TestEndpointsCallOps(t *testing.T) {
	f := newFake()
	h := NewHandler(f, tok, nil, nil)
	for _, c := range []struct {
		method, path, body string
		code               int
		call, reply        string
	}{
		{"GET", "/v1/store-min-age", "", 200, "", `"store_min_age": "48h"`},
		{"PUT", "/v1/store-min-age", `{"store_min_age":"24h"}`, 200, "SetStoreMinAge 24h0m0s tester", `"store_min_age": "24h"`},
		{"PUT", "/v1/store-min-age", `{"store_min_age":"0"}`, 200, "SetStoreMinAge 0s tester", `"store_min_age": "0s"`},
		{"GET", "/v1/linkstate", "", 200, "", `"version": 7`},
		{"PUT", "/v1/connectors/tokyo-berlin/cost", `{"cost":20}`, 200, "SetConnectorCost tokyo-berlin 20 tester", `"cost": 20`},
		{"PUT", "/v1/connectors/tokyo-berlin/state", `{"up":false}`, 200, "SetConnectorState tokyo-berlin false tester", `"up": false`},
		{"PUT", "/v1/servers/ex1/maintenance", `{"maintenance":true}`, 200, "SetServerMaintenance ex1 true tester", `"down": true`},
		{"POST", "/v1/stores", `{"server":"ex1","name":"ex1-pub2","hierarchy":"Public Folders"}`, 201, "AddStore ex1 ex1-pub2 public Public Folders", `"kind": "public"`},
		{"POST", "/v1/stores", `{"server":"ex1","name":"mbx","kind":"mailbox"}`, 201, "AddStore ex1 mbx mailbox ", `"name": "mbx"`},
		{"POST", "/v1/replicas", `{"hierarchy":"Public Folders","folder":"/Sales","store":"ex3-pub"}`, 201, "AddReplica Public Folders /Sales ex3-pub", `"folder": "/Sales"`},
		{"GET", "/v1/route?to=sales@contoso.example&at=ex2&now=2025-07-01T00:00:00Z", "", 200, "Route ex2 sales@contoso.example 2025-07-01T00:00:00Z", `"store": "ex3-pub"`},
		{"GET", "/v1/queue", "", 200, "QueueList", `"id": "q1"`},
		{"GET", "/v1/queue/q1", "", 200, "QueueShow q1", `"reason": "no replica reachable"`},
		{"POST", "/v1/queue/q1/retry", "", 200, "QueueRetry q1", `"ok": true`},
		{"POST", "/v1/queue/flush", "", 200, "QueueRetry ", `"ok": true`},
		{"DELETE", "/v1/queue/q1", "", 200, "QueueDelete q1", `"ok": true`},
		{"POST", "/v1/reload", "", 200, "Reload", `"ok": true`},
	} {
		before := len(f.calls)
		w := serve(h, c.method, c.path, c.body, tok)
		if w.Code != c.code {
			t.Errorf("%s %s: status %d (%s), want %d", c.method, c.path, w.Code, w.Body.String(), c.code)
			continue
		}
		if c.call != "" && (len(f.calls) != before+1 || f.lastCall() != c.call) {
			t.Errorf("%s %s: calls %q, want %q", c.method, c.path, f.calls[before:], c.call)
		}
		if !strings.Contains(w.Body.String(), c.reply) {
			t.Errorf("%s %s: reply %s lacks %s", c.method, c.path, w.Body.String(), c.reply)
		}
		if ct := w.Header().Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s %s: content type %q", c.method, c.path, ct)
		}
	}
	if f.minAge != 0 || f.conns["tokyo-berlin"].Cost != 20 || !f.srvs["ex1"].Down {
		t.Fatalf("changes did not reach Ops: minAge %s, conn %+v, server %+v", f.minAge, f.conns["tokyo-berlin"], f.srvs["ex1"])
	}
	// Route without now uses the server's clock; without at, "" (this server).
	before := time.Now().Add(-time.Second)
	serve(h, "GET", "/v1/route?to=sales@contoso.example", "", tok)
	var at, rcpt, now string
	parts := strings.SplitN(f.lastCall(), " ", 4)
	at, rcpt, now = parts[1], parts[2], parts[3]
	if tm, err := time.Parse(time.RFC3339, now); at != "" || rcpt != "sales@contoso.example" || err != nil || tm.Before(before.Truncate(time.Second)) {
		t.Fatalf("route defaults: %q", f.lastCall())
	}
}

// O5: a reload with a bad config is refused with the config's message.
func TestReloadBadConfigO5(t *testing.T) {
	f := newFake()
	f.reload = errBadConfig
	w := serve(NewHandler(f, tok, nil, nil), "POST", "/v1/reload", "", tok)
	if w.Code != 400 || decodeErr(t, w).Error != errBadConfig.Error() {
		t.Fatalf("bad reload: %d %s", w.Code, w.Body.String())
	}
}

func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{48 * time.Hour: "48h", 90 * time.Minute: "1h30m", 5 * time.Minute: "5m", 0: "0s", 90 * time.Second: "1m30s", time.Hour + time.Second: "1h0m1s"} {
		if got := formatDuration(d); got != want {
			t.Errorf("%v: %q, want %q", d, got, want)
		}
	}
}

// Issue 10 item 5: with WithPeers, a request over TLS from a peer server
// (as the node proves it from the client certificate) may read without
// the token and may not change anything; the same request without TLS, or
// from no peer, needs the token.
func TestHandlerPeerReads(t *testing.T) {
	f := newFake()
	h := NewHandler(f, tok, nil, nil, WithPeers(func(r *http.Request) (string, bool) {
		return "ex2", r.Header.Get("X-Test-Peer") == "yes" // the node checks the certificate
	}))
	for _, c := range []struct {
		name, method, path string
		tls, peer          bool
		want               int
	}{
		{"peer reads link state", http.MethodGet, "/v1/linkstate", true, true, http.StatusOK},
		{"peer reads the queue", http.MethodGet, "/v1/queue", true, true, http.StatusOK},
		{"peer may not change", http.MethodPut, "/v1/store-min-age", true, true, http.StatusForbidden},
		{"peer may not reload", http.MethodPost, "/v1/reload", true, true, http.StatusForbidden},
		{"no TLS: no peer", http.MethodGet, "/v1/linkstate", false, true, http.StatusUnauthorized},
		{"TLS, not a peer", http.MethodGet, "/v1/linkstate", true, false, http.StatusUnauthorized},
	} {
		req := httptest.NewRequest(c.method, c.path, strings.NewReader(`{"store_min_age":"1h"}`))
		if c.tls {
			req.TLS = &tls.ConnectionState{HandshakeComplete: true}
		}
		if c.peer {
			req.Header.Set("X-Test-Peer", "yes")
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != c.want {
			t.Errorf("%s: %d %s, want %d", c.name, w.Code, w.Body.String(), c.want)
		}
	}
	if strings.Contains(f.lastCall(), "SetStoreMinAge") || strings.Contains(f.lastCall(), "Reload") {
		t.Errorf("a peer's change reached the server: %s", f.lastCall())
	}
}
