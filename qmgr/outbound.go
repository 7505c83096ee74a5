package qmgr

import (
	"context"
	"slices"
	"strings"
	"time"

	"pfrouter/envelope"
	"pfrouter/linkstate"
	"pfrouter/relay"
)

// Outbound hands mail that leaves the organization to an outbound
// connector's smarthost (node, with relay.Smarthost).
type Outbound interface {
	SendOutbound(ctx context.Context, connector, from string, rcpts []string, body []byte) ([]relay.RcptResult, error)
	// ProbeOutbound opens a session with the connector's smarthost as a
	// send would (greeting, EHLO, STARTTLS, AUTH) and quits before MAIL.
	ProbeOutbound(ctx context.Context, connector string) error
}

// sendOutbound delivers the recipients idx, routed to the outbound
// connector on this server (its source server), to its smarthost. As with
// any next hop: a failure to talk to the smarthost retries every recipient
// and counts towards the connector's hop health (after failure_threshold
// in a row it is down everywhere and its mail is routed again, to the next
// connector); the smarthost's 5xx fails a recipient, 4xx retries it, and
// neither says anything about the connector.
func (m *Manager) sendOutbound(ctx context.Context, env *envelope.Envelope, connector string, idx []int, body []byte, now time.Time) {
	c := m.org().OutboundByName(connector)
	if c == nil || m.o.Outbound == nil {
		// Removed by a reload (or not served here): route again.
		for _, i := range idx {
			r := &env.Recipients[i]
			r.Stage, r.Server, r.Store, r.Outbound = envelope.StageNew, "", "", ""
			m.retry(env, r, "4.4.0", "outbound connector "+connector+" is not available on "+m.o.Server+"; routing again", now)
		}
		return
	}
	rcpts := make([]string, len(idx))
	for k, i := range idx {
		rcpts[k] = env.Recipients[i].Addr
	}
	attemptCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	res, err := m.o.Outbound.SendOutbound(attemptCtx, connector, env.From, rcpts, body)
	if m.o.Trace != nil {
		env.TraceParent = keep(env.TraceParent, m.o.Trace.Attempt(ctx, env.TraceParent, "outbound", "outbound:"+connector, err))
	}
	via := "smarthost " + c.Smarthost + " of outbound connector " + connector
	if err != nil {
		m.log.Warn("outbound delivery failed", "connector", connector, "smarthost", c.Smarthost, "err", err)
		for _, i := range idx {
			m.retry(env, &env.Recipients[i], "4.4.1", via+" failed: "+err.Error(), now)
		}
		m.outboundFailed(connector, err)
		return
	}
	m.outboundOK(connector)
	m.applyReplies(env, idx, res, via, map[string]string{"outbound": connector, "smarthost": c.Smarthost}, now)
}

// outboundDown reports whether an outbound recipient's connector can no
// longer carry it (down for any cause, or gone from link state): its
// recipient is routed again at once, whatever its retry time, so queued
// mail moves to the next connector (issue 10 item 6).
func outboundDown(g *linkstate.Graph, r *envelope.Recipient) (string, bool) {
	if r.Stage != envelope.StageTarget || r.Outbound == "" {
		return "", false
	}
	for _, c := range g.Outbound() {
		if c.Name == r.Outbound {
			if c.Up {
				return "", false
			}
			var why []string
			for _, cause := range c.Causes {
				why = append(why, string(cause))
			}
			return "outbound connector " + c.Name + " is down (" + strings.Join(why, ", ") + ")", true
		}
	}
	return "outbound connector " + r.Outbound + " is no longer in link state", true
}

// rerouteOutbound sends a recipient whose connector went down back to a
// fresh routing decision, due now; its last error stays in its reason.
func (m *Manager) rerouteOutbound(env *envelope.Envelope, r *envelope.Recipient, why string, now time.Time) {
	m.log.Info("outbound recipient routed again", "queue_id", env.ID, "rcpt", r.Addr, "connector", r.Outbound, "why", why)
	m.event(Event{Kind: "rerouted", QueueID: env.ID, OriginID: env.OriginID, MessageID: env.MessageID, Recipient: r.Addr,
		Details: map[string]string{"outbound": r.Outbound, "reason": why}})
	r.Stage, r.Server, r.Store, r.Outbound, r.NextHop = envelope.StageNew, "", "", "", ""
	r.NextAttempt = now
}

// outboundFailed counts a connection-level failure at a connector's
// smarthost (dial, TLS, greeting, AUTH, broken session); after
// failure_threshold in a row the connector gets the hop-health cause on
// every server (R13b for connectors).
func (m *Manager) outboundFailed(connector string, err error) {
	r := m.org().Routing
	m.mu.Lock()
	m.outFails[connector]++
	fails := m.outFails[connector]
	m.mu.Unlock()
	if fails < r.FailureThreshold || r.SuppressStateChanges {
		return
	}
	if c, ok := m.o.LinkState.Connector(connector); !ok || c.Causes.Has(linkstate.CauseHopHealth) {
		return
	}
	if !m.setOutboundHealth(connector, true, err.Error()) {
		return
	}
	m.log.Warn("outbound connector marked down in link state: its smarthost fails; routing around it", "connector", connector, "after_failures", fails, "err", err)
	m.event(Event{Kind: "linkstate", Details: map[string]string{"connector": connector, "cause": string(linkstate.CauseHopHealth), "state": "down", "reason": err.Error()}})
}

func (m *Manager) outboundOK(connector string) {
	m.mu.Lock()
	delete(m.outFails, connector)
	m.mu.Unlock()
}

func (m *Manager) setOutboundHealth(connector string, down bool, reason string) bool {
	var err error
	if m.o.SetOutboundHealth != nil {
		err = m.o.SetOutboundHealth(connector, down, reason)
	} else {
		_, err = m.o.LinkState.SetConnectorCause(connector, linkstate.CauseHopHealth, down, m.o.Server, m.o.Now())
	}
	if err != nil {
		m.log.Error("cannot change outbound connector health", "connector", connector, "down", down, "err", err)
		return false
	}
	return true
}

// probeOutbound asks the smarthosts of this server's outbound connectors
// that have the hop-health cause whether they answer again, once hold_down
// has passed since the cause was set. Link state, not memory, says which
// are down, so a cause set before a restart (gossip keeps it) is cleared
// all the same.
func (m *Manager) probeOutbound(ctx context.Context, now time.Time) {
	if m.o.Outbound == nil {
		return
	}
	hold := time.Duration(m.org().Routing.HoldDown)
	for _, c := range m.o.LinkState.Graph().Outbound() {
		if !c.Causes.Has(linkstate.CauseHopHealth) || !slices.Contains(c.Sources, m.o.Server) ||
			now.Sub(c.ChangedAt) < hold || m.org().OutboundByName(c.Name) == nil {
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := m.o.Outbound.ProbeOutbound(pctx, c.Name)
		cancel()
		if err != nil {
			m.log.Info("outbound connector's smarthost still fails", "connector", c.Name, "err", err)
			continue
		}
		m.outboundOK(c.Name)
		if m.setOutboundHealth(c.Name, false, "") {
			m.log.Info("outbound connector's smarthost answers again; hop-health cause cleared", "connector", c.Name)
			m.event(Event{Kind: "linkstate", Details: map[string]string{"connector": c.Name, "cause": string(linkstate.CauseHopHealth), "state": "cleared"}})
		}
	}
}
