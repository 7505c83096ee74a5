package node

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"pfrouter/admin"
	"pfrouter/store"
	"pfrouter/tracking"
)

func endpoints(t *testing.T, c *Cluster, names ...string) []tracking.Endpoint {
	t.Helper()
	var eps []tracking.Endpoint
	for _, name := range names {
		n := c.Nodes[name]
		srv := n.Org.ServerByName(name)
		tok, err := admin.ResolveToken(n.Org, n.DataDir)
		if err != nil {
			t.Fatal(err)
		}
		eps = append(eps, tracking.Endpoint{Server: name, URL: "http://" + srv.Listen.Admin, Token: tok})
	}
	return eps
}

// O4: the tracking logs of every server, asked through their admin APIs,
// show a post's whole route in time order with the rules; an NDR'd post
// shows its reason; a server that does not answer is named.
func TestTrackingAcrossServers(t *testing.T) {
	yaml := strings.ReplaceAll(testOrg, `listen: {smtp: "127.0.0.1:0"}`, `listen: {smtp: "127.0.0.1:0", admin: "127.0.0.1:0"}`)
	yaml = strings.Replace(yaml, "folders:\n", "folders:\n  - {path: /Orphan, hierarchy: PF, addresses: [orphan@test.example], replicas: []}\n", 1)
	c := startOrg(t, yaml)
	all := []string{"s1", "s2", "s3", "s4", "s5"}
	id, err := post(t, c.Nodes["s1"], "alice@test.example", "remote@test.example", "tracked")
	if err != nil {
		t.Fatal(err)
	}
	waitMessage(t, c.Nodes["s4"], store.MailboxRef{Store: "s4-pub", Name: "/Remote"}, id, 10*time.Second)
	// Every hop's events, in the order their servers' clocks (one clock
	// here) put them. Only causal order is asserted: s2 relays to s3 as
	// soon as it has answered s1, so s3 may record its receipt before s1
	// records the relay; a total order would test the scheduler's timing.
	want := []string{"s1:received", "s1:routed", "s2:received", "s1:relayed", "s3:received", "s2:relayed", "s4:received", "s4:delivered", "s3:relayed"}
	var res tracking.Result
	var hops []string
	pos := map[string]int{}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		res = tracking.Collect(context.Background(), endpoints(t, c, all...), strings.Trim(id, "<>"))
		hops, pos = hops[:0], map[string]int{}
		for i, e := range res.Events {
			hops = append(hops, e.Server+":"+e.Kind)
			pos[e.Server+":"+e.Kind] = i
		}
		if len(hops) == len(want) && len(pos) == len(want) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, w := range want {
		if _, ok := pos[w]; !ok || len(hops) != len(want) {
			t.Fatalf("events\n got %v\nwant each of %v once", hops, want)
		}
	}
	// Causes before effects: the route before the first hop's receipt,
	// each receipt before the sender records the relay (250 comes after
	// the message is durable and tracked), each receipt before the next
	// hop's, and s4 delivers a message whose every recipient is local
	// before it answers 250 (issue 11 item 1).
	for _, p := range [][2]string{
		{"s1:received", "s1:routed"}, {"s1:routed", "s2:received"}, {"s2:received", "s1:relayed"},
		{"s2:received", "s3:received"}, {"s3:received", "s2:relayed"},
		{"s3:received", "s4:received"}, {"s4:received", "s4:delivered"}, {"s4:delivered", "s3:relayed"},
	} {
		if pos[p[0]] > pos[p[1]] {
			t.Errorf("%s came after %s: %v", p[0], p[1], hops)
		}
	}
	var out bytes.Buffer
	tracking.WriteText(&out, res)
	for _, w := range []string{"rule=\"step 2 lowest-cost\"", "path=s1>s2>s3>s4", "store=s4-pub"} {
		if !strings.Contains(out.String(), w) && !strings.Contains(out.String(), strings.ReplaceAll(w, `"`, "")) {
			t.Errorf("trace text lacks %s:\n%s", w, out.String())
		}
	}

	// An NDR'd post: the reason is in the trace.
	id, err = post(t, c.Nodes["s1"], "alice@test.example", "orphan@test.example", "orphaned")
	if err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(10 * time.Second)
	for {
		res = tracking.Collect(context.Background(), endpoints(t, c, all...), id)
		out.Reset()
		tracking.WriteText(&out, res)
		if strings.Contains(out.String(), " ndr ") || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(out.String(), "has no replica") || !strings.Contains(out.String(), "5.4.4") {
		t.Errorf("NDR trace lacks the reason:\n%s", out.String())
	}

	// One server stopped: it is named, not skipped.
	c.Nodes["s3"].Close(context.Background())
	delete(c.Nodes, "s3")
	c.Order = without(c.Order, "s3")
	eps := endpoints(t, c, "s1", "s2", "s4", "s5")
	eps = append(eps, tracking.Endpoint{Server: "s3", URL: "http://" + c.Nodes["s1"].Org.ServerByName("s3").Listen.Admin, Token: "x"})
	res = tracking.Collect(context.Background(), eps, id)
	out.Reset()
	tracking.WriteText(&out, res)
	if _, ok := res.Unreachable["s3"]; !ok || !strings.Contains(out.String(), "s3") {
		t.Errorf("stopped server not named:\n%s", out.String())
	}
}

// O3: the admin listener serves Prometheus metrics (with the token) that
// count what happened.
func TestMetricsEndpoint(t *testing.T) {
	yaml := strings.ReplaceAll(testOrg, `listen: {smtp: "127.0.0.1:0"}`, `listen: {smtp: "127.0.0.1:0", admin: "127.0.0.1:0"}`)
	c := startOrg(t, yaml)
	id, err := post(t, c.Nodes["s1"], "alice@test.example", "both@test.example", "counted")
	if err != nil {
		t.Fatal(err)
	}
	waitMessage(t, c.Nodes["s1"], store.MailboxRef{Store: "s1-pub", Name: "/Both"}, id, 10*time.Second)
	post(t, c.Nodes["s1"], "alice@test.example", "nobody@test.example", "refused")
	ep := endpoints(t, c, "s1")[0]
	get := func(tok string) (int, string) {
		req, _ := http.NewRequest("GET", ep.URL+"/metrics", nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get(""); code != http.StatusUnauthorized {
		t.Errorf("metrics without token: %d", code)
	}
	code, body := get(ep.Token)
	if code != 200 {
		t.Fatalf("metrics: %d", code)
	}
	for _, want := range []string{"pfrouter_messages_accepted_total", "pfrouter_messages_delivered_total", "pfrouter_messages_refused_total", "pfrouter_routing_decisions_total", "pfrouter_queue_depth"} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}
