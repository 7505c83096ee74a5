// Package dsn builds non-delivery reports: RFC 3464 delivery status
// notifications (multipart/report; report-type=delivery-status) with a
// human-readable part, a message/delivery-status part with one block per
// failed recipient (enhanced status code and reason, RFC 3463), and the
// original message's header (text/rfc822-headers), SPEC S7. The queue
// manager decides when one is due and to whom; this package only writes it.
package dsn

import (
	"bytes"
	"fmt"
	"strings"
	"time"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/textproto"
)

// Failure is one recipient that could not be delivered.
type Failure struct {
	Recipient string
	Code      string // enhanced status code, e.g. "5.4.4"
	Reason    string
}

// Report describes the notification.
type Report struct {
	ReportingMTA string // this server's name
	Postmaster   string // From address of the report, e.g. postmaster@contoso.example
	To           string // the original envelope sender
	MessageID    string // Message-ID for the report itself
	OriginalID   string // the original Message-ID, if any
	QueueID      string // the original queue id (Original-Envelope-Id)
	Arrival      time.Time
	Failures     []Failure
	Header       []byte // the original message's header section
	Now          time.Time
}

// Build writes the report as an RFC 5322 message.
func Build(r Report) ([]byte, error) {
	var h message.Header
	h.Set("From", "Mail Delivery System <"+r.Postmaster+">")
	h.Set("To", "<"+r.To+">")
	h.Set("Subject", "Undeliverable: "+subjectOf(r.Header))
	h.Set("Date", r.Now.Format(time.RFC1123Z))
	h.Set("Message-Id", r.MessageID)
	h.Set("Auto-Submitted", "auto-replied")
	if r.OriginalID != "" {
		h.Set("In-Reply-To", r.OriginalID)
		h.Set("References", r.OriginalID)
	}
	h.Set("MIME-Version", "1.0")
	h.SetContentType("multipart/report", map[string]string{"report-type": "delivery-status"})
	var buf bytes.Buffer
	w, err := message.CreateWriter(&buf, h)
	if err != nil {
		return nil, fmt.Errorf("dsn: %w", err)
	}
	part := func(ct string, params map[string]string, body string) error {
		var ph message.Header
		ph.SetContentType(ct, params)
		pw, err := w.CreatePart(ph)
		if err != nil {
			return err
		}
		if _, err := pw.Write([]byte(body)); err != nil {
			return err
		}
		return pw.Close()
	}
	var human strings.Builder
	fmt.Fprintf(&human, "Your message could not be delivered to %d recipient(s).\r\n\r\n", len(r.Failures))
	for _, f := range r.Failures {
		fmt.Fprintf(&human, "  %s\r\n    %s %s\r\n", f.Recipient, f.Code, f.Reason)
	}
	fmt.Fprintf(&human, "\r\nReported by %s.\r\n", r.ReportingMTA)
	if err := part("text/plain", map[string]string{"charset": "utf-8"}, human.String()); err != nil {
		return nil, fmt.Errorf("dsn: %w", err)
	}
	var st strings.Builder
	fmt.Fprintf(&st, "Reporting-MTA: dns; %s\r\n", r.ReportingMTA)
	if r.QueueID != "" {
		fmt.Fprintf(&st, "Original-Envelope-Id: %s\r\n", r.QueueID)
	}
	if !r.Arrival.IsZero() {
		fmt.Fprintf(&st, "Arrival-Date: %s\r\n", r.Arrival.Format(time.RFC1123Z))
	}
	for _, f := range r.Failures {
		fmt.Fprintf(&st, "\r\nFinal-Recipient: rfc822; %s\r\nAction: failed\r\nStatus: %s\r\nDiagnostic-Code: smtp; %s %s\r\nLast-Attempt-Date: %s\r\n",
			f.Recipient, f.Code, smtpCode(f.Code), oneLine(f.Reason), r.Now.Format(time.RFC1123Z))
	}
	if err := part("message/delivery-status", nil, st.String()); err != nil {
		return nil, fmt.Errorf("dsn: %w", err)
	}
	if err := part("text/rfc822-headers", nil, string(r.Header)); err != nil {
		return nil, fmt.Errorf("dsn: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("dsn: %w", err)
	}
	return buf.Bytes(), nil
}

// smtpCode maps an enhanced status class to a basic reply code.
func smtpCode(enh string) string {
	if strings.HasPrefix(enh, "4.") {
		return "450"
	}
	return "550"
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func subjectOf(header []byte) string {
	h, err := textproto.ReadHeader(bufioReader(header))
	if err != nil {
		return "(no subject)"
	}
	if s := h.Get("Subject"); s != "" {
		return s
	}
	return "(no subject)"
}
