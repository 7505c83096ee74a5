package console_test

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"pfrouter/tracking"
)

// findChromium returns the installed Chromium, or "" (the test skips).
func findChromium() string {
	if p := os.Getenv("PFROUTER_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// jsErrors collects what the page reports as broken: uncaught exceptions,
// console.error calls and browser log errors (failed loads, CSP refusals).
type jsErrors struct {
	mu   sync.Mutex
	errs []string
}

func (j *jsErrors) listen(ev any) {
	var msg string
	switch e := ev.(type) {
	case *runtime.EventExceptionThrown:
		msg = "exception: " + e.ExceptionDetails.Text
		if e.ExceptionDetails.Exception != nil {
			msg += " " + e.ExceptionDetails.Exception.Description
		}
	case *runtime.EventConsoleAPICalled:
		if e.Type != runtime.ConsoleAPICalledTypeError && e.Type != runtime.ConsoleAPICalledTypeAssert {
			return
		}
		msg = "console." + string(e.Type) + ":"
		for _, a := range e.Args {
			msg += " " + string(a.Value) + a.Description
		}
	case *cdplog.EventEntryAdded:
		if e.Entry.Level != cdplog.EntryLevelError {
			return
		}
		msg = "log " + string(e.Entry.Source) + ": " + e.Entry.Text + " " + e.Entry.URL
	default:
		return
	}
	j.mu.Lock()
	j.errs = append(j.errs, msg)
	j.mu.Unlock()
}

func (j *jsErrors) take() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	e := j.errs
	j.errs = nil
	return e
}

// TestBrowserConsole drives the console in real headless Chromium against
// the served demo organization: log in, open every page without a
// JavaScript error, follow a post's path drawn on the map, change a
// connector cost and see the map change (O1, O2, O4, R9).
func TestBrowserConsole(t *testing.T) {
	chrome := findChromium()
	if chrome == "" {
		t.Skip("Chromium is not installed (apt-get install chromium; .ci/run installs it): skipping the browser test")
	}
	d := startDemo(t)
	base := d.consoleURL("ex1")
	shots := t.TempDir()

	// A post from ex1 to /Engineering, whose only replica is on ex4: the
	// path crosses two connectors.
	msgID := fmt.Sprintf("<path-demo.%d@contoso.example>", time.Now().UnixNano())
	d.send(t, "ex1", "alice@contoso.example", "eng@contoso.example",
		"From: alice@contoso.example\nTo: eng@contoso.example\nSubject: Release <script>alert(1)</script> plan\nMessage-ID: "+msgID+"\n\nThe plan.\n")
	eps := []tracking.Endpoint{}
	for _, s := range d.org.Servers {
		eps = append(eps, tracking.Endpoint{Server: s.Name, URL: "http://" + s.Listen.Admin, Token: testToken})
	}
	eventually(t, "the post is delivered on ex4", func() (bool, string) {
		res := tracking.Collect(context.Background(), eps, msgID)
		for _, e := range res.Events {
			if e.Kind == tracking.Delivered && e.Server == "ex4" {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d events", len(res.Events))
	})

	actx, cancel := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chrome), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 800))
	defer cancel()
	jserr := &jsErrors{}
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithListener(jserr.listen))
	defer cancel()
	ctx, cancel = context.WithTimeout(ctx, 90*time.Second)
	defer cancel()

	step := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, actions...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if errs := jserr.take(); len(errs) > 0 {
			t.Fatalf("%s: JavaScript errors:\n%s", what, strings.Join(errs, "\n"))
		}
	}
	eval := func(what, js string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Evaluate[string](js))
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return s
	}
	shot := func(name string, a chromedp.Action[[]byte]) {
		t.Helper()
		png, err := chromedp.Run(ctx, a)
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		p := filepath.Join(shots, name)
		if err := os.WriteFile(p, png, 0o644); err != nil {
			t.Fatal(err)
		}
		if dir := os.Getenv("PFROUTER_CONSOLE_SHOTS"); dir != "" { // to refresh docs/img
			_ = os.WriteFile(filepath.Join(dir, name), png, 0o644)
		}
		t.Logf("screenshot %s (%d bytes)", p, len(png))
	}
	// mapText waits until the live map has drawn and returns a label.
	waitLabel := func(what, conn, want string) {
		t.Helper()
		js := `(function(){var e=document.querySelector('#map [data-connector="` + conn + `"] tspan');return e?e.textContent:"";})()`
		deadline := time.Now().Add(30 * time.Second)
		got := ""
		for time.Now().Before(deadline) {
			if got = eval(what, js); got == want {
				return
			}
			time.Sleep(200 * time.Millisecond)
		}
		t.Fatalf("%s: map label of %s is %q, want %q", what, conn, got, want)
	}

	step("login page", chromedp.Navigate(base), chromedp.WaitVisible(chromedp.CSS("#token")))
	step("log in",
		chromedp.SendKeys(chromedp.CSS("#token"), testToken),
		chromedp.Click(chromedp.CSS("#login")),
		chromedp.WaitVisible(chromedp.CSS("#map g.groups")))
	if u := eval("url", "location.href"); strings.Contains(u, testToken) {
		t.Fatalf("token in the URL: %s", u)
	}
	if c := eval("cookie", "document.cookie"); strings.Contains(c, "pfrouter_console") {
		t.Fatalf("session cookie readable from JavaScript (not HttpOnly): %q", c)
	}
	waitLabel("topology", "tokyo-paris", "tokyo-paris · 20")
	if v := eval("version", `document.getElementById("lsversion").textContent`); strings.Trim(v, "0123456789") != "" || v == "" {
		t.Fatalf("link-state version not shown: %q", v)
	}
	shot("topology.png", chromedp.Screenshot(chromedp.CSS(".mapbox")))

	// The post's path: timeline and the route on the map.
	step("message path",
		chromedp.Navigate(base+"path"),
		chromedp.SendKeys(chromedp.CSS("#id"), msgID),
		chromedp.Click(chromedp.CSS("#find")),
		chromedp.WaitVisible(chromedp.CSS("#timeline")),
		chromedp.WaitVisible(chromedp.CSS("#map #edge-tokyo-berlin.route")),
		chromedp.WaitVisible(chromedp.CSS("#map #edge-berlin-paris.route")))
	tl := eval("timeline", `document.getElementById("timeline").textContent`)
	for _, want := range []string{"received", "routed", "relayed", "delivered", "ex3", "ex4"} {
		if !strings.Contains(tl, want) {
			t.Errorf("timeline lacks %q: %s", want, tl)
		}
	}
	if n := eval("route", `String(document.querySelectorAll("#map .edge.route").length)`); n != "2" {
		t.Errorf("%s connectors drawn on the route, want 2", n)
	}
	shot("path.png", chromedp.CaptureScreenshot())

	step("route explainer",
		chromedp.Navigate(base+"route?at=ex1&to="+url.QueryEscape("eng@contoso.example")),
		chromedp.WaitVisible(chromedp.CSS("#decision")),
		chromedp.WaitVisible(chromedp.CSS("#map #edge-berlin-paris.route")))
	step("queues", chromedp.Navigate(base+"queues"), chromedp.WaitVisible(chromedp.CSS("#queue-ex4")))
	step("replicas", chromedp.Navigate(base+"replicas"), chromedp.WaitVisible(chromedp.CSS("#replicas")))
	// Each replica's live sync state (messages, in sync) from `admin replica status`.
	if got := eval("replica state", `(() => { const r = document.querySelector('#replicas tr.folder[data-folder="/Engineering"] tr.replica[data-store="ex4-pub"]'); return r ? r.querySelector(".messages").textContent + " " + r.querySelector(".insync").textContent : "no row" })()`); got != "1 yes" {
		t.Errorf("/Engineering's replica on ex4-pub shows %q, want \"1 yes\" (the post, in sync)", got)
	}
	shot("replicas.png", chromedp.CaptureScreenshot())

	// R9, O1: a cheaper tokyo-paris shows on the map and moves the route.
	step("change a connector cost",
		chromedp.Navigate(base+"settings"),
		chromedp.SetValue(chromedp.CSS(`#conn-tokyo-paris input[name="cost"]`), "3"),
		chromedp.Submit(chromedp.CSS(`#conn-tokyo-paris`)),
		chromedp.WaitVisible(chromedp.CSS("#flash")))
	if f := eval("flash", `document.getElementById("flash").textContent`); !strings.Contains(f, "cost 3") {
		t.Fatalf("after the change: %q", f)
	}
	step("topology after the change", chromedp.Navigate(base), chromedp.WaitVisible(chromedp.CSS("#map g.groups")))
	waitLabel("topology after the change", "tokyo-paris", "tokyo-paris · 3")
	eventually(t, "ex4 has cost 3 by gossip", func() (bool, string) {
		cost, state := connectorCost(t, d.client("ex4"), "tokyo-paris")
		return cost == 3, state
	})
	step("route after the change",
		chromedp.Navigate(base+"route?at=ex1&to="+url.QueryEscape("eng@contoso.example")),
		chromedp.WaitVisible(chromedp.CSS("#map #edge-tokyo-paris.route")))

	// Phone width: nothing wider than the screen.
	step("phone width", chromedp.EmulateViewport(390, 844), chromedp.Navigate(base), chromedp.WaitVisible(chromedp.CSS("#map g.groups")))
	if w := eval("overflow", `String(document.documentElement.scrollWidth - window.innerWidth)`); w != "0" {
		t.Errorf("page is %spx wider than a phone screen", w)
	}
	shot("topology-phone.png", chromedp.CaptureScreenshot())

	step("log out", chromedp.Click(chromedp.CSS("#logout")), chromedp.WaitVisible(chromedp.CSS("#token")))
}
