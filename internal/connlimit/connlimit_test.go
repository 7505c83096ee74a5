package connlimit

import (
	"net"
	"testing"
)

func TestLimits(t *testing.T) {
	a := &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 1}
	a2 := &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 2} // same IP, other port
	b := &net.TCPAddr{IP: net.IPv4(192, 0, 2, 2), Port: 1}
	for _, c := range []struct {
		name           string
		perIP, perUser int
		ipOK           []bool // successive IP() results for a, a2, a, b
	}{
		{"two per IP", 2, 1, []bool{true, true, false, true}},
		{"unlimited", -1, -1, []bool{true, true, true, true}},
		{"defaults", 0, 0, []bool{true, true, true, true}},
	} {
		t.Run(c.name, func(t *testing.T) {
			l := New(c.perIP, c.perUser)
			var releases []func()
			for i, addr := range []net.Addr{a, a2, a, b} {
				rel, ok := l.IP(addr)
				if ok != c.ipOK[i] {
					t.Fatalf("IP #%d (%v): ok=%v, want %v", i, addr, ok, c.ipOK[i])
				}
				if ok {
					releases = append(releases, rel)
				}
			}
			releases[0]()
			releases[0]() // twice is harmless
			if _, ok := l.IP(a); !ok {
				t.Fatal("a slot released is not free again")
			}
		})
	}
	l := New(-1, 1)
	rel, ok := l.User("alice")
	if !ok {
		t.Fatal("first session of alice refused")
	}
	if _, ok := l.User("alice"); ok {
		t.Fatal("second session of alice admitted with a limit of 1")
	}
	if _, ok := l.User("bob"); !ok {
		t.Fatal("bob refused because of alice")
	}
	rel()
	if _, ok := l.User("alice"); !ok {
		t.Fatal("alice refused after her session ended")
	}
}
