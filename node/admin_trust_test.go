package node

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"pfrouter/internal/trusttest"
	"pfrouter/tracking"
)

// Issue 10 item 5, S5: admin calls between servers go over TLS in which
// both present organization certificates. A peer server reads another's
// admin API with its certificate and no token (the console's and trace's
// fan-out); a change needs the token; plain HTTP without the token, a
// certificate of another organization and one of a server the directory
// does not list are refused.
func TestAdminBetweenServersOverOrgTLS(t *testing.T) {
	t.Parallel()
	yaml := strings.ReplaceAll(testOrg, `listen: {smtp: "127.0.0.1:0"}`, `listen: {smtp: "127.0.0.1:0", admin: "127.0.0.1:0"}`)
	c := startOrg(t, yaml)
	s1, s2 := c.Nodes["s1"], c.Nodes["s2"]
	s2Admin := s2.Org.ServerByName("s2").Listen.Admin
	id, err := post(t, s1, "alice@test.example", "remote@test.example", "tracked across")
	if err != nil {
		t.Fatal(err)
	}

	// s1 asks s2 the way its console does: https, its certificate, no token.
	peer := s1.peerAdminHTTP("s2")
	eventually(t, 30*time.Second, "s2's tracking events read by s1 over org TLS", func() (bool, string) {
		res := tracking.Collect(context.Background(), []tracking.Endpoint{{Server: "s2", URL: "https://" + s2Admin, HTTP: peer}}, id)
		if why := res.Unreachable["s2"]; why != "" {
			return false, why
		}
		return len(res.Events) > 0, "no events yet"
	})
	get := func(hc *http.Client, method, url, token string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, url, strings.NewReader(`{"store_min_age":"1h"}`))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		req.Header.Set("X-Pfrouter-By", "s1") // a claim, not a proof
		resp, err := hc.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get(peer, http.MethodGet, "https://"+s2Admin+"/v1/queue", ""); code != http.StatusOK {
		t.Errorf("peer read: %d %s", code, body)
	}
	if code, body := get(peer, http.MethodPut, "https://"+s2Admin+"/v1/store-min-age", ""); code != http.StatusForbidden || !strings.Contains(body, "may only read") {
		t.Errorf("peer change without the token: %d %s, want 403", code, body)
	}

	// Plain HTTP that claims to be s1: no certificate, no token, no access.
	plain := &http.Client{Timeout: 10 * time.Second}
	if code, body := get(plain, http.MethodGet, "http://"+s2Admin+"/v1/queue", ""); code != http.StatusUnauthorized {
		t.Errorf("plain HTTP as a peer: %d %s, want 401", code, body)
	}

	// A certificate of another organization (a different secret) naming
	// s1: the TLS handshake fails. The client skips checking s2 here so
	// that only s2's check is tested.
	fid := trusttest.Identity(t, trusttest.OtherSecret, "s1")
	fcfg := fid.ClientTLS("s2")
	fcfg.InsecureSkipVerify, fcfg.VerifyConnection = true, nil // test only: the attacker does not care who s2 is
	fc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: fcfg}}
	if code, body := get(fc, http.MethodGet, "https://"+s2Admin+"/v1/queue", ""); code == http.StatusOK {
		t.Errorf("a foreign organization's certificate read s2's queue: %d %s", code, body)
	}

	// The organization's CA, but a server the directory does not list.
	ghost := trusttest.Identity(t, s1.Secret, "s9")
	gc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: ghost.ClientTLS("s2")}}
	if code, body := get(gc, http.MethodGet, "https://"+s2Admin+"/v1/queue", ""); code != http.StatusUnauthorized {
		t.Errorf("server s9, not in the directory: %d %s, want 401", code, body)
	}

	// TLS without an organization name (a browser's HTTPS) is a user: the
	// token decides.
	uc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} // test only: the self-signed user certificate
	if code, body := get(uc, http.MethodGet, "https://"+s2Admin+"/v1/queue", ""); code != http.StatusUnauthorized {
		t.Errorf("HTTPS without a token: %d %s, want 401", code, body)
	}
}
