package console_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"pfrouter/admin"
	"pfrouter/config"
	"pfrouter/examples"
	"pfrouter/node"
)

const testToken = "console-test-token-0123456789"

// demo is the served demo organization (examples/contoso.yaml) on port 0,
// with one admin token for every server.
type demo struct {
	c   *node.Cluster
	org *config.Org
}

var portRE = regexp.MustCompile(`127\.0\.0\.1:\d+`)

func startDemo(t testing.TB) *demo { return startDemoWith(t, "admin: {token: "+testToken+"}\n") }

// startDemoWith starts the demo with extra top-level config (such as an
// admin token shared by every server).
func startDemoWith(t testing.TB, extra string) *demo {
	t.Helper()
	yaml := portRE.ReplaceAllString(string(examples.Contoso), "127.0.0.1:0")
	yaml = strings.Replace(yaml, "\nrouting:\n", "\n"+extra+"routing:\n  retry_initial: 200ms\n  retry_max: 1s\n", 1)
	org, err := config.Parse([]byte(yaml), "contoso-test.yaml", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	c, err := node.StartAll(context.Background(), org, nil, node.Options{BaseDir: t.TempDir(), Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		c.Close(ctx)
	})
	return &demo{c: c, org: org}
}

func (d *demo) adminAddr(server string) string { return d.org.ServerByName(server).Listen.Admin }

// consoleURL is the console on server's admin listener.
func (d *demo) consoleURL(server string) string { return "http://" + d.adminAddr(server) + "/console/" }

func (d *demo) client(server string) *admin.Client {
	return &admin.Client{BaseURL: "http://" + d.adminAddr(server), Token: testToken, By: "test"}
}

// send submits a raw message over SMTP to server, as an Internet sender.
func (d *demo) send(t testing.TB, server, from, to string, body string) {
	t.Helper()
	cl, err := gosmtp.Dial(d.org.ServerByName(server).Listen.SMTP)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.SendMail(from, []string{to}, strings.NewReader(strings.ReplaceAll(body, "\n", "\r\n"))); err != nil {
		t.Fatalf("send to %s: %v", to, err)
	}
}

// eventually polls cond until it holds or 30 s pass.
func eventually(t testing.TB, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	last := ""
	for time.Now().Before(deadline) {
		ok, state := cond()
		if ok {
			return
		}
		last = state
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: not within 30s; last: %s", what, last)
}

// browser is an HTTP client that behaves like a browser on the console:
// cookies kept, redirects not followed (so tests see them), Origin sent.
type browser struct {
	t    testing.TB
	base string // http://host:port
	c    *http.Client
}

func newBrowser(t testing.TB, consoleURL string) *browser {
	jar, _ := cookiejar.New(nil)
	u, _ := url.Parse(consoleURL)
	return &browser{t: t, base: u.Scheme + "://" + u.Host, c: &http.Client{Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (b *browser) get(path string) (int, string, http.Header) {
	b.t.Helper()
	resp, err := b.c.Get(b.base + path)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), resp.Header
}

// post sends a form; origin "" sends no Origin header.
func (b *browser) post(path, origin string, form url.Values) (int, string, *http.Response) {
	b.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, b.base+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), resp
}

func (b *browser) login(token string) *http.Response {
	b.t.Helper()
	code, body, resp := b.post("/console/login", b.base, url.Values{"token": {token}})
	if code != http.StatusSeeOther {
		b.t.Fatalf("login: status %d, want 303: %s", code, body)
	}
	return resp
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf reads the session's CSRF token from a page's forms.
func (b *browser) csrf() string {
	b.t.Helper()
	_, body, _ := b.get("/console/settings")
	m := csrfRE.FindStringSubmatch(body)
	if m == nil {
		b.t.Fatalf("no CSRF token on the settings page")
	}
	return m[1]
}

func mustContain(t testing.TB, page, body string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(body, w) {
			t.Errorf("%s: missing %q", page, w)
		}
	}
}

func connectorCost(t testing.TB, c *admin.Client, name string) (int, string) {
	ls, err := c.LinkState(context.Background())
	if err != nil {
		return -1, err.Error()
	}
	for _, k := range ls.Connectors {
		if k.Name == name {
			return k.Cost, fmt.Sprintf("cost %d version %d", k.Cost, ls.Version)
		}
	}
	return -1, "no connector " + name
}

func asAPIError(err error, target **admin.APIError) bool {
	return err != nil && errors.As(err, target)
}

// folderRow is the Replicas page's markup for one folder, its replica
// rows included ("" when the folder is not on the page).
func folderRow(body, folder string) string {
	i := strings.Index(body, `data-folder="`+folder+`"`)
	if i < 0 {
		return ""
	}
	rest := body[i:]
	if j := strings.Index(rest[1:], `<tr class="folder`); j >= 0 {
		rest = rest[:j+1]
	}
	return rest
}

// replicaRow is the row of store's replica of folder on the Replicas page.
func replicaRow(body, folder, store string) string {
	f := folderRow(body, folder)
	i := strings.Index(f, `data-store="`+store+`"`)
	if i < 0 {
		return ""
	}
	f = f[i:]
	if j := strings.Index(f, "</tr>"); j >= 0 {
		f = f[:j]
	}
	return f
}
