package servercred

import "testing"

// S5: only a holder of the organization secret can log in as a server.
func TestVerify(t *testing.T) {
	pw := Password("s3cret", "ex1")
	if srv, ok := Verify("s3cret", Username("ex1"), pw); !ok || srv != "ex1" {
		t.Fatalf("valid credential refused: %q %v", srv, ok)
	}
	for _, c := range []struct{ secret, user, pw string }{
		{"other", Username("ex1"), pw},
		{"s3cret", Username("ex2"), pw},
		{"s3cret", "ex1", pw},
		{"s3cret", Username(""), Password("s3cret", "")},
		{"", Username("ex1"), Password("", "ex1")},
	} {
		if _, ok := Verify(c.secret, c.user, c.pw); ok {
			t.Errorf("Verify(%q, %q) accepted a bad credential", c.secret, c.user)
		}
	}
}
