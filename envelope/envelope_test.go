package envelope

import (
	"reflect"
	"testing"
	"time"
)

func TestRouteRoundTrip(t *testing.T) {
	r := Route{OriginID: "abc", FirstSeen: time.Unix(1700000000, 0), Hops: 3, Visited: []string{"ex1", "ex3"}, Bounce: true, User: "alice", Size: 4000}
	got, err := DecodeRoute(EncodeRoute(r))
	if err != nil || !reflect.DeepEqual(got, r) {
		t.Fatalf("got %+v, %v", got, err)
	}
	for _, bad := range []string{"", "v=2&origin=a&hops=1&first=1", "v=1&hops=1&first=1", "v=1&origin=a&hops=-1&first=1", "v=1&origin=a&hops=x&first=1", "%zz", "v=1&origin=a&hops=1&first=1&size=-3", "v=1&origin=a&hops=1&first=1&size=x"} {
		if _, err := DecodeRoute(bad); err == nil {
			t.Errorf("DecodeRoute(%q) accepted", bad)
		}
	}
}

func TestRcptRoundTrip(t *testing.T) {
	for _, r := range []Recipient{
		{Addr: "a;b=c@x.example", State: Pending},
		{Addr: "s@x.example", Stage: StageHierarchy, HierarchyStore: "p1", HierarchyServer: "s1", Excluded: []string{"p0"}, State: Pending},
		{Addr: "s@x.example", Stage: StageTarget, Server: "s2", Store: "p2", State: Pending},
		// R14: a route through a1 twice, once per stage; names holding the separators survive.
		{Addr: "s@x.example", Stage: StageTarget, Server: "b1", Store: "b1-pub", State: Pending, Visits: []Visit{
			{Server: "a1", Stage: StageHierarchy, Dest: "a2-pub"}, {Server: "a2", Stage: StageTarget, Dest: "b1-pub"}, {Server: "odd:name,x", Stage: StageNew}}},
		{Addr: "bob@example.net", Stage: StageTarget, Server: "s2", Outbound: "internet", State: Pending},
	} {
		got, err := DecodeRcpt(EncodeRcpt(r))
		if err != nil || !reflect.DeepEqual(got, r) {
			t.Fatalf("got %+v, %v; want %+v", got, err, r)
		}
	}
	for _, bad := range []string{"", "stage=target&rcpt=a@b", "rcpt=a@b&stage=weird", "rcpt=a@b&stage=hierarchy&hstore=x",
		"rcpt=a@b&via=a1", "rcpt=a@b&via=a1:weird:x", "rcpt=a@b&via=:target:x", "rcpt=a@b&via=a%251:target:%zz", "rcpt=a@b&stage=target&server=s"} {
		if _, err := DecodeRcpt(bad); err == nil {
			t.Errorf("DecodeRcpt(%q) accepted", bad)
		}
	}
}

// The metadata parsers never panic and what they accept re-encodes stably.
func FuzzDecode(f *testing.F) {
	f.Add(EncodeRoute(Route{OriginID: "o", Hops: 1, Visited: []string{"a"}}))
	f.Add(EncodeRcpt(Recipient{Addr: "a@b", Stage: StageTarget, Server: "s", Store: "t"}))
	f.Add(EncodeRcpt(Recipient{Addr: "a@b", Stage: StageTarget, Server: "s", Store: "t", Visits: []Visit{{Server: "a", Stage: StageTarget, Dest: "t"}}}))
	f.Add("v=1&origin=%00&hops=1&first=99999999999999")
	f.Fuzz(func(t *testing.T, s string) {
		if r, err := DecodeRoute(s); err == nil {
			if _, err := DecodeRoute(EncodeRoute(r)); err != nil {
				t.Fatalf("re-encode of %q fails: %v", s, err)
			}
		}
		if r, err := DecodeRcpt(s); err == nil {
			if _, err := DecodeRcpt(EncodeRcpt(r)); err != nil {
				t.Fatalf("re-encode of %q fails: %v", s, err)
			}
		}
	})
}
