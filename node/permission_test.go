package node

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"pfrouter/admin"
)

// Issue 12 item 3 (hierarchy replication of permissions), R17: `pfrouter
// admin folder permission set` on one server reaches every server's
// directory by gossip and is enforced there: after s1 takes Anonymous's
// create right on /Sales away, s3 (another routing group, no replica of
// its own) refuses an anonymous post at RCPT with 550 5.7.1; a later
// change made on s2 gives it back everywhere.
func TestFolderPermissionByAdminReachesEveryServer(t *testing.T) {
	c := startOrg(t, replOrg3)
	ctx := context.Background()
	s3 := c.Nodes["s3"]
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
		for _, name := range []string{"s1", "s2", "s3"} {
			if got := c.Nodes[name].Directory.Snapshot().Folder("PF:/Sales").Permissions["Anonymous"]; got != "None" {
				return false, fmt.Sprintf("%s: Anonymous is %q", name, got)
			}
		}
		err := anonPost("while refused")
		var se *gosmtp.SMTPError
		return errors.As(err, &se) && se.Code == 550 && se.EnhancedCode == gosmtp.EnhancedCode{5, 7, 1}, fmt.Sprint("post: ", err)
	})

	if err := adminClient(t, c.Nodes["s2"]).SetFolderPermission(ctx, admin.PermissionRequest{Hierarchy: "PF", Folder: "/Sales", Principal: "Anonymous", Role: "Contributor"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the later change wins everywhere and s3 takes the post again", func() (bool, string) {
		for _, name := range []string{"s1", "s2", "s3"} {
			if got := c.Nodes[name].Directory.Snapshot().Folder("PF:/Sales").Permissions["Anonymous"]; got != "Contributor" {
				return false, fmt.Sprintf("%s: Anonymous is %q", name, got)
			}
		}
		err := anonPost("after")
		return err == nil, fmt.Sprint("post: ", err)
	})
}
