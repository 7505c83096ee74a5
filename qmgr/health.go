package qmgr

import (
	"context"
	"time"

	"pfrouter/linkstate"
)

// hopFailed counts a failed attempt to reach a next hop; after
// failure_threshold consecutive failures the hop is marked down in this
// server's link state (R13b), so following messages take another path.
func (m *Manager) hopFailed(hop string, err error) {
	r := m.org().Routing
	m.mu.Lock()
	h := m.hops[hop]
	if h == nil {
		h = &hopHealth{}
		m.hops[hop] = h
	}
	h.fails++
	mark := h.fails >= r.FailureThreshold && !h.markedDown && !r.SuppressStateChanges
	if mark {
		h.markedDown, h.changedAt = true, m.o.Now()
	}
	fails := h.fails
	m.mu.Unlock()
	m.log.Warn("next hop failed", "hop", hop, "consecutive_failures", fails, "err", err)
	if mark {
		if _, err := m.o.LinkState.SetServerCause(hop, linkstate.CauseHopHealth, true); err != nil {
			m.log.Error("cannot mark hop down", "hop", hop, "err", err)
			return
		}
		m.log.Warn("next hop marked down in link state; routing around it (R13b)", "hop", hop, "after_failures", fails)
		m.event(Event{Kind: "linkstate", Details: map[string]string{"server": hop, "cause": string(linkstate.CauseHopHealth), "state": "down", "reason": err.Error()}})
	}
}

func (m *Manager) hopOK(hop string) {
	m.mu.Lock()
	if h := m.hops[hop]; h != nil && !h.markedDown {
		h.fails = 0
	}
	m.mu.Unlock()
}

// prober asks hops marked down whether they answer again, every
// probe_interval, and marks them up once hold_down has passed since they
// went down, so a flapping hop does not flip state on every probe.
// probeTick bounds how late a changed probe_interval takes effect.
const probeTick = time.Second

func (m *Manager) probeInterval() time.Duration {
	if iv := time.Duration(m.org().Routing.ProbeInterval); iv > 0 {
		return iv
	}
	return time.Minute
}

func (m *Manager) prober(ctx context.Context) {
	// The interval is read from the config in force at every tick, and
	// ticks come at most probeTick apart: a reload's probe_interval (say
	// 1h down to 10s) applies within probeTick, not after the old interval.
	interval := m.probeInterval()
	t := time.NewTicker(min(interval, probeTick))
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if iv := m.probeInterval(); iv != interval {
			interval = iv
			t.Reset(min(interval, probeTick))
		}
		// Half a tick of slack: ticks jitter, and a probe due now must
		// not wait for the next one.
		if time.Since(last)+min(interval, probeTick)/2 < interval {
			continue
		}
		last = time.Now()
		r := m.org().Routing
		now := m.o.Now()
		m.probeOutbound(ctx, now)
		var candidates []string
		m.mu.Lock()
		for hop, h := range m.hops {
			if h.markedDown && now.Sub(h.changedAt) >= time.Duration(r.HoldDown) {
				candidates = append(candidates, hop)
			}
		}
		m.mu.Unlock()
		snap := m.o.Directory.Snapshot()
		for _, hop := range candidates {
			srv := snap.Server(hop)
			if srv == nil {
				continue
			}
			pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := m.o.Relay.Probe(pctx, srv.Listen.SMTP)
			cancel()
			if err != nil {
				m.log.Info("hop still down", "hop", hop, "err", err)
				continue
			}
			m.mu.Lock()
			h := m.hops[hop]
			h.markedDown, h.fails, h.changedAt = false, 0, m.o.Now()
			m.mu.Unlock()
			// Only this prober's cause is cleared: a server an operator
			// put in maintenance, or that memberlist finds dead, stays down.
			if _, err := m.o.LinkState.SetServerCause(hop, linkstate.CauseHopHealth, false); err == nil {
				m.log.Info("hop answers again; hop-health cause cleared in link state (R13b)", "hop", hop)
				m.event(Event{Kind: "linkstate", Details: map[string]string{"server": hop, "cause": string(linkstate.CauseHopHealth), "state": "cleared"}})
			}
		}
	}
}
