package directory

import (
	"fmt"
	"testing"
)

// TestAddrTable: the index's address table answers as a Go map built from
// the same pairs would: every key its last id, nothing for a key not put
// in, whether it shares a prefix, a length or neither.
func TestAddrTable(t *testing.T) {
	var keys []string
	var ids []int32
	want := map[string]int32{}
	for i := 0; i < 5000; i++ {
		k := fmt.Sprintf("f%05d@example.com", i%4000) // the last 1,000 repeat a key: the last wins
		keys, ids = append(keys, k), append(ids, int32(i))
		want[k] = int32(i)
	}
	tab := newAddrTable(keys, ids)
	if 4*len(tab.slots) < 5*len(want) {
		t.Fatalf("%d slots for %d keys: more than 80%% full", len(tab.slots), len(want))
	}
	for k, id := range want {
		if got, ok := tab.get(k); !ok || got != id {
			t.Fatalf("%q: %d %v, want %d", k, got, ok, id)
		}
	}
	for _, k := range []string{"", "f04000@example.com", "f0000@example.com", "f000000@example.com", "F00001@example.com", "f00001@example.co", "x"} {
		if got, ok := tab.get(k); ok {
			t.Fatalf("%q: found %d, never put in", k, got)
		}
	}
	var empty addrTable
	if _, ok := empty.get("a@b"); ok {
		t.Fatal("an empty table found a key")
	}
}
