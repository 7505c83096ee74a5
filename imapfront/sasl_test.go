package imapfront

import (
	"encoding/base64"
	"os/exec"
	"strings"
	"testing"

	"github.com/xdg-go/scram"

	"pfrouter/config"
)

// A2: PlainTextAuthentication offers SCRAM-SHA-256 (challenge-response)
// before TLS while refusing plain logins.
func TestA2SCRAMBeforeTLS(t *testing.T) {
	fe := single(t, config.LoginPlainTextAuth)
	c := dial(t, fe.addr)
	g := c.line()
	if !strings.Contains(g, "AUTH=SCRAM-SHA-256") || strings.Contains(g, "AUTH=PLAIN") || !strings.Contains(g, "LOGINDISABLED") {
		t.Fatalf("greeting: %q", g)
	}
	if _, ok := c.cmd("a0", "LOGIN alice alice-pw"); !strings.HasPrefix(ok, "a0 NO [PRIVACYREQUIRED]") {
		t.Fatalf("plain LOGIN: %q", ok)
	}
	b64 := base64.StdEncoding.EncodeToString
	run := func(tag, pw string) string {
		cl, _ := scram.SHA256.NewClient("alice", pw, "")
		conv := cl.NewConversation()
		first, _ := conv.Step("")
		c.send(tag + " AUTHENTICATE SCRAM-SHA-256 " + b64([]byte(first))) // SASL-IR
		ch := c.line()
		if !strings.HasPrefix(ch, "+ ") {
			return ch
		}
		s1, _ := base64.StdEncoding.DecodeString(ch[2:])
		final, err := conv.Step(string(s1))
		if err != nil {
			t.Fatal(err)
		}
		c.send(b64([]byte(final)))
		ch = c.line()
		if !strings.HasPrefix(ch, "+ ") {
			return ch
		}
		s2, _ := base64.StdEncoding.DecodeString(ch[2:])
		if _, err := conv.Step(string(s2)); err != nil || !conv.Valid() {
			t.Fatalf("server signature: %v", err)
		}
		c.send("")
		return c.line()
	}
	if got := run("a1", "wrong"); !strings.HasPrefix(got, "a1 NO [AUTHENTICATIONFAILED]") {
		t.Fatalf("wrong password: %q", got)
	}
	if got := run("a2", "alice-pw"); !strings.HasPrefix(got, "a2 OK [CAPABILITY") {
		t.Fatalf("SCRAM login: %q", got)
	}
	waitUser(t, fe.local, "alice")
}

// A real client: Python's imaplib logs in with STARTTLS, runs NOOP on the
// handed-over session and logs out.
func TestPythonImaplibSTARTTLS(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not installed")
	}
	fe := single(t, config.LoginSecure)
	host, port, _ := strings.Cut(fe.addr, ":")
	script := `
import imaplib, ssl, sys
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
m = imaplib.IMAP4(sys.argv[1], int(sys.argv[2]), timeout=10)
assert 'LOGINDISABLED' in m.capabilities, m.capabilities
try:
    m.login('alice', 'alice-pw')
    raise SystemExit('login without TLS succeeded')
except imaplib.IMAP4.error as e:
    print('refused:', e)
m.starttls(ssl_context=ctx)
typ, data = m.login('alice', 'alice-pw')
print(typ, data)
typ, data = m.noop()
print('noop', typ, data)
m.logout()
`
	out, err := exec.Command(py, "-c", script, host, port).CombinedOutput()
	if err != nil {
		t.Fatalf("imaplib: %v\n%s", err, out)
	}
	s := string(out)
	if !strings.Contains(s, "PRIVACYREQUIRED") || !strings.Contains(s, "Logged in") || !strings.Contains(s, "ex1 alice got NOOP") {
		t.Errorf("imaplib output:\n%s", s)
	}
	waitUser(t, fe.local, "alice")
}
