package qmgr

import (
	"context"
	"time"

	"pfrouter/envelope"
	"pfrouter/relay"
)

// Outbound hands mail that leaves the organization to an outbound
// connector's smarthost (node, with relay.Smarthost).
type Outbound interface {
	SendOutbound(ctx context.Context, connector, from string, rcpts []string, body []byte) ([]relay.RcptResult, error)
}

// sendOutbound delivers the recipients idx, routed to the outbound
// connector on this server (its source server), to its smarthost. As with
// any next hop: a failure to talk to the smarthost retries every recipient
// (and ends in a report at expiry); the smarthost's 5xx fails a recipient,
// 4xx retries it. A smarthost is not a server of the organization: its
// failures mark nothing down in link state.
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
		return
	}
	m.applyReplies(env, idx, res, via, map[string]string{"outbound": connector, "smarthost": c.Smarthost}, now)
}
