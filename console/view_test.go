package console

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"pfrouter/admin"
	"pfrouter/linkstate"
	"pfrouter/replication"
	"pfrouter/tracking"
)

func TestBuildTopology(t *testing.T) {
	ls := admin.LinkState{Version: 9,
		Connectors: []linkstate.Connector{
			{Name: "bc", A: "rg-b", B: "rg-c", Cost: 5, Up: false, Causes: linkstate.Causes{linkstate.CauseHopHealth, linkstate.CauseMaintenance}, BridgeheadsA: []string{"s2"}},
			{Name: "ab", A: "rg-a", B: "rg-b", Cost: 10, Up: true, BridgeheadsA: []string{"s1"}, BridgeheadsB: []string{"s2"}},
		},
		Servers: []linkstate.Server{{Name: "s2", RoutingGroup: "rg-b"}, {Name: "s1", RoutingGroup: "rg-a", Down: true, Causes: linkstate.Causes{linkstate.CauseMemberDeath}}, {Name: "s3", RoutingGroup: "rg-a"}},
	}
	top := buildTopology("s1", ls)
	if top.Version != 9 || top.Self != "s1" {
		t.Fatalf("version/self: %+v", top)
	}
	// rg-c has no server but a connector names it: it is on the map.
	var names []string
	for _, g := range top.Groups {
		names = append(names, g.Name)
	}
	if len(names) != 3 || names[0] != "rg-a" || names[2] != "rg-c" {
		t.Fatalf("groups %v", names)
	}
	a := top.Groups[0].Servers
	if len(a) != 2 || a[0].Name != "s1" || !a[0].Self || !a[0].Down || !a[0].Bridgehead || a[1].Bridgehead {
		t.Fatalf("rg-a servers %+v", a)
	}
	if a[0].Cause != "member-death" {
		t.Errorf("server cause %q", a[0].Cause)
	}
	if c := top.Connectors[1]; c.Cause != "hop-health, maintenance" {
		t.Errorf("connector cause %q", c.Cause)
	}
	if top.Connectors[0].Name != "ab" || top.Connectors[1].BridgeheadsB == nil {
		t.Fatalf("connectors %+v", top.Connectors)
	}
}

func TestSummarizeQueue(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	items := []admin.QueueItem{
		{ID: "b", Arrived: t0.Add(time.Hour), Recipients: []admin.QueueRecipient{{State: "deferred", NextHop: "ex3"}, {State: "delivered", NextHop: "ex3"}}},
		{ID: "a", Arrived: t0, Recipients: []admin.QueueRecipient{{State: "waiting"}, {State: "deferred", NextHop: "ex3"}}},
	}
	q := summarizeQueue("ex1", items)
	if q.Oldest == nil || q.Oldest.ID != "a" {
		t.Fatalf("oldest %+v", q.Oldest)
	}
	wantStates := []Count{{"deferred", 2}, {"delivered", 1}, {"waiting", 1}}
	if len(q.ByState) != 3 || q.ByState[0] != wantStates[0] || q.ByState[1] != wantStates[1] || q.ByState[2] != wantStates[2] {
		t.Fatalf("by state %v", q.ByState)
	}
	// Delivered recipients have no next hop left to count.
	if len(q.ByHop) != 2 || q.ByHop[0] != (Count{"(not routed yet / local)", 1}) || q.ByHop[1] != (Count{"ex3", 2}) {
		t.Fatalf("by hop %v", q.ByHop)
	}
	if e := summarizeQueue("ex2", nil); e.Oldest != nil || len(e.ByState) != 0 {
		t.Fatalf("empty queue %+v", e)
	}
}

func TestBuildTimeline(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	res := tracking.Result{Events: []tracking.Event{
		{Time: t0, Server: "ex1", Kind: "received", MessageID: "<m@x>", Details: map[string]string{"hops": "0"}},
		{Time: t0.Add(1), Server: "ex1", Kind: "routed", MessageID: "<m@x>", Details: map[string]string{"zz": "1", "reason": "r", "rule": "R2"}},
		// The next server's received is logged before the sender's relayed.
		{Time: t0.Add(2), Server: "ex3", Kind: "received", MessageID: "<m@x>", Details: map[string]string{"hops": "1"}},
		{Time: t0.Add(3), Server: "ex1", Kind: "relayed", MessageID: "<m@x>", Details: map[string]string{"next_hop": "ex3"}},
		{Time: t0.Add(4), Server: "ex4", Kind: "received", MessageID: "<m@x>", Details: map[string]string{"hops": "2"}},
		{Time: t0.Add(4), Server: "ex3", Kind: "relayed", MessageID: "<m@x>", Details: map[string]string{"next_hop": "ex4"}},
		{Time: t0.Add(5), Server: "ex4", Kind: "delivered", MessageID: "<m@x>"},
		{Time: t0.Add(6), Server: "ex1", Kind: "ndr", MessageID: "<dsn@x>"},
	}, Unreachable: map[string]string{"ex2": "timed out"}}
	tl := buildTimeline(res)
	if got := tl.Servers; len(got) != 3 || got[0] != "ex1" || got[1] != "ex3" || got[2] != "ex4" {
		t.Fatalf("servers %v, want ex1 ex3 ex4", got)
	}
	if h := tl.Hops; len(h) != 2 || h[0] != [2]string{"ex1", "ex3"} || h[1] != [2]string{"ex3", "ex4"} {
		t.Fatalf("hops %v", h)
	}
	if d := tl.Steps[1].Details; len(d) != 3 || d[0].K != "rule" || d[1].K != "reason" || d[2].K != "zz" {
		t.Fatalf("details order %v", d)
	}
	if len(tl.MessageIDs) != 2 || len(tl.Unreachable) != 1 || tl.Unreachable[0] != (KV{"ex2", "timed out"}) {
		t.Fatalf("ids %v unreachable %v", tl.MessageIDs, tl.Unreachable)
	}
}

