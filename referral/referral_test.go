package referral_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"pfrouter/config"
	"pfrouter/directory"
	"pfrouter/linkstate"
	"pfrouter/referral"
)

// Routing groups a (a1, a2), b, c, d:
//
//	a --ab 10-- b --bd 1-- d
//	a --ac 5 (allow_referrals: false)-- c
//	a --ae 10-- e ; a --af 10-- f
const org = `organization: T
domains: [x.example]
routing: {}
sites: [{name: s}]
routing_groups: [{name: a}, {name: b}, {name: c}, {name: d}, {name: e}, {name: f}]
connectors:
  - {name: ab, between: [a, b], cost: 10}
  - {name: ac, between: [a, c], cost: 5, allow_referrals: false}
  - {name: bd, between: [b, d], cost: 1}
  - {name: ae, between: [a, e], cost: 10}
  - {name: af, between: [a, f], cost: 10}
servers:
  - {name: a1, site: s, routing_group: a, listen: {smtp: "127.0.0.1:0"}, stores: [{name: a1-pub, kind: public, hierarchy: PF}]}
  - name: a2
    site: s
    routing_group: a
    listen: {smtp: "127.0.0.1:0"}
    stores: [{name: a2-pub, kind: public, hierarchy: PF}]
    referral_list: [{server: c1, cost: 3}, {server: b1, cost: 5}, {server: e1, cost: 5}]
  - {name: b1, site: s, routing_group: b, listen: {smtp: "127.0.0.1:0"}, stores: [{name: b1-pub, kind: public, hierarchy: PF}]}
  - {name: c1, site: s, routing_group: c, listen: {smtp: "127.0.0.1:0"}, stores: [{name: c1-pub, kind: public, hierarchy: PF}]}
  - {name: d1, site: s, routing_group: d, listen: {smtp: "127.0.0.1:0"}, stores: [{name: d1-pub, kind: public, hierarchy: PF}]}
  - {name: e1, site: s, routing_group: e, listen: {smtp: "127.0.0.1:0"}, stores: [{name: e1-pub, kind: public, hierarchy: PF}]}
  - {name: f1, site: s, routing_group: f, listen: {smtp: "127.0.0.1:0"}, stores: [{name: f1-pub, kind: public, hierarchy: PF}]}
  - {name: a3, site: s, routing_group: a, listen: {smtp: "127.0.0.1:0"}, stores: [{name: a3-mbx, kind: mailbox}]}
hierarchies: [{name: PF, tlh: mapi}]
folders:
  - {path: /Local, hierarchy: PF, replicas: [b1-pub, a1-pub]}
  - {path: /SameRG, hierarchy: PF, replicas: [b1-pub, a2-pub]}
  - {path: /Cheap, hierarchy: PF, replicas: [c1-pub, b1-pub]}
  - {path: /OnlyC, hierarchy: PF, replicas: [c1-pub]}
  - {path: /BD, hierarchy: PF, replicas: [b1-pub, d1-pub]}
  - {path: /Tie, hierarchy: PF, replicas: [f1-pub, e1-pub]}
  - {path: /Unlisted, hierarchy: PF, replicas: [d1-pub]}
  - {path: /None, hierarchy: PF}
`

func setup(t *testing.T) (*directory.Snapshot, *linkstate.Table) {
	t.Helper()
	o, err := config.Parse([]byte(org), "org.yaml", ".")
	if err != nil {
		t.Fatal(err)
	}
	dir, err := directory.New(o, directory.Options{Now: func() time.Time { return time.Unix(0, 0) }})
	if err != nil {
		t.Fatal(err)
	}
	ls, err := linkstate.FromConfig(o)
	if err != nil {
		t.Fatal(err)
	}
	return dir.Snapshot(), ls
}

func folder(t *testing.T, snap *directory.Snapshot, path string) *directory.Folder {
	t.Helper()
	for _, f := range snap.Folders() {
		if f.Path == path {
			return f
		}
	}
	t.Fatalf("no folder %s", path)
	return nil
}

