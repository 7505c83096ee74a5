package permissions

import "testing"

// R17: roles and rights, principal resolution.
func TestR17RoleFor(t *testing.T) {
	perms := map[string]string{"Default": "Author", "Anonymous": "Contributor", "alice": "Owner", "bob": "None"}
	cases := []struct {
		user   string
		authed bool
		want   Role
	}{
		{"", false, Contributor},
		{"alice", true, Owner},
		{"ALICE", true, Owner},
		{"bob", true, None},
		{"carol", true, Author},
		{"alice", false, Contributor}, // unauthenticated is Anonymous whatever name it claims
	}
	for _, c := range cases {
		if got := RoleFor(perms, c.user, c.authed); got != c.want {
			t.Errorf("RoleFor(%q,%v) = %s, want %s", c.user, c.authed, got, c.want)
		}
	}
	if got := RoleFor(map[string]string{"Default": "Reviewer"}, "", false); got != None {
		t.Errorf("absent Anonymous entry = %s, want None", got)
	}
}

func TestR17Rights(t *testing.T) {
	if !Of(Contributor).CreateItems || Of(Contributor).ReadItems {
		t.Error("Contributor must create but not read")
	}
	if Of(Reviewer).CreateItems || !Of(Reviewer).ReadItems {
		t.Error("Reviewer must read but not create")
	}
	if Of(None).CreateItems || Of(None).ReadItems {
		t.Error("None must neither create nor read")
	}
	if !Of(Editor).EditAll || Of(Author).EditAll || !Of(Author).EditOwn {
		t.Error("edit rights wrong")
	}
	if Of(NonEditingAuthor).EditOwn || !Of(NonEditingAuthor).DeleteOwn {
		t.Error("NonEditingAuthor rights wrong")
	}
	if _, err := ParseRole("owner"); err != nil {
		t.Error(err)
	}
	if _, err := ParseRole("Boss"); err == nil {
		t.Error("unknown role accepted")
	}
}
