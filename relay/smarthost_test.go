package relay

import (
	"bufio"
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"strings"
	"testing"
	"time"

	mtextproto "github.com/emersion/go-message/textproto"

	"pfrouter/envelope"
	"pfrouter/internal/smtpsink"
)

const outMsg = "X-Pfrouter-Route: v=1&origin=Q1&first=0&hops=2&visited=s1,s2\r\n" +
	"X-Pfrouter-Rcpt: rcpt=bob@example.net&stage=target\r\n" +
	"x-pfrouter-queue-id: Q1\r\n" +
	"Traceparent: 00-0123456789abcdef0123456789abcdef-0123456789abcdef-01\r\n" +
	"Received: from a by s1 (pfrouter)\r\n" +
	"Subject: leaving\r\nMessage-Id: <out-1@test>\r\n\r\nTraceparent: body text stays\r\n"

func pool(t *testing.T, pem []byte) *x509.CertPool {
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(pem) {
		t.Fatal("bad CA PEM")
	}
	return p
}

// Outbound: TLS verified against the connector's CA, AUTH PLAIN inside TLS,
// and nothing internal leaves the organization.
func TestSmarthostTLSAuthAndStripping(t *testing.T) {
	sink := smtpsink.Start(t, smtpsink.Options{TLS: true, Users: map[string]string{"relayuser": "s3cret"}})
	sh := &Smarthost{Self: "s1.test", Addr: sink.Addr, TLSMode: TLSRequired, RootCAs: pool(t, sink.CAPEM),
		Username: "relayuser", Password: "s3cret", Timeout: 10 * time.Second}
	res, err := sh.Send(context.Background(), "alice@test.example", []string{"bob@example.net"}, []byte(outMsg))
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 1 || res[0].Err != nil {
		t.Fatalf("results %+v", res)
	}
	m := sink.Wait(t, "out-1@test", 10*time.Second)
	if !m.TLS || m.AuthAs != "relayuser" || m.From != "alice@test.example" {
		t.Errorf("delivered with tls=%v auth=%q from=%q, want TLS, relayuser, alice", m.TLS, m.AuthAs, m.From)
	}
	hdr := strings.ToLower(string(m.Data[:strings.Index(string(m.Data), "\r\n\r\n")]))
	for _, leak := range []string{"x-pfrouter", "traceparent", "visited"} {
		if strings.Contains(hdr, leak) {
			t.Errorf("%q left the organization:\n%s", leak, hdr)
		}
	}
	if !strings.Contains(hdr, "received: from a by s1") || !strings.Contains(string(m.Data), "Traceparent: body text stays") {
		t.Errorf("Received or body lost:\n%s", m.Data)
	}
}

// tls: required and a smarthost without STARTTLS: nothing is sent, not even
// MAIL FROM, and the error is a connection failure (retried by qmgr).
func TestSmarthostTLSRequiredNoPlaintext(t *testing.T) {
	sink := smtpsink.Start(t, smtpsink.Options{})
	sh := &Smarthost{Self: "s1.test", Addr: sink.Addr, TLSMode: TLSRequired, Timeout: 10 * time.Second}
	_, err := sh.Send(context.Background(), "alice@test.example", []string{"bob@example.net"}, []byte(outMsg))
	var ce *ConnError
	if !errors.As(err, &ce) || !errors.Is(err, ErrNoTLS) {
		t.Fatalf("want a ConnError wrapping ErrNoTLS, got %v", err)
	}
	for _, s := range sink.Sessions() {
		if s.Mail {
			t.Error("MAIL was sent in plain text although TLS is required")
		}
	}
	if len(sink.Messages()) != 0 {
		t.Error("a message was delivered in plain text")
	}
}

// A certificate the connector cannot verify (not in the system roots, no
// ca_file) is a failure, never skipped.
func TestSmarthostUnverifiedCertificateRefused(t *testing.T) {
	sink := smtpsink.Start(t, smtpsink.Options{TLS: true})
	sh := &Smarthost{Self: "s1.test", Addr: sink.Addr, TLSMode: TLSOpportunistic, Timeout: 10 * time.Second}
	_, err := sh.Send(context.Background(), "alice@test.example", []string{"bob@example.net"}, []byte(outMsg))
	var ce *ConnError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("want a certificate verification failure, got %v", err)
	}
	if len(sink.Messages()) != 0 {
		t.Error("delivered over an unverified TLS session")
	}
}

// Opportunistic: plain text when STARTTLS is not offered, but credentials
// never travel in plain text.
func TestSmarthostOpportunistic(t *testing.T) {
	sink := smtpsink.Start(t, smtpsink.Options{RefuseTo: "nobody"})
	sh := &Smarthost{Self: "s1.test", Addr: sink.Addr, TLSMode: TLSOpportunistic, Timeout: 10 * time.Second}
	res, err := sh.Send(context.Background(), "", []string{"bob@example.net", "nobody@example.net"}, []byte(outMsg))
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Err != nil || res[1].Err == nil || res[1].Err.Code != 550 {
		t.Errorf("per-recipient replies %+v, want bob accepted and nobody 550", res)
	}
	if m := sink.Wait(t, "out-1@test", 10*time.Second); m.TLS || m.From != "" {
		t.Errorf("tls=%v from=%q, want plain text with the null sender", m.TLS, m.From)
	}
	sh.Username, sh.Password = "u", "p"
	before := len(sink.Messages())
	if _, err := sh.Send(context.Background(), "", []string{"bob@example.net"}, []byte(outMsg)); err == nil {
		t.Fatal("credentials configured and no TLS: want a refusal to send them")
	}
	if len(sink.Messages()) != before {
		t.Error("sent although the credentials could not be used")
	}
}

func TestStripInternal(t *testing.T) {
	in := "X-PFROUTER-BY:\r\n mallory\r\nTraceState: x=1\r\nSubject: s\r\n\r\nbody\r\n"
	out := string(StripInternal([]byte(in)))
	if out != "Subject: s\r\n\r\nbody\r\n" {
		t.Errorf("StripInternal = %q", out)
	}
	plain := []byte("Subject: s\r\n\r\nbody\r\n")
	if got := StripInternal(plain); string(got) != string(plain) {
		t.Errorf("a clean message was changed: %q", got)
	}
}

// Whatever the header, nothing internal survives StripInternal and the
// body is untouched.
func FuzzStripInternal(f *testing.F) {
	f.Add([]byte(outMsg))
	f.Add([]byte("X-Pfrouter-A: 1\r\n\r\n"))
	f.Add([]byte("no header"))
	f.Fuzz(func(t *testing.T, b []byte) {
		out := StripInternal(b)
		h, err := mtextproto.ReadHeader(bufio.NewReader(bytes.NewReader(out)))
		if err != nil {
			return // unparsable input is passed through as it was
		}
		for f := h.Fields(); f.Next(); {
			if envelope.IsInternalHeader(f.Key()) {
				t.Fatalf("%q survived in %q", f.Key(), out)
			}
		}
	})
}