func TestDecide(t *testing.T) {
	cases := []struct {
		name, at, folder string
		down, exclude    []string
		outcome          referral.Outcome
		server, rule     string
		cost             int
		reasons          map[string]string // server -> substring of its candidate reason
	}{
		{name: "R7 local replica, no referral", at: "a1", folder: "/Local", outcome: referral.Local, server: "a1", rule: "local",
			reasons: map[string]string{"b1": "read first (R7)"}},
		{name: "R8 same routing group", at: "a1", folder: "/SameRG", outcome: referral.Referred, server: "a2", rule: "routing-group",
			reasons: map[string]string{"b1": "same routing group is preferred (R8)"}},
		{name: "R9 cheaper replica only across allow_referrals false: passed over", at: "a1", folder: "/Cheap", outcome: referral.Referred, server: "b1", rule: "lowest-cost", cost: 10,
			reasons: map[string]string{"c1": referral.ReasonNoReferrals}},
		{name: "allow_referrals false on the only path: none", at: "a1", folder: "/OnlyC", outcome: referral.None,
			reasons: map[string]string{"c1": referral.ReasonNoReferrals}},
		{name: "R9 lowest cost", at: "a1", folder: "/BD", outcome: referral.Referred, server: "b1", rule: "lowest-cost", cost: 10,
			reasons: map[string]string{"d1": "lower-cost"}},
		{name: "R10 failed server excluded: next best", at: "a1", folder: "/BD", exclude: []string{"b1"}, outcome: referral.Referred, server: "d1", cost: 11, rule: "lowest-cost",
			reasons: map[string]string{"b1": referral.ReasonExcluded}},
		{name: "R10 server down: next best", at: "a1", folder: "/BD", down: []string{"b1"}, outcome: referral.Referred, server: "d1", cost: 11, rule: "lowest-cost",
			reasons: map[string]string{"b1": "unreachable"}},
		{name: "R9 tie on cost and hops: store name", at: "a1", folder: "/Tie", outcome: referral.Referred, server: "e1", cost: 10, rule: "lowest-cost"},
		{name: "no replica", at: "a1", folder: "/None", outcome: referral.None},
		{name: "referral_list overrides connector policy and cost", at: "a2", folder: "/Cheap", outcome: referral.Referred, server: "c1", rule: referral.RuleReferralList, cost: 3,
			reasons: map[string]string{"b1": "referral_list"}},
		{name: "referral_list: listed server down", at: "a2", folder: "/Cheap", down: []string{"c1"}, outcome: referral.Referred, server: "b1", rule: referral.RuleReferralList, cost: 5,
			reasons: map[string]string{"c1": referral.ReasonDown}},
		{name: "referral_list: equal cost, earlier entry", at: "a2", folder: "/Tie", outcome: referral.Referred, server: "e1", rule: referral.RuleReferralList, cost: 5,
			reasons: map[string]string{"f1": referral.ReasonNotListed}},
		{name: "referral_list: nothing listed holds it", at: "a2", folder: "/Unlisted", outcome: referral.None,
			reasons: map[string]string{"d1": referral.ReasonNotListed}},
		{name: "referral_list: local replica still first", at: "a2", folder: "/SameRG", outcome: referral.Local, server: "a2", rule: "local"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			snap, ls := setup(t)
			for _, s := range tc.down {
				if _, err := ls.SetServerDown(s, true); err != nil {
					t.Fatal(err)
				}
			}
			f := folder(t, snap, tc.folder)
			d := referral.Decide(snap, ls.Graph(), tc.at, f, tc.exclude)
			if d.Outcome != tc.outcome || d.Server != tc.server || d.Rule != tc.rule || d.Cost != tc.cost {
				t.Fatalf("got %s %s %s cost %d, want %s %s %s cost %d: %+v", d.Outcome, d.Server, d.Rule, d.Cost, tc.outcome, tc.server, tc.rule, tc.cost, d)
			}
			if d.Outcome == referral.None && d.Reason == "" {
				t.Fatal("no reason for none")
			}
			for _, c := range d.Candidates {
				if c.Reason == "" {
					t.Fatalf("candidate %s has no reason", c.Server)
				}
				if want, ok := tc.reasons[c.Server]; ok && !strings.Contains(c.Reason, want) {
					t.Fatalf("candidate %s: reason %q, want %q", c.Server, c.Reason, want)
				}
			}
			if len(d.Candidates) != len(snap.Replicas(f.Key)) {
				t.Fatalf("explained %d of %d replicas", len(d.Candidates), len(snap.Replicas(f.Key)))
			}
			var buf bytes.Buffer
			d.WriteText(&buf)
			if !strings.Contains(buf.String(), string(tc.folder)) {
				t.Fatalf("text lacks the folder:\n%s", buf.String())
			}
		})
	}
}

// The referral path avoids connectors that forbid referrals even when the
// mail path would use them.
func TestPathAvoidsNoReferralConnectors(t *testing.T) {
	snap, ls := setup(t)
	d := referral.Decide(snap, ls.Graph(), "a1", folder(t, snap, "/BD"), []string{"b1"})
	if strings.Join(d.Connectors, ",") != "ab,bd" || d.Path[0] != "a1" || d.Path[len(d.Path)-1] != "d1" {
		t.Fatalf("path %v via %v", d.Path, d.Connectors)
	}
}

// Issue 13 item 3: the UIDVALIDITY a referred session shows is stable for
// one replica, differs between replicas that gave the folder the same raw
// value (two stores' counters often agree), changes when the replica's own
// value changes, and is never 0.
func TestUIDValidityPerReplica(t *testing.T) {
	for _, uv := range []uint32{1, 1795994926, 1<<32 - 1} {
		b, c := referral.UIDValidity("b1-pub", uv), referral.UIDValidity("c1-pub", uv)
		if b != referral.UIDValidity("b1-pub", uv) {
			t.Fatalf("not stable for one replica")
		}
		if b == c {
			t.Fatalf("uv %d: b1-pub and c1-pub both show %d", uv, b)
		}
		if b == referral.UIDValidity("b1-pub", uv+1) {
			t.Fatalf("uv %d and %d of one replica both show %d", uv, uv+1, b)
		}
	}
	// The value whose mix would be 0 shows 1 instead.
	for _, store := range []string{"b1-pub", "c1-pub", ""} {
		hash := referral.UIDValidity(store, 0) // 0 mixed with the name's hash is the hash
		if got := referral.UIDValidity(store, hash); got != 1 {
			t.Fatalf("raw value %d of %q shows %d, want 1 (not 0)", hash, store, got)
		}
	}
}
