package qmgr

import (
	"bufio"
	"bytes"
	"context"
	"time"

	"pfrouter/dsn"
	"pfrouter/envelope"
)

// finish persists the envelope after an attempt. When no recipient is
// pending, the message leaves the queue, replaced by its non-delivery
// report in the same transaction when one is due, so a crash can neither
// lose the report nor send it twice.
func (m *Manager) finish(ctx context.Context, e *entry, now time.Time) (bool, time.Time) {
	env := e.env
	var next time.Time
	var failed []dsn.Failure
	pending := false
	for _, r := range env.Recipients {
		switch r.State {
		case envelope.Pending:
			pending = true
			if next.IsZero() || r.NextAttempt.Before(next) {
				next = r.NextAttempt
			}
		case envelope.Failed:
			failed = append(failed, dsn.Failure{Recipient: r.Addr, Code: r.Code, Reason: r.Reason})
		}
	}
	if pending {
		// An attempt that changed nothing (a waiting recipient still
		// without a path, re-decided before its retry) writes nothing.
		raw := env.Marshal()
		if bytes.Equal(raw, e.raw) {
			return false, next
		}
		if err := m.o.Queue.SetEnvelope(e.id, raw); err != nil {
			m.log.Error("cannot save queue state; the attempt will be repeated", "queue_id", e.id, "err", err)
			e.dirty = true
			return false, now.Add(5 * time.Second)
		}
		e.raw, e.dirty = raw, false
		return false, next
	}
	if len(failed) == 0 || env.From == "" || env.Bounce {
		if len(failed) > 0 {
			m.log.Info("no non-delivery report: null sender or a report itself (S7)", "queue_id", e.id)
		}
		// Not waited for: if a crash loses the removal, the message is
		// attempted again, and every recipient it reached is then
		// delivered already (the store deduplicates by origin id, a
		// relay peer likewise) or fails again into no new report, as
		// this message had no report due. The next ingress commit
		// carries the removal instead of a sync of its own.
		m.o.Queue.DeleteLater(e.id)
		return true, time.Time{}
	}
	ndrID, ndrEnv, ndrBody, err := m.buildNDR(e, failed, now)
	var ndrRaw []byte
	if err == nil {
		ndrRaw = ndrEnv.Marshal()
		err = m.o.Queue.PutAndDelete(ctx, ndrID, ndrRaw, ndrBody, e.id)
	}
	if err != nil {
		m.log.Error("cannot queue non-delivery report; will try again", "queue_id", e.id, "err", err)
		return false, now.Add(5 * time.Second)
	}
	for _, f := range failed {
		m.event(Event{Kind: "ndr", QueueID: e.id, OriginID: env.OriginID, MessageID: env.MessageID, Recipient: f.Recipient,
			Details: map[string]string{"code": f.Code, "reason": f.Reason, "report_queue_id": ndrID, "to": env.From}})
	}
	m.addFresh(&entry{id: ndrID, env: ndrEnv, raw: ndrRaw}, nil)
	return true, time.Time{}
}

func (m *Manager) buildNDR(e *entry, failed []dsn.Failure, now time.Time) (string, *envelope.Envelope, []byte, error) {
	env := e.env
	header := []byte{}
	if e.body != nil {
		header = headerOf(e.body)
	} else if body, err := m.o.Queue.Body(e.id); err == nil {
		header = headerOf(body)
	}
	id := m.o.Queue.NewID()
	domain := "localhost"
	if len(m.org().Domains) > 0 {
		domain = m.org().Domains[0].Name
	}
	msgID := "<ndr." + id + "@" + m.o.Server + "." + domain + ">"
	body, err := dsn.Build(dsn.Report{ReportingMTA: m.o.Server, Postmaster: "postmaster@" + domain, To: env.From,
		MessageID: msgID, OriginalID: env.MessageID, QueueID: env.OriginID, Arrival: env.FirstSeen, Failures: failed, Header: header, Now: now})
	if err != nil {
		return "", nil, nil, err
	}
	ndr := &envelope.Envelope{ID: id, OriginID: id, MessageID: msgID, From: "", Arrived: now, FirstSeen: now, Size: int64(len(body)),
		Bounce: true, TraceParent: env.TraceParent, Recipients: []envelope.Recipient{{Addr: env.From, State: envelope.Pending}}}
	return id, ndr, body, nil
}

func headerOf(body []byte) []byte {
	br := bufio.NewReader(bytes.NewReader(body))
	var out []byte
	for {
		line, err := br.ReadBytes('\n')
		out = append(out, line...)
		if err != nil || len(bytes.TrimRight(line, "\r\n")) == 0 {
			return out
		}
	}
}
