package linkstate

// Replace makes t hold what from holds (routing groups, servers,
// connectors) in one step: readers see either the old graph or the new one,
// never a mix. The version keeps growing, so whoever watches it (the queue
// manager's reroute) sees the change. It is how a config reload swaps in a
// table built from the new config (O5); from is not used afterwards.
func (t *Table) Replace(from *Table) uint64 {
	from.mu.Lock()
	rgs := append([]string(nil), from.rgs...)
	servers := make(map[string]*Server, len(from.servers))
	for k, s := range from.servers {
		c := *s
		servers[k] = &c
	}
	conns := make(map[string]*Connector, len(from.connectors))
	for k, c := range from.connectors {
		cc := *c
		cc.copySlices()
		conns[k] = &cc
	}
	from.mu.Unlock()

	t.mu.Lock()
	defer t.mu.Unlock()
	t.rgs, t.servers, t.connectors = rgs, servers, conns
	t.version++
	t.publish()
	return t.version
}
