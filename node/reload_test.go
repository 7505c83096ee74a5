package node

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"pfrouter/store"
)

// Issue 10 item 7: settings that a reload used to accept and then ignore
// (message_class, the report domain, probe and retry timings, SMTP limits)
// are in force on the running server after the reload.
func TestReloadAppliesTunables(t *testing.T) {
	t.Parallel()
	c, path := startOrgFile(t, testOrg)
	ctx := context.Background()
	s1 := c.Nodes["s1"]
	addr := s1.Org.ServerByName("s1").Listen.SMTP

	nw := strings.Replace(testOrg, "domains: [test.example]", "domains: [reports.example, test.example]", 1)
	nw = strings.Replace(nw, "routing: {store_min_age: 48h,", "routing: {message_class: IPM.Note, store_min_age: 48h,", 1)
	nw = strings.Replace(nw, "limits: {max_message_size: 200KB}", "limits: {max_message_size: 2KB, max_recipients: 1}", 1)
	if nw == testOrg {
		t.Fatal("test setup: edits did not apply")
	}
	if err := os.WriteFile(path, []byte(nw), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := c.Reload(ctx); err != nil {
		t.Fatal(err)
	}

	// SMTP limits: a 3 KB message is now too large, a second recipient too many.
	big := "Subject: big\r\n\r\n" + strings.Repeat("x", 3000) + "\r\n"
	var se *gosmtp.SMTPError
	if err := sendRaw(addr, "x@example.net", []string{"both@test.example"}, []byte(big)); !errors.As(err, &se) || se.Code != 552 {
		t.Errorf("3 KB message after max_message_size 2KB: %v, want 552", err)
	}
	if err := sendRaw(addr, "x@example.net", []string{"both@test.example", "remote@test.example"}, []byte("Subject: two\r\n\r\nx\r\n")); !errors.As(err, &se) || se.Code != 452 {
		t.Errorf("two recipients after max_recipients 1: %v, want 452", err)
	}

	// message_class (R16): a post delivered now is an IPM.Note.
	id, err := post(t, s1, "x@example.net", "both@test.example", "class after reload")
	if err != nil {
		t.Fatal(err)
	}
	ref := store.MailboxRef{Store: "s1-pub", Name: "/Both"}
	waitMessage(t, s1, ref, id, 15*time.Second)
	msgs, err := s1.Store.Messages(ctx, ref)
	if err != nil || len(msgs) == 0 {
		t.Fatal(msgs, err)
	}
	if got := msgs[len(msgs)-1].Class; got != "IPM.Note" {
		t.Errorf("class of a post delivered after the reload %q, want IPM.Note", got)
	}

	// The report domain: a non-delivery report now comes from the first
	// domain of the new config.
	small := "Message-Id: <too-big.reload@test>\r\nSubject: small\r\n\r\n" + strings.Repeat("y", 1500) + "\r\n"
	if err := sendRaw(addr, "alice@test.example", []string{"small@test.example"}, []byte(small)); err != nil {
		t.Fatal(err)
	}
	ndr := waitMessage(t, s1, store.MailboxRef{Store: "s1-mbx", User: "alice", Name: "INBOX"}, "too-big.reload@test", 15*time.Second)
	if !strings.Contains(string(ndr), "@s1.reports.example>") || !strings.Contains(string(ndr), "postmaster@reports.example") {
		t.Errorf("report after the reload does not use the new first domain:\n%s", ndr)
	}
}

// Issue 10 item 7: the admin API had no idle, read or write timeout (only
// ReadHeaderTimeout): a keep-alive client holding an idle connection, or
// one trickling a body, held it for ever. Every timeout is set now.
func TestAdminHTTPServerTimeouts(t *testing.T) {
	hs := adminHTTPServer(nil)
	for name, d := range map[string]time.Duration{"ReadHeaderTimeout": hs.ReadHeaderTimeout, "ReadTimeout": hs.ReadTimeout,
		"WriteTimeout": hs.WriteTimeout, "IdleTimeout": hs.IdleTimeout} {
		if d <= 0 || d > 5*time.Minute {
			t.Errorf("%s = %s, want a bound of at most 5m", name, d)
		}
	}
	if hs.MaxHeaderBytes <= 0 || hs.MaxHeaderBytes > 1<<20 {
		t.Errorf("MaxHeaderBytes = %d", hs.MaxHeaderBytes)
	}
}
