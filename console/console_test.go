package console_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"pfrouter/admin"
	"pfrouter/console"
)

// TestConsole runs the console's handler tests against one served demo
// organization: four real servers with real admin listeners on port 0.
func TestConsole(t *testing.T) {
	d := startDemo(t)
	base := d.consoleURL("ex1")

	t.Run("LoginGoodAndBadToken", func(t *testing.T) {
		b := newBrowser(t, base)
		code, _, h := b.get("/console/")
		if code != http.StatusSeeOther || h.Get("Location") != "/console/login" {
			t.Fatalf("without a session: %d %q, want 303 to the login page", code, h.Get("Location"))
		}
		if code, _, _ := b.get("/console/api/topology"); code != http.StatusUnauthorized {
			t.Fatalf("topology JSON without a session: %d, want 401", code)
		}
		code, body, _ := b.get("/console/login")
		mustContain(t, "login page", body, `type="password"`, `method="post"`)
		if code != http.StatusOK {
			t.Fatalf("login page: %d", code)
		}
		code, body, resp := b.post("/console/login", b.base, url.Values{"token": {"wrong-token"}})
		if code != http.StatusUnauthorized || !strings.Contains(body, "wrong token") || len(resp.Cookies()) != 0 {
			t.Fatalf("wrong token: %d, cookies %v", code, resp.Cookies())
		}
		if code, _, _ := b.post("/console/login", b.base, url.Values{"token": {""}}); code != http.StatusBadRequest {
			t.Fatalf("empty token: %d, want 400", code)
		}
		if code, _, _ := b.post("/console/login", "http://evil.example", url.Values{"token": {testToken}}); code != http.StatusForbidden {
			t.Fatalf("login from another origin: %d, want 403", code)
		}
		resp = b.login(testToken)
		if loc := resp.Header.Get("Location"); loc != "/console/" || strings.Contains(loc, testToken) {
			t.Fatalf("after login: Location %q", loc)
		}
		var ck *http.Cookie
		for _, c := range resp.Cookies() {
			if c.Name == "pfrouter_console" {
				ck = c
			}
		}
		if ck == nil {
			t.Fatal("no session cookie after login")
		}
		if !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Secure || ck.Path != "/console/" || strings.Contains(ck.Value, testToken) {
			t.Fatalf("session cookie %+v: want HttpOnly, SameSite=Strict, not Secure on the plain-HTTP admin listener, Path /console/, no token", ck)
		}
		code, body, h = b.get("/console/")
		if code != http.StatusOK {
			t.Fatalf("topology after login: %d", code)
		}
		if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
			t.Errorf("CSP %q", csp)
		}
		if strings.Contains(body, testToken) {
			t.Error("the token appears in the page")
		}
	})

	t.Run("SecureCookieOverTLS", func(t *testing.T) {
		con, err := console.New(console.Config{Self: "ex1", Servers: func() []console.Server {
			return []console.Server{{Name: "ex1", RoutingGroup: "rg-tokyo", AdminURL: "http://" + d.adminAddr("ex1")}}
		}})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewTLSServer(con)
		defer srv.Close()
		b := newBrowser(t, srv.URL+"/console/")
		jar, _ := cookiejar.New(nil)
		b.c.Jar = jar
		b.c.Transport = &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} // test server's own certificate
		resp := b.login(testToken)
		if cs := resp.Cookies(); len(cs) != 1 || !cs[0].Secure || !cs[0].HttpOnly {
			t.Fatalf("cookie over TLS: %+v, want Secure and HttpOnly", cs)
		}
	})

	b := newBrowser(t, base)
	b.login(testToken)
	csrf := b.csrf()
	ex4 := d.client("ex4")

	t.Run("CSRFAndOriginRefused", func(t *testing.T) {
		form := url.Values{"name": {"tokyo-paris"}, "cost": {"3"}, "state": {"up"}}
		for _, tc := range []struct {
			what, origin, csrf string
		}{
			{"no CSRF token", b.base, ""},
			{"wrong CSRF token", b.base, "not-the-token"},
			{"other origin", "http://evil.example", csrf},
			{"no Origin or Referer", "", csrf},
		} {
			f := url.Values{}
			for k, v := range form {
				f[k] = v
			}
			if tc.csrf != "" {
				f.Set("csrf", tc.csrf)
			}
			code, _, _ := b.post("/console/settings/connector", tc.origin, f)
			if code != http.StatusForbidden {
				t.Errorf("%s: status %d, want 403", tc.what, code)
			}
		}
		if cost, state := connectorCost(t, d.client("ex1"), "tokyo-paris"); cost != 20 {
			t.Fatalf("a refused POST changed the connector: %s", state)
		}
	})

	t.Run("ConnectorCostSpreadsByGossip", func(t *testing.T) {
		// O1, R9: the change made through ex1's console reaches ex4.
		code, _, _ := b.post("/console/settings/connector", b.base, url.Values{"csrf": {csrf}, "name": {"tokyo-paris"}, "cost": {"7"}, "state": {"up"}})
		if code != http.StatusSeeOther {
			t.Fatalf("apply: %d, want 303", code)
		}
		_, body, _ := b.get("/console/settings")
		mustContain(t, "settings after change", body, "connector tokyo-paris: cost 7", "gossip spreads")
		eventually(t, "ex4 sees cost 7", func() (bool, string) {
			cost, state := connectorCost(t, ex4, "tokyo-paris")
			return cost == 7, state
		})
	})

	t.Run("SameValidationAsAdminAPI", func(t *testing.T) {
		for _, tc := range []struct{ path, field, value, want string }{
			{"/console/settings/connector", "cost", "0", "cost: must be an integer 1–100"},
			{"/console/settings/connector", "cost", "ten", "cost: must be an integer 1–100"},
			{"/console/settings/min-age", "store_min_age", "-1h", `store_min_age: &#34;-1h&#34; is not a duration &gt;= 0`},
		} {
			f := url.Values{"csrf": {csrf}, "name": {"tokyo-paris"}, tc.field: {tc.value}}
			if code, _, _ := b.post(tc.path, b.base, f); code != http.StatusSeeOther {
				t.Fatalf("%s=%s: %d", tc.field, tc.value, code)
			}
			_, body, _ := b.get("/console/settings")
			mustContain(t, tc.field+"="+tc.value, body, tc.want)
		}
		if cost, state := connectorCost(t, d.client("ex1"), "tokyo-paris"); cost != 7 {
			t.Fatalf("a refused cost changed the connector: %s", state)
		}
		if _, _, _ = b.post("/console/settings/min-age", b.base, url.Values{"csrf": {csrf}, "store_min_age": {"72h"}}); true {
			eventually(t, "store_min_age 72h on ex4", func() (bool, string) {
				got, err := ex4.StoreMinAge(context.Background())
				return err == nil && got.Hours() == 72, got.String()
			})
		}
	})

	t.Run("PagesRender", func(t *testing.T) {
		for _, tc := range []struct {
			path  string
			wants []string
		}{
			{"/console/", []string{"tokyo-berlin", "berlin-paris", "rg-paris", "ex4", `id="map"`, "/console/static/console.js"}},
			{"/console/path", []string{`name="id"`}},
			{"/console/path?id=%3Cnobody%40nowhere%3E", []string{"No server knows"}},
			{"/console/route?at=ex1&to=eng%40contoso.example", []string{"Outcome: deliver", "ex4-pub", "Step 1", "Step 2", `data-route="{&#34;servers&#34;:[&#34;ex1&#34;`}},
			{"/console/route?at=ex1&to=nobody", []string{"is not an address"}},
			{"/console/queues", []string{`id="queue-ex1"`, `id="queue-ex4"`, "Flush"}},
			{"/console/settings", []string{"store_min_age", "tokyo-paris", "Start maintenance"}},
			{"/console/replicas", []string{"/Engineering", "ex4-pub", "rg-paris", "/Sales/Announcements"}},
			{"/console/static/console.css", []string{"#map"}},
		} {
			code, body, _ := b.get(tc.path)
			if code != http.StatusOK {
				t.Errorf("%s: status %d", tc.path, code)
				continue
			}
			mustContain(t, tc.path, body, tc.wants...)
		}
		code, body, _ := b.get("/console/api/topology")
		var topo console.Topology
		if code != http.StatusOK || json.Unmarshal([]byte(body), &topo) != nil || len(topo.Groups) != 3 || len(topo.Connectors) != 3 || topo.Version == 0 || topo.Self != "ex1" {
			t.Fatalf("topology JSON: %d %s", code, body)
		}
	})

	t.Run("ReplicaSyncStateShown", func(t *testing.T) {
		// A post to /Sales/Announcements (replicas ex1-pub, ex3-pub) lands
		// on ex1-pub and replication copies it to ex3-pub: the page shows
		// both replicas holding it, in sync, behind 0, with their CN sets,
		// read from the same admin call as `admin replica status`.
		d.send(t, "ex2", "someone@example.net", "announce@contoso.example",
			"From: someone@example.net\nSubject: <b>replica</b> test\n\nhello replicas\n")
		eventually(t, "both replicas of /Sales/Announcements hold the post, in sync", func() (bool, string) {
			code, body, _ := b.get("/console/replicas")
			if code != http.StatusOK {
				return false, fmt.Sprintf("status %d", code)
			}
			r1, r3 := replicaRow(body, "/Sales/Announcements", "ex1-pub"), replicaRow(body, "/Sales/Announcements", "ex3-pub")
			for _, row := range []string{r1, r3} {
				if !strings.Contains(row, `class="messages">1<`) || !strings.Contains(row, `class="insync">yes<`) ||
					!strings.Contains(row, `class="behind">0<`) || !strings.Contains(row, "ex1-pub:") {
					return false, "ex1-pub row: " + r1 + "\nex3-pub row: " + r3
				}
			}
			return strings.Contains(folderRow(body, "/Sales/Announcements"), "in sync"), folderRow(body, "/Sales/Announcements")
		})
		// The CLI's admin call says the same.
		st, err := d.client("ex1").ReplicaStatus(context.Background(), "", "/Sales/Announcements")
		if err != nil || !st.InSync || len(st.Replicas) != 2 || st.Replicas[0].Messages != 1 {
			t.Fatalf("admin replica status: %+v %v", st, err)
		}
	})

	// A message waiting in ex1's queue, with markup in every field mail
	// controls.
	for _, name := range []string{"tokyo-paris", "tokyo-berlin"} {
		if _, err := d.client("ex1").SetConnectorState(context.Background(), name, false); err != nil {
			t.Fatal(err)
		}
	}
	const msgID = "<x<script>alert(3)</script>@evil.example>"
	d.send(t, "ex1", `"<script>alert(1)</script>"@evil.example`, "eng@contoso.example",
		"From: <script>alert(1)</script>\nSubject: <script>alert(2)</script>\nMessage-ID: "+msgID+"\n\nhello\n")
	var qid string
	eventually(t, "the message waits in ex1's queue", func() (bool, string) {
		items, err := d.client("ex1").QueueList(context.Background())
		if err != nil || len(items) == 0 {
			return false, "empty"
		}
		qid = items[0].ID
		return items[0].Recipients[0].State == "waiting", items[0].Recipients[0].State
	})

	t.Run("DownCauseShown", func(t *testing.T) {
		// R10: the connectors taken down above show why.
		_, body, _ := b.get("/console/")
		mustContain(t, "topology", body, "down: maintenance")
		_, body, _ = b.get("/console/api/topology")
		mustContain(t, "topology JSON", body, `"cause":"maintenance"`)
	})

	t.Run("EscapesMailContent", func(t *testing.T) {
		for _, path := range []string{"/console/queues", "/console/path?id=" + url.QueryEscape(msgID), "/console/path?id=" + qid} {
			code, body, _ := b.get(path)
			if code != http.StatusOK {
				t.Fatalf("%s: %d", path, code)
			}
			if strings.Contains(body, "<script>") {
				t.Errorf("%s: raw <script> from mail in the page", path)
			}
			mustContain(t, path, body, "&lt;script&gt;alert(")
		}
		_, body, _ := b.get("/console/path?id=" + qid)
		mustContain(t, "path", body, `id="timeline"`, "received", "ex1")
	})

	t.Run("QueueActionNeedsConfirmation", func(t *testing.T) {
		form := url.Values{"csrf": {csrf}, "server": {"ex1"}, "id": {qid}, "action": {"delete"}}
		code, body, _ := b.post("/console/queues/action", b.base, form)
		if code != http.StatusOK {
			t.Fatalf("first POST: %d", code)
		}
		mustContain(t, "confirm page", body, "Yes, delete", `name="confirm" value="yes"`, "&lt;script&gt;")
		if strings.Contains(body, "<script>") {
			t.Error("confirm page: raw <script>")
		}
		if _, err := d.client("ex1").QueueShow(context.Background(), qid); err != nil {
			t.Fatalf("the message is gone before confirmation: %v", err)
		}
		form.Set("confirm", "yes")
		if code, _, _ := b.post("/console/queues/action", b.base, form); code != http.StatusSeeOther {
			t.Fatalf("confirmed POST: %d", code)
		}
		_, err := d.client("ex1").QueueShow(context.Background(), qid)
		var ae *admin.APIError
		if !asAPIError(err, &ae) || ae.Status != http.StatusNotFound {
			t.Fatalf("after confirmed delete: %v, want 404", err)
		}
		_, body, _ = b.get("/console/queues")
		mustContain(t, "queues after delete", body, "delete "+qid+" on ex1: done")
	})

	t.Run("ReplicaServerDownUnreadable", func(t *testing.T) {
		// A server that does not answer: its replicas show as unreadable,
		// their folders as not in sync and first, and the page still renders.
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if err := d.c.Nodes["ex3"].Close(ctx); err != nil {
			t.Fatal(err)
		}
		code, body, _ := b.get("/console/replicas")
		if code != http.StatusOK {
			t.Fatalf("replicas with ex3 down: %d", code)
		}
		row := replicaRow(body, "/Sales/Announcements", "ex3-pub")
		mustContain(t, "ex3-pub row with ex3 down", row, `class="insync">unreadable<`)
		mustContain(t, "ex1-pub row with ex3 down", replicaRow(body, "/Sales/Announcements", "ex1-pub"), `class="messages">1<`)
		mustContain(t, "folder with ex3 down", folderRow(body, "/Sales/Announcements"), "NOT in sync")
		if a, e := strings.Index(body, `data-folder="/Sales/Announcements"`), strings.Index(body, `data-folder="/Engineering"`); a < 0 || e < 0 || a > e {
			t.Errorf("/Sales/Announcements (not in sync) at %d is not before /Engineering (in sync) at %d", a, e)
		}
	})

	t.Run("Logout", func(t *testing.T) {
		if code, _, _ := b.post("/console/logout", b.base, url.Values{"csrf": {csrf}}); code != http.StatusSeeOther {
			t.Fatalf("logout: %d", code)
		}
		if code, _, _ := b.get("/console/"); code != http.StatusSeeOther {
			t.Fatalf("after logout: %d, want 303 to login", code)
		}
	})
}

