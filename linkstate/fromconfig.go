package linkstate

import "pfrouter/config"

// FromConfig builds a table from an organization's routing groups,
// servers, connectors and outbound connectors as configured.
func FromConfig(org *config.Org) (*Table, error) {
	rgs := make([]string, 0, len(org.RoutingGroups))
	for _, rg := range org.RoutingGroups {
		rgs = append(rgs, rg.Name)
	}
	servers := make([]Server, 0, len(org.Servers))
	for _, s := range org.Servers {
		servers = append(servers, Server{Name: s.Name, RoutingGroup: s.RoutingGroup})
	}
	conns := make([]Connector, 0, len(org.Connectors))
	for _, c := range org.Connectors {
		a, b := c.Between[0], c.Between[1]
		conns = append(conns, Connector{Name: c.Name, A: a, B: b, Cost: c.Cost, Up: c.State != "down", OneWay: c.OneWay, NoReferrals: !c.ReferralsAllowed(),
			BridgeheadsA: c.Bridgeheads[a], BridgeheadsB: c.Bridgeheads[b]})
	}
	for _, c := range org.Outbound {
		conns = append(conns, Connector{Name: c.Name, Outbound: true, Cost: c.Cost, Up: c.State != "down",
			AddressSpaces: c.AddressSpaces, Sources: c.SourceServers})
	}
	return New(rgs, servers, conns)
}
