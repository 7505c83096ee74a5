package qmgr

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"pfrouter/config"
	"pfrouter/directory"
	"pfrouter/envelope"
	"pfrouter/linkstate"
	"pfrouter/relay"
	"pfrouter/routing"
	"pfrouter/store"
)

// action is what happens next to one recipient on this server.
type action struct {
	kind string // "local", "outbound", "forward", "wait", "fail"
	hop  string // next server for forward; the connector for outbound
}

// process makes one attempt at every due recipient of a message. It
// returns whether the message is finished (and removed from the queue) and
// when it is due again.
func (m *Manager) process(ctx context.Context, e *entry) (bool, time.Time) {
	env := e.env
	now := m.o.Now()
	snap := m.o.Directory.Snapshot()
	g := m.o.LinkState.Graph()
	params := m.o.Params()
	// The body is read at most once per attempt, and not at all on the
	// first attempt of a message accepted by this run (entry.body; a
	// worker owns its running entry, so no lock is needed).
	body := e.body
	loadBody := func() ([]byte, error) {
		if body != nil {
			return body, nil
		}
		b, err := m.o.Queue.Body(e.id)
		if err != nil {
			return nil, err
		}
		body = b
		return body, nil
	}
	p := m.plan(ctx, e, snap, g, params, now)
	local, forward, outbound := p.local, p.forward, p.outbound
	for _, i := range local {
		b, err := loadBody()
		if err == nil {
			err = m.deliverLocal(ctx, snap, env, &env.Recipients[i], b)
		}
		if err != nil {
			m.retry(env, &env.Recipients[i], "4.3.0", "local delivery failed: "+err.Error(), now)
		}
	}
	// withBody runs send for a group of recipients with the body, or
	// retries them when it cannot be read.
	withBody := func(idx []int, send func(body []byte)) {
		b, err := loadBody()
		if err != nil {
			for _, i := range idx {
				m.retry(env, &env.Recipients[i], "4.3.0", "cannot read queued body: "+err.Error(), now)
			}
			return
		}
		send(b)
	}
	for hop, idx := range forward {
		withBody(idx, func(b []byte) { m.relay(ctx, snap, env, hop, idx, b, now) })
	}
	for conn, idx := range outbound {
		withBody(idx, func(b []byte) { m.sendOutbound(ctx, env, conn, idx, b, now) })
	}
	return m.finish(ctx, e, now)
}

// plan is what one attempt does with the recipients it decided: deliver
// into a local store, relay to a next hop, or hand to an outbound
// connector's smarthost (indexes into the envelope's recipients).
type plan struct {
	local    []int
	forward  map[string][]int
	outbound map[string][]int
}

// plan decides every recipient of e due now (loops, expiry, routing);
// recipients that fail or wait are updated in the envelope.
func (m *Manager) plan(ctx context.Context, e *entry, snap *directory.Snapshot, g *linkstate.Graph, params routing.Params, now time.Time) plan {
	env := e.env
	expiry := time.Duration(m.org().Routing.MessageExpiry)
	forward := map[string][]int{}
	outbound := map[string][]int{}
	var local []int
	for i := range env.Recipients {
		r := &env.Recipients[i]
		if r.State != envelope.Pending {
			continue
		}
		if why, down := outboundDown(g, r); down {
			m.rerouteOutbound(env, r, why, now)
		}
		if e.force {
			r.NextAttempt = time.Time{} // the operator's retry: every pending recipient now
		}
		// Before its retry a recipient is attempted only when it waits
		// for link state or its path changed (sched.wake).
		if r.NextAttempt.After(now) && !r.Waiting && !slices.Contains(e.wake, destOf(m.o.Server, r)) {
			continue
		}
		// R14 for every recipient, also those this server only forwards
		// (stage target), which never reach a routing decision here.
		if c := routing.LoopCheck(params, loopInput(m.o.Server, env, r)); c != nil {
			m.fail(env, r, c.Code, c.Reason)
			continue
		}
		if expiry > 0 && now.Sub(env.FirstSeen) > expiry {
			reason := "message expired after " + expiry.String() + " in the queue"
			if r.Reason != "" {
				reason += "; last error: " + r.Reason
			}
			m.event(Event{Kind: "expired", QueueID: e.id, OriginID: env.OriginID, MessageID: env.MessageID, Recipient: r.Addr, Details: map[string]string{"reason": reason}})
			m.fail(env, r, "4.4.7", reason)
			continue
		}
		a := m.decide(ctx, snap, g, params, env, r, now)
		switch a.kind {
		case "local":
			local = append(local, i)
		case "forward":
			forward[a.hop] = append(forward[a.hop], i)
		case "outbound":
			outbound[a.hop] = append(outbound[a.hop], i)
		}
	}
	return plan{local: local, forward: forward, outbound: outbound}
}

