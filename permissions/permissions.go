// Package permissions maps public folder roles to rights, as Exchange does
// (SPEC R17). It is pure: smtpd asks it whether a sender may post to a
// folder, the IMAP access tier whether a reader may list, read or append.
// The directory supplies each folder's principal → role table.
package permissions

import (
	"fmt"
	"sort"
	"strings"
)

// Principals with a special meaning in a folder's permission table.
const (
	Anonymous = "Anonymous" // unauthenticated senders and readers
	Default   = "Default"   // every authenticated user without an entry of their own
)

// Role is one of Exchange's nine public folder roles.
type Role string

const (
	Owner            Role = "Owner"
	PublishingEditor Role = "PublishingEditor"
	Editor           Role = "Editor"
	PublishingAuthor Role = "PublishingAuthor"
	Author           Role = "Author"
	NonEditingAuthor Role = "NonEditingAuthor"
	Reviewer         Role = "Reviewer"
	Contributor      Role = "Contributor"
	None             Role = "None"
)

// Rights are the individual permissions a role grants.
type Rights struct {
	CreateItems, ReadItems, CreateSubfolders, FolderOwner, FolderContact,
	FolderVisible, EditOwn, EditAll, DeleteOwn, DeleteAll bool
}

var table = map[Role]Rights{
	Owner:            {true, true, true, true, true, true, true, true, true, true},
	PublishingEditor: {true, true, true, false, false, true, true, true, true, true},
	Editor:           {true, true, false, false, false, true, true, true, true, true},
	PublishingAuthor: {true, true, true, false, false, true, true, false, true, false},
	Author:           {true, true, false, false, false, true, true, false, true, false},
	NonEditingAuthor: {true, true, false, false, false, true, false, false, true, false},
	Reviewer:         {false, true, false, false, false, true, false, false, false, false},
	Contributor:      {true, false, false, false, false, true, false, false, false, false},
	None:             {false, false, false, false, false, true, false, false, false, false},
}

// ParseRole accepts a role name, case-insensitively.
func ParseRole(s string) (Role, error) {
	for r := range table {
		if strings.EqualFold(string(r), s) {
			return r, nil
		}
	}
	names := make([]string, 0, len(table))
	for r := range table {
		names = append(names, string(r))
	}
	sort.Strings(names)
	return "", fmt.Errorf("unknown role %q (one of %s)", s, strings.Join(names, ", "))
}

// Of returns the rights of a role; an unknown role has none.
func Of(r Role) Rights { return table[r] }

// RoleFor picks the role that applies to a principal: anonymous callers get
// the Anonymous entry, authenticated users their own entry, else Default. A
// missing entry means None, except that a folder without an explicit
// Anonymous entry falls back to Default for nobody: Exchange treats an absent
// Anonymous as None.
func RoleFor(perms map[string]string, user string, authenticated bool) Role {
	if !authenticated {
		return roleOrNone(perms, Anonymous)
	}
	if r, ok := lookup(perms, user); ok {
		return r
	}
	return roleOrNone(perms, Default)
}

func roleOrNone(perms map[string]string, principal string) Role {
	if r, ok := lookup(perms, principal); ok {
		return r
	}
	return None
}

func lookup(perms map[string]string, principal string) (Role, bool) {
	if v, ok := perms[principal]; ok {
		r, err := ParseRole(v)
		return r, err == nil
	}
	for k, v := range perms {
		if strings.EqualFold(k, principal) {
			r, err := ParseRole(v)
			return r, err == nil
		}
	}
	return "", false
}
