package tracking

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestHandler(t *testing.T) {
	l := openLog(t, t.TempDir(), WithServer("ex1"))
	defer l.Close()
	for _, e := range route("", "Q1", "Q1", "<m1@contoso.example>", t0) {
		l.Append(e)
	}
	srv := httptest.NewServer(Handler(l))
	defer srv.Close()

	resp, err := http.Get(srv.URL + "?id=" + "%3Cm1%40contoso.example%3E")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("status %s, content type %q", resp.Status, resp.Header.Get("Content-Type"))
	}
	var a Answer
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
		t.Fatal(err)
	}
	if a.Server != "ex1" || kinds(a.Events) != "ex1:received ex1:routed ex1:relayed" {
		t.Errorf("answer = %+v", a)
	}

	for _, tc := range []struct {
		method, query string
		status        int
	}{
		{"GET", "", http.StatusBadRequest},
		{"GET", "?id=%3C%3E", http.StatusBadRequest},
		{"POST", "?id=Q1", http.StatusMethodNotAllowed},
	} {
		req, _ := http.NewRequest(tc.method, srv.URL+tc.query, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body map[string]string
		json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || body["error"] == "" {
			t.Errorf("%s %q: status %d body %v, want %d with an error", tc.method, tc.query, resp.StatusCode, body, tc.status)
		}
	}

	// Unknown ids are an empty list, not null.
	resp, err = http.Get(srv.URL + "?id=nope")
	if err != nil {
		t.Fatal(err)
	}
	var raw bytes.Buffer
	raw.ReadFrom(resp.Body)
	resp.Body.Close()
	if !strings.Contains(raw.String(), `"events":[]`) {
		t.Errorf("unknown id answer = %s", raw.String())
	}
}

// adminMux mounts Handler the way the admin server does, behind a bearer
// token.
func adminMux(l *Log, token string) http.Handler {
	mux := http.NewServeMux()
	h := Handler(l)
	mux.Handle(Path, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+token {
			http.Error(w, `{"error":"bad token"}`, http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	}))
	return mux
}

// O4: a query on all servers shows the whole route in time order, and a
// server that does not answer is named.
func TestO4CollectAcrossServers(t *testing.T) {
	mid := "<m1@contoso.example>"
	l1 := openLog(t, t.TempDir(), WithServer("ex1"))
	defer l1.Close()
	l3 := openLog(t, t.TempDir(), WithServer("ex3"))
	defer l3.Close()
	for _, e := range route("", "Q1", "Q1", mid, t0) {
		l1.Append(e)
	}
	l3.Append(Event{Time: t0.Add(10 * time.Millisecond), Kind: Received, QueueID: "Q3", OriginID: "Q1", MessageID: mid})
	l3.Append(Event{Time: t0.Add(11 * time.Millisecond), Kind: Delivered, QueueID: "Q3", OriginID: "Q1", MessageID: mid,
		Recipient: "sales@contoso.example", Details: map[string]string{"store": "ex3-pub", "folder": "/Sales"}})

	s1 := httptest.NewServer(adminMux(l1, "tok1"))
	defer s1.Close()
	s3 := httptest.NewServer(adminMux(l3, "tok3"))
	defer s3.Close()
	s4 := httptest.NewServer(http.NotFoundHandler())
	s4.Close() // ex4 is down
	s2 := httptest.NewServer(adminMux(l1, "tok2"))
	defer s2.Close()

	eps := []Endpoint{
		{Server: "ex3", URL: s3.URL + "/", Token: "tok3"},
		{Server: "ex1", URL: s1.URL, Token: "tok1"},
		{Server: "ex4", URL: s4.URL, Token: "tok4"},
		{Server: "ex2", URL: s2.URL, Token: "wrong", TokenSource: "/data/ex2/admin.token"},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// By the origin queue id: ex3 indexes it too.
	r := Collect(ctx, eps, "Q1")
	if got, want := kinds(r.Events), "ex1:received ex1:routed ex1:relayed ex3:received ex3:delivered"; got != want {
		t.Errorf("events = %s, want %s", got, want)
	}
	if got := r.Unreachable["ex4"]; got != "connection refused" {
		t.Errorf("Unreachable[ex4] = %q, want connection refused", got)
	}
	if got := r.Unreachable["ex2"]; !strings.Contains(got, "401") || !strings.Contains(got, "bad token") ||
		!strings.Contains(got, "token read from /data/ex2/admin.token") {
		t.Errorf("Unreachable[ex2] = %q, want the 401, its message and the token file read", got)
	}
	if len(r.Unreachable) != 2 {
		t.Errorf("Unreachable = %v, want ex2 and ex4 only", r.Unreachable)
	}
	r = Collect(ctx, eps[:2], mid)
	if len(r.Events) != 5 || len(r.Unreachable) != 0 {
		t.Errorf("by Message-ID: %s, unreachable %v", kinds(r.Events), r.Unreachable)
	}
}

func TestWriteText(t *testing.T) {
	r := Result{
		Events: []Event{
			{Time: t0, Server: "ex1", Kind: Received, QueueID: "Q1", MessageID: "<m@x>"},
			{Time: t0.Add(1500 * time.Microsecond), Server: "ex1", Kind: Routed, QueueID: "Q1", Recipient: "sales@contoso.example",
				Details: map[string]string{"zeta": "1", "cost": "10", "rule": "local-rg", "path": "ex1>ex3", "store": "ex3-pub", "reason": "cheapest replica"}},
		},
		Unreachable: map[string]string{"ex4": "connection refused", "ex2": "timed out"},
	}
	var b bytes.Buffer
	WriteText(&b, r)
	want := []string{
		"2025-07-01 10:00:00.000  ex1      received  queue=Q1",
		`2025-07-01 10:00:00.001  ex1      routed    queue=Q1 rcpt=sales@contoso.example rule=local-rg store=ex3-pub path=ex1>ex3 cost=10 reason="cheapest replica" zeta=1`,
		"not answering: ex2 (timed out)",
		"not answering: ex4 (connection refused)",
	}
	got := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("WriteText:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	b.Reset()
	WriteText(&b, Result{})
	if b.String() != "no events found\n" {
		t.Errorf("empty result: %q", b.String())
	}
}