// TestConsoleGeneratedTokens: with no configured token each server of the
// demo generates its own; the console logged in on ex1 still reads every
// server's queue and tracking log, with the tokens it finds locally.
func TestConsoleGeneratedTokens(t *testing.T) {
	d := startDemoWith(t, "")
	tok, err := admin.ResolveToken(d.org, d.c.Nodes["ex1"].DataDir)
	if err != nil {
		t.Fatal(err)
	}
	b := newBrowser(t, d.consoleURL("ex1"))
	if code, _, _ := b.post("/console/login", b.base, url.Values{"token": {testToken}}); code != http.StatusUnauthorized {
		t.Fatalf("a token that is not ex1's: %d, want 401", code)
	}
	b.login(tok)
	_, body, _ := b.get("/console/queues")
	for _, s := range []string{"ex1", "ex2", "ex3", "ex4"} {
		mustContain(t, "queues", body, `id="queue-`+s+`"`)
	}
	if strings.Contains(body, "cannot read the queue") {
		t.Fatalf("a server's queue is unreadable:\n%s", body)
	}
	_, body, _ = b.get("/console/path?id=%3Cnone%40x%3E")
	if strings.Contains(body, "did not answer") {
		t.Fatalf("a server did not answer the trace:\n%s", body)
	}
}

