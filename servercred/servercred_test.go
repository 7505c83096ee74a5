package servercred

import "testing"

func TestIsServerName(t *testing.T) {
	for _, c := range []struct {
		name string
		want bool
	}{{Username("ex1"), true}, {"server:", true}, {"alice", false}, {"Server:ex1", false}} {
		if got := IsServerName(c.name); got != c.want {
			t.Errorf("IsServerName(%q) = %v", c.name, got)
		}
	}
}
