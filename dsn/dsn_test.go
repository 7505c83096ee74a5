package dsn

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message"
)

// S7: the report is a multipart/report with a delivery-status part naming
// each failed recipient's status code and reason, and the original header.
func TestBuildS7(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	b, err := Build(Report{
		ReportingMTA: "ex1", Postmaster: "postmaster@contoso.example", To: "alice@contoso.example",
		MessageID: "<ndr1@ex1>", OriginalID: "<orig@x>", QueueID: "q1", Arrival: now, Now: now,
		Failures: []Failure{{"sales@contoso.example", "4.4.7", "message expired: no replica reachable"}},
		Header:   []byte("Subject: hello\r\nMessage-Id: <orig@x>\r\n\r\n"),
	})
	if err != nil {
		t.Fatal(err)
	}
	e, err := message.Read(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	ct, params, _ := e.Header.ContentType()
	if ct != "multipart/report" || params["report-type"] != "delivery-status" {
		t.Fatalf("content type %s %v", ct, params)
	}
	if !strings.Contains(e.Header.Get("Subject"), "hello") {
		t.Errorf("subject %q", e.Header.Get("Subject"))
	}
	mr := e.MultipartReader()
	var types []string
	var status string
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		pct, _, _ := p.Header.ContentType()
		types = append(types, pct)
		body, _ := io.ReadAll(p.Body)
		if pct == "message/delivery-status" {
			status = string(body)
		}
	}
	if strings.Join(types, ",") != "text/plain,message/delivery-status,text/rfc822-headers" {
		t.Fatalf("parts %v", types)
	}
	for _, want := range []string{"Reporting-MTA: dns; ex1", "Final-Recipient: rfc822; sales@contoso.example", "Status: 4.4.7", "Action: failed", "no replica reachable"} {
		if !strings.Contains(status, want) {
			t.Errorf("delivery-status lacks %q:\n%s", want, status)
		}
	}
}