// Issue 10 item 5: the console reads the other servers with its server's
// organization certificate over TLS, not with their tokens. Here ex1
// cannot find any other server's token (their token files are gone; each
// server keeps its own in memory), and the queues and a message path of
// every server still show.
func TestConsoleReadsPeersWithServerCertificates(t *testing.T) {
	d := startDemoWith(t, "")
	for _, s := range []string{"ex2", "ex3", "ex4"} {
		if err := os.Remove(filepath.Join(d.c.Nodes[s].DataDir, admin.TokenFile)); err != nil {
			t.Fatal(err)
		}
	}
	tok, err := admin.ResolveToken(d.org, d.c.Nodes["ex1"].DataDir)
	if err != nil {
		t.Fatal(err)
	}
	d.send(t, "ex1", "someone@example.org", "sales@contoso.example", "Message-Id: <peer-tls@x>\nSubject: s\n\nhi\n")
	b := newBrowser(t, d.consoleURL("ex1"))
	b.login(tok)
	_, body, _ := b.get("/console/queues")
	for _, s := range []string{"ex1", "ex2", "ex3", "ex4"} {
		mustContain(t, "queues", body, `id="queue-`+s+`"`)
	}
	if strings.Contains(body, "cannot read the queue") || strings.Contains(body, "401") {
		t.Fatalf("a peer's queue is unreadable without its token:\n%s", body)
	}
	eventually(t, "the message path across servers", func() (bool, string) {
		_, body, _ := b.get("/console/path?id=%3Cpeer-tls%40x%3E")
		if strings.Contains(body, "did not answer") {
			return false, body
		}
		return strings.Contains(body, "ex3") && strings.Contains(body, "delivered"), "no delivery on ex3 yet"
	})
}
