package replication

import (
	"encoding/json"
	"reflect"
	"testing"

	"pfrouter/store"
)

// A request abbreviates exactly the folders equal to the previous
// request's at the same place, and the source restores them.
func TestAbbreviatedRequestsRoundTrip(t *testing.T) {
	have := func(hi uint64) store.CNSet { return store.CNSet{"a-pub": {{Lo: 1, Hi: hi}}, "b-pub": {{Lo: 1, Hi: 9}}} }
	folder := func(path string, hi uint64) pullFolder {
		return pullFolder{Hierarchy: "PF", Path: path, Source: "a-pub", Local: "b-pub", ID: "id" + path, Have: have(hi), MaxBytes: 1 << 20}
	}
	prev := []pullFolder{folder("/A", 5), folder("/B", 5), folder("/C", 5)}
	cur := []pullFolder{folder("/A", 5), folder("/B", 6), folder("/C", 5)}
	cur[2].Resync = &store.ResyncCursor{Horizon: have(3)}

	wire := abbreviate(cur, prev)
	if !wire[0].Same || wire[1].Same || wire[2].Same {
		t.Fatalf("abbreviated %v, want only the first folder (the second's CN set moved, the third resyncs)", []bool{wire[0].Same, wire[1].Same, wire[2].Same})
	}
	b, err := json.Marshal(pullRequest{Folders: wire})
	if err != nil {
		t.Fatal(err)
	}
	var req pullRequest
	if err := json.Unmarshal(b, &req); err != nil {
		t.Fatal(err)
	}
	if err := expand(&req, prev); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(req.Folders, cur) {
		t.Fatalf("expanded\n%+v\nwant\n%+v", req.Folders, cur)
	}

	if got := abbreviate(cur, prev[:2]); !reflect.DeepEqual(got, cur) {
		t.Fatal("a request with another number of folders than the previous one must go in full")
	}
	if got := abbreviate(cur, nil); !reflect.DeepEqual(got, cur) {
		t.Fatal("the first request on a connection must go in full")
	}
	reordered := store.CNSet{"a-pub": {{Lo: 1, Hi: 3}, {Lo: 4, Hi: 5}}, "b-pub": {{Lo: 1, Hi: 9}}}
	if sameSet(have(5), reordered) {
		t.Fatal("sets written differently compare as written alike")
	}
	if !sameSet(have(5), have(5)) || sameSet(have(5), have(6)) || sameSet(have(5), store.CNSet{"a-pub": {{Lo: 1, Hi: 5}}}) {
		t.Fatal("sameSet wrong")
	}

	for _, bad := range [][]pullFolder{nil, prev[:2]} {
		r := pullRequest{Folders: []pullFolder{{Same: true}, {Same: true}, {Same: true}}}
		if err := expand(&r, bad); err == nil {
			t.Fatalf("a request abbreviating against %d previous folders was accepted", len(bad))
		}
	}
}
