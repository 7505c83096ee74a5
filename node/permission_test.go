package node

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"pfrouter/admin"
	"pfrouter/routing"
)

// Issue 12 item 3 (hierarchy replication of permissions), R17: `pfrouter
// admin folder permission set` on one server reaches every server's
// directory by gossip and is enforced there: after s1 takes Anonymous's
// create right on /Sales away, s3 (another routing group, no replica of
// its own) refuses an anonymous post at RCPT with 550 5.7.1; a later
// change made on s2 gives it back everywhere.
//
// A user's own entry is enforced the same way: once s2 makes alice a
// Reviewer (no create right), s3 refuses her authenticated post (5.7.1)
// while anonymous posts still pass.
func TestFolderPermissionByAdminReachesEveryServer(t *testing.T) {
	c := startOrg(t, permOrg)
	ctx := context.Background()
	s3 := c.Nodes["s3"]
	// everywhere reports whether every server's directory gives principal
	// role on /Sales.
	everywhere := func(principal, role string) (bool, string) {
		for _, name := range []string{"s1", "s2", "s3"} {
			if got := c.Nodes[name].Directory.Snapshot().Folder("PF:/Sales").Permissions[principal]; got != role {
				return false, fmt.Sprintf("%s: %s is %q", name, principal, got)
			}
		}
		return true, ""
	}
	alicePost := func() routing.Decision {
		return routing.Decide(s3.Directory.Snapshot(), s3.LinkState.Graph(), s3.Params(),
			routing.Input{At: "s3", Sender: "alice@repl.example", SenderUser: "alice", Recipient: "sales@repl.example", Now: time.Now()})
	}
	if d := alicePost(); d.Outcome != routing.Deliver {
		t.Fatalf("the file's permissions (Default: Author) refused alice's post: %+v", d)
	}
	anonPost := func(subject string) error {
		_, err := post(t, s3, "someone@example.net", "sales@repl.example", subject)
		return err
	}
	if err := anonPost("before"); err != nil {
		t.Fatalf("the file's permissions (Anonymous: Contributor) refused an anonymous post: %v", err)
	}

	var apiErr *admin.APIError
	bad := []admin.PermissionRequest{
		{Hierarchy: "PF", Folder: "/Sales", Principal: "Anonymous", Role: "Boss"},
		{Hierarchy: "PF", Folder: "/Sales", Principal: "mallory", Role: "Owner"},
		{Hierarchy: "PF", Folder: "/Nowhere", Principal: "Default", Role: "Owner"},
	}
	for _, r := range bad {
		if err := adminClient(t, c.Nodes["s1"]).SetFolderPermission(ctx, r); !errors.As(err, &apiErr) || apiErr.Status != 400 {
			t.Fatalf("%+v: %v, want a 400", r, err)
		}
	}

	if err := adminClient(t, c.Nodes["s1"]).SetFolderPermission(ctx, admin.PermissionRequest{Hierarchy: "PF", Folder: "/Sales", Principal: "anonymous", Role: "none"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "every directory has Anonymous: None and s3 refuses the anonymous post", func() (bool, string) {
		if ok, why := everywhere("Anonymous", "None"); !ok {
			return false, why
		}
		err := anonPost("while refused")
		var se *gosmtp.SMTPError
		return errors.As(err, &se) && se.Code == 550 && se.EnhancedCode == gosmtp.EnhancedCode{5, 7, 1}, fmt.Sprint("post: ", err)
	})

	if err := adminClient(t, c.Nodes["s2"]).SetFolderPermission(ctx, admin.PermissionRequest{Hierarchy: "PF", Folder: "/Sales", Principal: "Anonymous", Role: "Contributor"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the later change wins everywhere and s3 takes the post again", func() (bool, string) {
		if ok, why := everywhere("Anonymous", "Contributor"); !ok {
			return false, why
		}
		err := anonPost("after")
		return err == nil, fmt.Sprint("post: ", err)
	})

	if err := adminClient(t, c.Nodes["s2"]).SetFolderPermission(ctx, admin.PermissionRequest{Hierarchy: "PF", Folder: "/Sales", Principal: "alice", Role: "Reviewer"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "s3 refuses alice's post as a Reviewer", func() (bool, string) {
		if ok, why := everywhere("alice", "Reviewer"); !ok {
			return false, why
		}
		d := alicePost()
		return d.Outcome != routing.Deliver && d.Code == "5.7.1", fmt.Sprintf("%s %s %s", d.Outcome, d.Code, d.Reason)
	})
	if err := anonPost("anonymous still"); err != nil {
		t.Fatalf("alice's entry changed the anonymous post: %v", err)
	}
}

// permOrg is replOrg3 with a user (alice, mailbox on s3).
var permOrg = strings.Replace(replOrg3, "hierarchies:", `    stores: [{name: s3-mbx, kind: mailbox}]
users:
  - {name: alice, addresses: [alice@repl.example], mailbox_store: s3-mbx, password: alice-pw}
hierarchies:`, 1)