// decide updates a recipient's routing state and says what to do with it.
func (m *Manager) decide(ctx context.Context, snap *directory.Snapshot, g *linkstate.Graph, p routing.Params, env *envelope.Envelope, r *envelope.Recipient, now time.Time) action {
	self := m.o.Server
	in := loopInput(self, env, r)
	in.Recipient, in.Sender, in.SenderUser, in.Size = r.Addr, env.From, env.SenderUser, env.Size
	in.MessageID, in.Excluded, in.Now = env.MessageID, r.Excluded, now
	switch {
	case r.Stage == envelope.StageTarget:
		return m.toward(env, r, r.Server, g, now)
	case r.Stage == envelope.StageHierarchy && r.HierarchyServer != self:
		return m.toward(env, r, r.HierarchyServer, g, now)
	}
	var d routing.Decision
	obs := m.dobs.Start()
	switch {
	case r.Stage == envelope.StageHierarchy && obs.Detailed():
		d = routing.Continue(snap, g, p, in, r.HierarchyStore)
	case r.Stage == envelope.StageHierarchy:
		d = routing.RouteContinue(snap, g, p, in, r.HierarchyStore)
	case obs.Detailed():
		d = routing.Decide(snap, g, p, in)
	default:
		d = routing.Route(snap, g, p, in) // same outcome, no explanation strings
	}
	var took time.Duration
	env.TraceParent, took = obs.Done(ctx, env.TraceParent, &d)
	m.event(Event{Kind: "routed", QueueID: env.ID, OriginID: env.OriginID, MessageID: env.MessageID, Recipient: r.Addr,
		Rule: d.Rule(), Took: took, Details: decisionDetails(d)})
	switch d.Outcome {
	case routing.NDR:
		m.fail(env, r, d.Code, d.Reason)
		return action{kind: "fail"}
	case routing.Queue:
		m.wait(env, r, d.Code, d.Reason, now)
		r.Blockers = blockers(snap, self, r.Addr, d.Step1 != nil && d.Step1.Store != "")
		return action{kind: "wait"}
	}
	r.Excluded = d.Excluded
	r.Waiting = false
	if d.Outbound != nil {
		r.Stage, r.Server, r.Store, r.Outbound = envelope.StageTarget, d.Server, "", d.Outbound.Connector
		return m.toward(env, r, d.Server, g, now)
	}
	if d.User != "" || d.HierarchyServer == "" || d.HierarchyServer == self {
		r.Stage, r.Server, r.Store = envelope.StageTarget, d.Server, d.Store
		return m.toward(env, r, d.Server, g, now)
	}
	r.Stage, r.HierarchyStore, r.HierarchyServer = envelope.StageHierarchy, d.Step1.Store, d.HierarchyServer
	return m.toward(env, r, d.HierarchyServer, g, now)
}

// loopInput is what R14 looks at: the hop count, the recipient's stage as
// it is on this server, and where it was before.
func loopInput(self string, env *envelope.Envelope, r *envelope.Recipient) routing.Input {
	return routing.Input{At: self, Hops: env.Hops, Stage: r.Stage, Dest: r.Dest(), Visits: r.Visits}
}