func TestSessionsExpire(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := newSessions(time.Minute, time.Hour, func() time.Time { return now })
	ss := s.create("tok")
	req := func() *http.Request {
		r := httptest.NewRequest(http.MethodGet, "/console/", nil)
		r.AddCookie(&http.Cookie{Name: cookieName, Value: ss.id})
		return r
	}
	if s.get(req()) != ss {
		t.Fatal("fresh session not found")
	}
	for range 70 { // used every 59 s: idle never reached, but the hour is
		now = now.Add(59 * time.Second)
		if s.get(req()) == nil && now.Sub(ss.created) <= time.Hour {
			t.Fatalf("session ended early at %s", now.Sub(ss.created))
		}
	}
	if s.get(req()) != nil {
		t.Fatal("session outlived its maximum age")
	}
	ss = s.create("tok")
	now = now.Add(61 * time.Second)
	if s.get(req()) != nil {
		t.Fatal("idle session still alive")
	}
	if ss.id == s.create("tok").id || len(ss.csrf) < 40 {
		t.Fatal("ids not random/long enough")
	}
}

func TestSameOrigin(t *testing.T) {
	for _, tc := range []struct {
		origin, referer string
		want            bool
	}{
		{"http://h:1", "", true},
		{"http://evil", "", false},
		{"null", "", false},
		{"", "http://h:1/console/settings", true},
		{"", "http://evil/console/", false},
		{"", "", false},
	} {
		r := httptest.NewRequest(http.MethodPost, "http://h:1/console/logout", nil)
		if tc.origin != "" {
			r.Header.Set("Origin", tc.origin)
		}
		if tc.referer != "" {
			r.Header.Set("Referer", tc.referer)
		}
		if got := sameOrigin(r); got != tc.want {
			t.Errorf("Origin %q Referer %q: %v, want %v", tc.origin, tc.referer, got, tc.want)
		}
	}
}

func TestLoginLimit(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := &loginLimit{fails: map[string][]time.Time{}, now: func() time.Time { return now }}
	for range maxFailures {
		if l.blocked("10.0.0.1") {
			t.Fatal("blocked before the limit")
		}
		l.fail("10.0.0.1")
	}
	if !l.blocked("10.0.0.1") || l.blocked("10.0.0.2") {
		t.Fatal("limit not per address")
	}
	now = now.Add(failWindow)
	if l.blocked("10.0.0.1") {
		t.Fatal("still blocked after the window")
	}
}

// TestAddStatusAndOrder: the live status lands on the right replica rows,
// an unreadable replica or folder counts as not in sync, and folders not
// in sync sort first.
func TestAddStatusAndOrder(t *testing.T) {
	folder := func(path string, stores ...string) FolderReplicas {
		f := FolderReplicas{Hierarchy: "PF", Path: path}
		for _, s := range stores {
			f.Replicas = append(f.Replicas, ReplicaLoc{Store: s, Server: "srv-" + s})
		}
		return f
	}
	a, b, c, d, e := folder("/A", "s1", "s2"), folder("/B", "s1", "s2"), folder("/C", "s1"), folder("/D"), folder("/E", "s1", "s2")
	addStatus(&a, replication.FolderStatus{InSync: true, Replicas: []replication.ReplicaStatus{
		{Store: "s2", Messages: 3, CNSet: "s1:1-3", InSync: true}, {Store: "s1", Messages: 3, CNSet: "s1:1-3", InSync: true}}}, "")
	addStatus(&b, replication.FolderStatus{InSync: false, Replicas: []replication.ReplicaStatus{
		{Store: "s1", Messages: 3, CNSet: "s1:1-3", InSync: true}, {Store: "s2", Error: "connect to srv-s2 replication: refused"}}}, "")
	addStatus(&c, replication.FolderStatus{}, "replication is off on srv-s1")
	addStatus(&e, replication.FolderStatus{InSync: true, Replicas: []replication.ReplicaStatus{{Store: "s1", Messages: 1, InSync: true}}}, "")

	if r := a.Replicas[1]; !a.Read || !a.InSync || !r.Read || r.Messages != 3 || r.CNSet != "s1:1-3" || !r.InSync {
		t.Errorf("in-sync folder: %+v", a)
	}
	if r := b.Replicas[1]; !b.Read || b.InSync || r.Read || r.Error == "" || !b.Replicas[0].Read {
		t.Errorf("folder with an unreadable replica: %+v", b)
	}
	if c.Read || c.StatusError == "" || !c.NotInSync() {
		t.Errorf("unreadable folder: %+v", c)
	}
	if d.NotInSync() {
		t.Error("a folder without replicas counts as not in sync")
	}
	if e.InSync || e.Replicas[1].Read || e.Replicas[1].Error == "" {
		t.Errorf("a replica missing from the status: %+v", e)
	}
	list := []FolderReplicas{a, b, c, d, e}
	sortReplicas(list)
	var got []string
	for _, f := range list {
		got = append(got, f.Path)
	}
	if want := "/B /C /E /A /D"; strings.Join(got, " ") != want {
		t.Errorf("order %v, want %s (not in sync first)", got, want)
	}
}
