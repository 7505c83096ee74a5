package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	gosmtp "github.com/emersion/go-smtp"

	"pfrouter/internal/smtpsink"
	"pfrouter/store"
	"pfrouter/tracking"
)

// outboundOrg is testOrg with an outbound connector for every outside
// domain, homed on s4 (another routing group than s1, so mail to it
// crosses a connector), with the given smarthost settings.
func outboundOrg(t *testing.T, smarthost, tlsMode, extra string) string {
	t.Helper()
	ob := fmt.Sprintf("outbound:\n  - {name: internet, address_spaces: [\"*\"], smarthost: %q, cost: 5, tls: %s, source_servers: [s4]%s}\nservers:\n", smarthost, tlsMode, extra)
	y := strings.Replace(testOrg, "servers:\n", ob, 1)
	y = strings.ReplaceAll(y, `listen: {smtp: "127.0.0.1:0"}`, `listen: {smtp: "127.0.0.1:0", admin: "127.0.0.1:0"}`)
	// Reports come quickly: a short expiry for the retry-then-report case.
	y = strings.Replace(y, "routing: {", "routing: {message_expiry: 4s, ", 1)
	if y == testOrg {
		t.Fatal("test setup: org edit failed")
	}
	return y
}

// tlsSinkOrg starts a TLS smarthost requiring AUTH and an org whose
// outbound connector trusts the sink's CA (ca_file) and logs in with an
// auth_file of mode 0600.
func tlsSinkOrg(t *testing.T) (*Cluster, *smtpsink.Sink) {
	t.Helper()
	sink := smtpsink.Start(t, smtpsink.Options{TLS: true, Users: map[string]string{"pfrelay": "relay-pw"}})
	dir := t.TempDir()
	ca, auth := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "smarthost.auth")
	if err := os.WriteFile(ca, sink.CAPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(auth, []byte("pfrelay:relay-pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, _ := startOrgFile(t, outboundOrg(t, sink.Addr, "required", fmt.Sprintf(", ca_file: %q, auth_file: %q", ca, auth)))
	return c, sink
}

func headerOf(b []byte) string {
	s := string(b)
	if i := strings.Index(s, "\r\n\r\n"); i >= 0 {
		return s[:i]
	}
	return s
}

func assertNothingInternal(t *testing.T, m smtpsink.Message) {
	t.Helper()
	h := strings.ToLower(headerOf(m.Data))
	for _, leak := range []string{"x-pfrouter", "traceparent", "tracestate"} {
		if strings.Contains(h, leak) {
			t.Errorf("%s left the organization:\n%s", leak, h)
		}
	}
}

// Issue 10 item 6: a non-delivery report to a sender outside the
// organization leaves through the outbound connector: routed to its source
// server (s4, across connector ab), then to the smarthost over verified
// TLS with AUTH, without internal headers. `pfrouter route` explains it.
func TestOutboundReportToOutsideSender(t *testing.T) {
	t.Parallel()
	c, sink := tlsSinkOrg(t)
	s1 := c.Nodes["s1"]
	d, err := s1.Operator().Route(context.Background(), "s1", "someone@example.net", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if d.Outbound == nil || d.Outbound.Connector != "internet" || d.Server != "s4" || strings.Join(d.Route, ">") != "s1>s2>s3>s4" || d.Cost != 15 {
		t.Fatalf("route to an outside address: %+v (outbound %+v), want connector internet via s4 on s1>s2>s3>s4 cost 15", d, d.Outbound)
	}
	var text strings.Builder
	d.WriteText(&text)
	if !strings.Contains(text.String(), "outbound connector internet on s4") {
		t.Errorf("explanation does not name the connector:\n%s", text.String())
	}

	big := "Message-Id: <outside-sender.report@test>\r\nSubject: too big\r\n\r\n" + strings.Repeat("z", 1500) + "\r\n"
	if err := sendRaw(s1.Org.ServerByName("s1").Listen.SMTP, "someone@example.net", []string{"small@test.example"}, []byte(big)); err != nil {
		t.Fatal(err)
	}
	m := sink.Wait(t, "outside-sender.report@test", 30*time.Second)
	if m.From != "" || len(m.To) != 1 || m.To[0] != "someone@example.net" {
		t.Errorf("report envelope from %q to %v, want <> to someone@example.net", m.From, m.To)
	}
	if !m.TLS || m.AuthAs != "pfrelay" {
		t.Errorf("report sent with tls=%v auth=%q, want verified TLS and AUTH as pfrelay", m.TLS, m.AuthAs)
	}
	if !strings.Contains(string(m.Data), "5.2.3") {
		t.Errorf("the report does not carry the refusal:\n%s", m.Data)
	}
	assertNothingInternal(t, m)
}

func submit(t *testing.T, addr, user, pw string) *gosmtp.Client {
	t.Helper()
	// The test's client does not check the server's self-signed certificate.
	cl, err := gosmtp.DialStartTLS(addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	if user != "" {
		if err := cl.Auth(sasl.NewPlainClient("", user, pw)); err != nil {
			t.Fatal(err)
		}
	}
	return cl
}

func smtpCode(err error) string {
	var se *gosmtp.SMTPError
	if !errors.As(err, &se) {
		return fmt.Sprint(err)
	}
	return fmt.Sprintf("%d %d.%d.%d", se.Code, se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])
}

// Issue 10 item 6: an authenticated user relays to an outside address;
// nobody else may (no open relay), and a user may not forge MAIL FROM.
func TestOutboundRelayRules(t *testing.T) {
	t.Parallel()
	c, sink := tlsSinkOrg(t)
	addr := c.Nodes["s1"].Org.ServerByName("s1").Listen.SMTP

	anon := submit(t, addr, "", "")
	if err := anon.Mail("someone@example.org", nil); err != nil {
		t.Fatal(err)
	}
	if got := smtpCode(anon.Rcpt("bob@example.net", nil)); got != "550 5.7.1" {
		t.Errorf("unauthenticated relay to an outside address: %s, want 550 5.7.1", got)
	}

	forger := submit(t, addr, "alice", "alice-pw")
	if got := smtpCode(forger.Mail("dave@test.example", nil)); got != "553 5.7.1" {
		t.Errorf("alice as dave@test.example: %s, want 553 5.7.1", got)
	}
	if got := smtpCode(forger.Mail("ceo@example.net", nil)); got != "553 5.7.1" {
		t.Errorf("alice as an outside address: %s, want 553 5.7.1", got)
	}

	alice := submit(t, addr, "alice", "alice-pw")
	msg := "From: alice@test.example\r\nTo: bob@example.net\r\nMessage-Id: <alice-out@test>\r\nX-Pfrouter-By: alice\r\nSubject: hello outside\r\n\r\nhi\r\n"
	if err := alice.SendMail("alice@test.example", []string{"bob@example.net"}, strings.NewReader(msg)); err != nil {
		t.Fatalf("authenticated user to an outside address: %v", err)
	}
	m := sink.Wait(t, "alice-out@test", 30*time.Second)
	if m.From != "alice@test.example" || len(m.To) != 1 || m.To[0] != "bob@example.net" {
		t.Errorf("envelope from %q to %v", m.From, m.To)
	}
	assertNothingInternal(t, m)

	// Tracked like any relay: s4 (the source server) records the handover
	// to the smarthost, naming the connector.
	deadline := time.Now().Add(30 * time.Second)
	var kinds []string
	for {
		res := tracking.Collect(context.Background(), endpoints(t, c, "s1", "s2", "s3", "s4"), "alice-out@test")
		kinds = kinds[:0]
		found := false
		for _, e := range res.Events {
			kinds = append(kinds, e.Server+":"+e.Kind)
			if e.Server == "s4" && e.Kind == "relayed" && e.Details["outbound"] == "internet" {
				found = true
			}
		}
		if found {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no s4 relayed event naming outbound connector internet: %v", kinds)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitReport waits for a report about needle in alice's inbox on s1.
func waitReport(t *testing.T, c *Cluster, needle string) string {
	t.Helper()
	return string(waitMessage(t, c.Nodes["s1"], store.MailboxRef{Store: "s1-mbx", User: "alice", Name: "INBOX"}, needle, 60*time.Second))
}

// Issue 10 item 6: tls: required and a smarthost that offers no STARTTLS:
// nothing goes out in plain text; the message is retried, then reported
// to its (local) sender at expiry.
func TestOutboundTLSRequiredNoPlaintext(t *testing.T) {
	t.Parallel()
	sink := smtpsink.Start(t, smtpsink.Options{}) // no STARTTLS
	c, _ := startOrgFile(t, outboundOrg(t, sink.Addr, "required", ""))
	alice := submit(t, c.Nodes["s1"].Org.ServerByName("s1").Listen.SMTP, "alice", "alice-pw")
	msg := "Message-Id: <needs-tls@test>\r\nSubject: secret\r\n\r\nsecret\r\n"
	if err := alice.SendMail("alice@test.example", []string{"bob@example.net"}, strings.NewReader(msg)); err != nil {
		t.Fatal(err)
	}
	report := waitReport(t, c, "needs-tls@test")
	if !strings.Contains(report, "STARTTLS") {
		t.Errorf("report does not say why:\n%s", report)
	}
	if len(sink.Sessions()) < 2 {
		t.Errorf("%d attempts at the smarthost, want retries before the report", len(sink.Sessions()))
	}
	for _, s := range sink.Sessions() {
		if s.Mail {
			t.Fatal("MAIL FROM went to the smarthost in plain text")
		}
	}
	if len(sink.Messages()) != 0 {
		t.Fatal("the message went out in plain text")
	}
}

// The same cases against a real peer, Postfix's smtp-sink (no STARTTLS):
// with tls: opportunistic a report to an outside sender reaches it; with
// tls: required nothing does and the sender gets a report.
func TestOutboundPostfixSmtpSink(t *testing.T) {
	t.Parallel()
	bin, err := exec.LookPath("smtp-sink")
	if err != nil {
		t.Skip("smtp-sink (Postfix) is not installed: install postfix to run this test (.ci/run does); the go-smtp smarthost tests cover the same path")
	}
	for _, mode := range []string{"opportunistic", "required"} {
		t.Run(mode, func(t *testing.T) {
			dump := t.TempDir()
			addr := startSmtpSink(t, bin, dump)
			c, _ := startOrgFile(t, outboundOrg(t, addr, mode, ""))
			s1 := c.Nodes["s1"]
			id := "<" + mode + ".smtp-sink@test>"
			big := "Message-Id: " + id + "\r\nSubject: too big\r\n\r\n" + strings.Repeat("z", 1500) + "\r\n"
			smtpAddr := s1.Org.ServerByName("s1").Listen.SMTP
			if mode == "required" {
				// A user's message waits for TLS that never comes, then is
				// reported to the user; nothing reaches smtp-sink.
				alice := submit(t, smtpAddr, "alice", "alice-pw")
				if err := alice.SendMail("alice@test.example", []string{"bob@example.net"}, strings.NewReader(big)); err != nil {
					t.Fatal(err)
				}
				if r := waitReport(t, c, mode+".smtp-sink@test"); !strings.Contains(r, "STARTTLS") {
					t.Errorf("report does not say why:\n%s", r)
				}
				if files, _ := os.ReadDir(dump); len(files) != 0 {
					t.Fatalf("smtp-sink received %d messages although TLS is required", len(files))
				}
				return
			}
			if err := sendRaw(smtpAddr, "someone@example.net", []string{"small@test.example"}, []byte(big)); err != nil {
				t.Fatal(err)
			}
			got := waitDump(t, dump, mode+".smtp-sink@test", 30*time.Second)
			if !strings.Contains(got, "X-Mail-Args: <>") || !strings.Contains(got, "<someone@example.net>") {
				t.Errorf("smtp-sink did not get a report to someone@example.net:\n%s", got)
			}
			if l := strings.ToLower(got); strings.Contains(l, "x-pfrouter") || strings.Contains(l, "traceparent") {
				t.Errorf("internal headers reached smtp-sink:\n%s", got)
			}
		})
	}
}

// startSmtpSink runs smtp-sink on a free loopback port, dumping each
// transaction into dir.
func startSmtpSink(t *testing.T, bin, dir string) string {
	t.Helper()
	addr := freePort(t)
	args := []string{"-d", dir + "/%M.", addr, "16"}
	if os.Geteuid() == 0 {
		args = append([]string{"-u", "root"}, args...)
	}
	cmd := exec.Command(bin, args...)
	if err := cmd.Start(); err != nil {
		t.Skipf("smtp-sink does not start: %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	deadline := time.Now().Add(30 * time.Second)
	for {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("smtp-sink on %s did not answer", addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func waitDump(t *testing.T, dir, needle string, within time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		files, _ := os.ReadDir(dir)
		for _, f := range files {
			if b, err := os.ReadFile(filepath.Join(dir, f.Name())); err == nil && strings.Contains(string(b), needle) {
				return string(b)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("smtp-sink received nothing containing %s within %s", needle, within)
	return ""
}