// toward is local delivery or the next hop towards a server (R13).
func (m *Manager) toward(env *envelope.Envelope, r *envelope.Recipient, target string, g *linkstate.Graph, now time.Time) action {
	if target == m.o.Server {
		if r.Outbound != "" {
			return action{kind: "outbound", hop: r.Outbound}
		}
		return action{kind: "local"}
	}
	hop, ok := g.NextHop(m.o.Server, target)
	if !ok {
		m.wait(env, r, "4.4.1", "no path to "+target+" over link state now (R10); waiting for link state", now)
		return action{kind: "wait"}
	}
	r.NextHop = hop
	return action{kind: "forward", hop: hop}
}

func decisionDetails(d routing.Decision) map[string]string {
	det := map[string]string{"outcome": string(d.Outcome), "linkstate_version": fmt.Sprint(d.LinkStateVersion)}
	if d.Folder != "" {
		det["folder"] = d.Folder
	}
	if d.User != "" {
		det["user"] = d.User
	}
	if d.Step1 != nil && d.Step1.Store != "" {
		det["hierarchy_store"], det["hierarchy_server"], det["step1_rule"] = d.Step1.Store, d.Step1.Server, d.Step1.Rule
		det["store_min_age"] = d.Step1.MinAge
	}
	if d.Step2 != nil && d.Step2.Store != "" {
		det["replica_store"], det["step2_rule"] = d.Step2.Store, d.Step2.Rule
		det["rule"] = "step 2 " + d.Step2.Rule
	} else if d.Step1 != nil && d.Step1.Rule != "" {
		det["rule"] = "step 1 " + d.Step1.Rule
	}
	if d.Outbound != nil && d.Outbound.Connector != "" {
		det["outbound"], det["smarthost"], det["rule"] = d.Outbound.Connector, d.Outbound.Smarthost, "outbound connector"
	}
	switch {
	case d.Outcome == routing.Deliver && d.Outbound != nil:
		det["server"], det["path"], det["cost"] = d.Server, strings.Join(d.Route, ">"), fmt.Sprint(d.Cost)
	case d.Outcome == routing.Deliver:
		det["store"], det["server"], det["path"], det["cost"] = d.Store, d.Server, strings.Join(d.Route, ">"), fmt.Sprint(d.Cost)
	default:
		det["code"], det["reason"] = d.Code, d.Reason
	}
	return det
}

func (m *Manager) deliverLocal(ctx context.Context, snap *directory.Snapshot, env *envelope.Envelope, r *envelope.Recipient, body []byte) error {
	dl := store.Delivery{Store: r.Store, ID: env.OriginID + "|" + strings.ToLower(r.Addr), Date: env.Arrived, Body: body}
	ent, err := snap.Resolve(r.Addr)
	switch {
	case err != nil:
		m.fail(env, r, "5.1.1", "recipient no longer exists in the directory")
		return nil
	case ent.User != nil:
		dl.User, dl.Class = ent.User.Name, config.ClassNote
		if dl.Store == "" {
			dl.Store = ent.User.MailboxStore
		}
	default:
		dl.Folder, dl.Class = ent.Folder.Path, m.org().Routing.MessageClass // R16
	}
	uid, dup, err := m.o.Store.Deliver(ctx, dl)
	if err != nil {
		return err
	}
	r.State, r.Waiting, r.Code, r.Reason = envelope.Delivered, false, "2.0.0", ""
	if m.o.Trace != nil {
		env.TraceParent = keep(env.TraceParent, m.o.Trace.Attempt(ctx, env.TraceParent, "deliver", r.Store, nil))
	}
	det := map[string]string{"store": dl.Store, "uid": fmt.Sprint(uid), "class": dl.Class}
	if dl.Folder != "" {
		det["folder"] = dl.Folder
	} else {
		det["mailbox"] = dl.User
	}
	if dup {
		det["duplicate"] = "already delivered (idempotent by origin queue id)"
	}
	m.event(Event{Kind: "delivered", QueueID: env.ID, OriginID: env.OriginID, MessageID: env.MessageID, Recipient: r.Addr, Details: det})
	m.log.Info("delivered", "queue_id", env.ID, "rcpt", r.Addr, "store", dl.Store, "uid", uid, "dup", dup)
	return nil
}

