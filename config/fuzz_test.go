package config_test

import (
	"testing"
	"time"

	"pfrouter/config"
	"pfrouter/directory"
	"pfrouter/examples"
	"pfrouter/linkstate"
)

// FuzzConfigParse: config.Parse never panics on arbitrary bytes, and what it
// accepts is a consistent organization: the directory and the link-state
// table build from it without error (validation catches every dangling
// reference first).
func FuzzConfigParse(f *testing.F) {
	f.Add(examples.Contoso)
	f.Add([]byte(full))
	f.Add([]byte(minimal))
	f.Add([]byte("organization: T\ndomains: [x.example]\nconnectors: [{name: c, between: [a, a], cost: 1}]"))
	f.Add([]byte("a: &a [1, 2]\nb: *a"))
	f.Add([]byte("organization: T\ndomains: [{name: X.Example., case_sensitive_local_part: true}]"))
	f.Add([]byte("routing: {store_min_age: 2d, hop_limit: -1}\nfolders: [{path: /, replicas: [x, x]}]"))
	f.Fuzz(func(t *testing.T, b []byte) {
		org, err := config.Parse(b, "fuzz.yaml", ".")
		if err != nil {
			return
		}
		if org == nil {
			t.Fatal("nil org without error")
		}
		fixed := time.Date(2025, 7, 1, 0, 0, 0, 0, time.UTC)
		if _, err := directory.New(org, directory.Options{Now: func() time.Time { return fixed }}); err != nil {
			t.Fatalf("valid org, directory refuses it: %v", err)
		}
		if _, err := linkstate.FromConfig(org); err != nil {
			t.Fatalf("valid org, link state refuses it: %v", err)
		}
	})
}

// recursiveAlias is a YAML document whose anchor contains an alias to
// itself. Parse must refuse it with an error (a malformed file gets an
// error, never a hang).
const recursiveAlias = "a: &a [*a, *a]\nb: *a"

// A self-referencing anchor is an error, not a hang or an out-of-memory
// crash (the line indexer does not follow aliases).
func TestParseRecursiveAliasIsAnError(t *testing.T) {
	done := make(chan error, 1)
	go func() {
		_, err := config.Parse([]byte(recursiveAlias), "alias.yaml", ".")
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("recursive alias accepted")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("config.Parse did not return on a recursive alias")
	}
}
