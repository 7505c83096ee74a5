package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"pfrouter/config"
	"pfrouter/servercred"
)

// Issue 10 item 5: a short secret, or a secret file group or others can
// read, is refused with a message that says what to do; the generated
// default satisfies servercred.CheckSecret and is 0600.
func TestResolveSecret(t *testing.T) {
	dir := t.TempDir()
	write := func(name, v string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(v+"\n"), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return name
	}
	good := strings.Repeat("ab", 32)
	for _, c := range []struct {
		name string
		org  config.Org
		want string // "" = accepted
	}{
		{"inline", config.Org{Secret: good}, ""},
		{"short inline", config.Org{Secret: "abc"}, "openssl rand -hex 32"},
		{"file 0600", config.Org{SecretFile: write("ok", good, 0o600)}, ""},
		{"file 0400", config.Org{SecretFile: write("ro", good, 0o400)}, ""},
		{"short file", config.Org{SecretFile: write("short", "abc", 0o600)}, "openssl rand -hex 32"},
		{"world-readable file", config.Org{SecretFile: write("world", good, 0o644)}, "chmod 600"},
		{"group-readable file", config.Org{SecretFile: write("group", good, 0o640)}, "chmod 600"},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.org.Dir = dir
			v, err := c.org.ResolveSecret("")
			switch {
			case c.want == "" && (err != nil || v != good):
				t.Errorf("refused: %q %v", v, err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Errorf("got %q %v, want an error mentioning %q", v, err, c.want)
			}
		})
	}
	// The default: generated on first use, strong enough, private.
	data := t.TempDir()
	var o config.Org
	v, err := o.ResolveSecret(data)
	if err != nil {
		t.Fatal(err)
	}
	if err := servercred.CheckSecret(v); err != nil {
		t.Errorf("generated secret: %v", err)
	}
	fi, err := os.Stat(filepath.Join(data, "org.secret"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("generated secret file: %v %v", fi.Mode(), err)
	}
	if again, err := o.ResolveSecret(data); err != nil || again != v {
		t.Errorf("second resolve: %q %v", again, err)
	}
	// An admin token file is held to the same rule.
	tok := config.Credential{What: "admin token", File: write("token", "t0ken-value", 0o644), OrgDir: dir}
	if _, err := tok.Resolve(); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("world-readable admin token file: %v", err)
	}
}