// relay sends the recipients idx to hop in one transaction, with the
// routing metadata only servers may send (S5) and the trace context (S8).
func (m *Manager) relay(ctx context.Context, snap *directory.Snapshot, env *envelope.Envelope, hop string, idx []int, body []byte, now time.Time) {
	srv := snap.Server(hop)
	if srv == nil || srv.Listen.SMTP == "" {
		for _, i := range idx {
			m.retry(env, &env.Recipients[i], "4.4.0", "next hop "+hop+" has no SMTP listener configured", now)
		}
		return
	}
	var hdr strings.Builder
	route := envelope.Route{OriginID: env.OriginID, FirstSeen: env.FirstSeen, Hops: env.Hops + 1,
		Visited: append(append([]string(nil), env.Visited...), m.o.Server), Bounce: env.Bounce, User: env.SenderUser, Size: env.Size}
	hdr.WriteString(envelope.HeaderRoute + ": " + envelope.EncodeRoute(route) + "\r\n")
	rcpts := make([]string, len(idx))
	for k, i := range idx {
		r := env.Recipients[i]
		rcpts[k] = r.Addr
		// R14: the next server learns that this recipient left here in
		// this stage for this destination.
		r.Visits = append(slices.Clip(r.Visits), envelope.Visit{Server: m.o.Server, Stage: r.Stage, Dest: r.Dest()})
		hdr.WriteString(envelope.HeaderRcpt + ": " + envelope.EncodeRcpt(r) + "\r\n")
	}
	if env.TraceParent != "" {
		hdr.WriteString("Traceparent: " + env.TraceParent + "\r\n")
	}
	msg := make([]byte, 0, hdr.Len()+len(body))
	msg = append(append(msg, hdr.String()...), body...)
	attemptCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	res, err := m.o.Relay.Send(attemptCtx, srv.Listen.SMTP, env.From, rcpts, msg)
	if m.o.Trace != nil {
		env.TraceParent = keep(env.TraceParent, m.o.Trace.Attempt(ctx, env.TraceParent, "relay", hop, err))
	}
	if err != nil { // a *relay.ConnError: the link failed, nothing was handed over
		m.hopFailed(hop, err)
		for _, i := range idx {
			m.retry(env, &env.Recipients[i], "4.4.1", "next hop "+hop+" failed: "+err.Error(), now)
		}
		return
	}
	// The session worked: whatever the peer answered about the message,
	// the link is healthy (R13b counts connection failures only).
	m.hopOK(hop)
	m.applyReplies(env, idx, res, hop, map[string]string{"next_hop": hop}, now)
}

// applyReplies records a peer's per-recipient replies (a next hop's or a
// smarthost's, named by via): accepted is relayed, 5xx fails the
// recipient (a report), 4xx retries it.
func (m *Manager) applyReplies(env *envelope.Envelope, idx []int, res []relay.RcptResult, via string, details map[string]string, now time.Time) {
	for k, i := range idx {
		r := &env.Recipients[i]
		rr := res[k]
		switch c := classify(rr.Err); c {
		case replyAccepted:
			r.State, r.Code, r.Reason = envelope.Delivered, "2.0.0", ""
			det := map[string]string{"stage": r.Stage, "target": firstNonEmpty(r.Server, r.HierarchyServer)}
			for k, v := range details {
				det[k] = v
			}
			m.event(Event{Kind: "relayed", QueueID: env.ID, OriginID: env.OriginID, MessageID: env.MessageID, Recipient: r.Addr, Details: det})
		case replyFailed:
			m.fail(env, r, enh(rr.Err), "refused by "+via+" at "+rr.Err.Command+": "+replyText(rr.Err))
		default:
			m.retry(env, r, enh(rr.Err), "deferred by "+via+" at "+rr.Err.Command+": "+replyText(rr.Err), now)
		}
	}
}

// replyClass is what a next hop's answer means for one recipient.
type replyClass int

const (
	replyAccepted replyClass = iota // handed over
	replyFailed                     // 5xx: a report to the sender
	replyDeferred                   // 4xx: retried with backoff
)

// classify maps the next hop's per-recipient answer to what happens to the
// recipient. None of them concerns the link.
func classify(e *relay.ReplyError) replyClass {
	switch {
	case e == nil:
		return replyAccepted
	case e.Permanent():
		return replyFailed
	}
	return replyDeferred
}

// replyText is the peer's reply as the report shows it: code, enhanced
// code and text.
func replyText(e *relay.ReplyError) string {
	if e.Enhanced != "" {
		return fmt.Sprintf("%d %s %s", e.Code, e.Enhanced, e.Message)
	}
	return fmt.Sprintf("%d %s", e.Code, e.Message)
}

// enh is the enhanced status code a recipient fails or waits with: the
// peer's when its class agrees with the reply code's, else the generic
// one of the reply's class.
func enh(e *relay.ReplyError) string {
	class := "4"
	if e.Permanent() {
		class = "5"
	}
	if strings.HasPrefix(e.Enhanced, class+".") {
		return e.Enhanced
	}
	return class + ".0.0"
}

// keep prefers a new traceparent, keeping the old one when tracing is off.
func keep(old, tp string) string {
	if tp == "" {
		return old
	}
	return tp
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func (m *Manager) fail(env *envelope.Envelope, r *envelope.Recipient, code, reason string) {
	r.State, r.Waiting, r.Code, r.Reason = envelope.Failed, false, code, reason
	m.log.Info("recipient failed", "queue_id", env.ID, "rcpt", r.Addr, "code", code, "reason", reason)
}

// wait parks a recipient until link state changes (R6b, R10); it is also
// retried on the backoff schedule in case the change is missed.
func (m *Manager) wait(env *envelope.Envelope, r *envelope.Recipient, code, reason string, now time.Time) {
	reason = withLastError(r, reason)
	if r.Waiting && r.NextAttempt.After(now) {
		// Still waiting, re-decided before its retry (the message was
		// attempted for another recipient, or link state changed
		// elsewhere on its path): its schedule stands, so the envelope
		// is unchanged and finish writes nothing.
		r.Code, r.Reason = code, reason
		return
	}
	first := !r.Waiting
	r.Waiting = true
	m.backoff(r, code, reason, now)
	if first {
		m.event(Event{Kind: "deferred", QueueID: env.ID, OriginID: env.OriginID, MessageID: env.MessageID, Recipient: r.Addr, Details: map[string]string{"code": code, "reason": reason, "waiting": "link state"}})
	}
}

// lastErrorSep joins a waiting recipient's reason and the error of its
// last attempt.
const lastErrorSep = "; last error: "

// withLastError keeps a recipient's last delivery error while it waits for
// link state (a smarthost that failed until its connector went down, a hop
// marked down): the report at expiry says what actually went wrong, not
// only that no route was left.
func withLastError(r *envelope.Recipient, reason string) string {
	last := r.Reason
	if r.Waiting {
		_, last, _ = strings.Cut(r.Reason, lastErrorSep)
	}
	if last == "" || last == reason {
		return reason
	}
	return reason + lastErrorSep + last
}

func (m *Manager) retry(env *envelope.Envelope, r *envelope.Recipient, code, reason string, now time.Time) {
	m.backoff(r, code, reason, now)
	m.event(Event{Kind: "deferred", QueueID: env.ID, OriginID: env.OriginID, MessageID: env.MessageID, Recipient: r.Addr, Details: map[string]string{"code": code, "reason": reason, "next_attempt": r.NextAttempt.UTC().Format(time.RFC3339)}})
	m.log.Info("recipient deferred", "queue_id", env.ID, "rcpt", r.Addr, "code", code, "reason", reason, "next_attempt", r.NextAttempt)
}

// backoff schedules the next attempt: retry_initial doubling up to retry_max.
func (m *Manager) backoff(r *envelope.Recipient, code, reason string, now time.Time) {
	r.Attempts++
	r.Code, r.Reason = code, reason
	d := time.Duration(m.org().Routing.RetryInitial)
	for i := 1; i < r.Attempts && d < time.Duration(m.org().Routing.RetryMax); i++ {
		d *= 2
	}
	d = min(d, time.Duration(m.org().Routing.RetryMax))
	r.NextAttempt = now.Add(d)
}
