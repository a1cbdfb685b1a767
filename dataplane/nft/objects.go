package nft

import (
	"github.com/portcullis/portcullis/dataplane/model"
)

// This file maps each resolved object to the set and map elements it
// stands for. A change of one object therefore costs the difference of two
// short lists, whatever the size of the whole state.

// networkElems: the bridge is ours, and its subnet is masqueraded or
// source-translated to a fixed address when leaving the node. A network
// with masquerade off keeps container addresses (B3); a fixed snat_ip is
// honoured even then, since it was asked for explicitly.
func networkElems(n *model.RNetwork) []elem {
	var es []elem
	if !n.Routed() { // a routed network's links are its endpoints' (routedElems)
		es = ifaceElems(n, n.Bridge)
		es = append(es, el(setBridgePairs, vIfname(n.Bridge), vIfname(n.Bridge)))
	}
	if n.Internal {
		return es
	}
	switch {
	case n.SNATIP.Is4():
		es = append(es, el(mapSNAT4Net, vPrefix(n.Subnet)).to(vAddr(n.SNATIP)))
	case n.Masquerade:
		es = append(es, el(setMasq4, vPrefix(n.Subnet)))
	}
	if !n.Subnet6.IsValid() {
		return es
	}
	switch {
	case n.SNATIP.Is6():
		es = append(es, el(mapSNAT6Net, vPrefix(n.Subnet6)).to(vAddr(n.SNATIP)))
	case n.Masquerade:
		es = append(es, el(setMasq6, vPrefix(n.Subnet6)))
	}
	return es
}

// ifaceElems: an interface that leads into network n (its bridge, or a
// routed endpoint's host veth) with n's subnets, for hairpin masquerade
// and for telling traffic into and out of containers; and whether n is
// internal.
func ifaceElems(n *model.RNetwork, ifname string) []elem {
	es := []elem{
		el(setBridges, vIfname(ifname)),
		el(setBridgeNets4, vIfname(ifname), vPrefix(n.Subnet)),
	}
	if n.Subnet6.IsValid() {
		es = append(es, el(setBridgeNets6, vIfname(ifname), vPrefix(n.Subnet6)))
	}
	if n.Internal {
		es = append(es, el(setInternal, vIfname(ifname)))
	}
	return es
}

// routedElems: the host veth of an endpoint on a routed network (ptp) is
// that network's link to the node, as a bridge is for a bridged one; with
// icc on, what comes from it may go to the network's other endpoints,
// which are reached through their own veths (no bridge pairs them).
func routedElems(e *model.REndpoint) []elem {
	n := e.Net
	es := ifaceElems(n, e.HostIfname)
	if n.ICC {
		es = append(es, el(setRoutedICC4, vIfname(e.HostIfname), vPrefix(n.Subnet)))
		if n.Subnet6.IsValid() {
			es = append(es, el(setRoutedICC6, vIfname(e.HostIfname), vPrefix(n.Subnet6)))
		}
	}
	return es
}

// endpointElems: the identity the endpoint's port must keep (B17), its
// isolation when its network has icc=false (B15) and its own source
// address, if it has one (B2).
func endpointElems(e *model.REndpoint) []elem {
	port := vIfname(e.HostIfname)
	es := []elem{
		el(setPorts, port),
		el(setPortMAC, port, vEther(e.MAC)),
		el(setPortIP4, port, vAddr(e.IP)),
	}
	if e.IP6.IsValid() {
		es = append(es, el(setPortIP6, port, vAddr(e.IP6)))
	}
	if ll, ok := endpointLinkLocal(e.MAC); ok {
		es = append(es, el(setPortIP6, port, vAddr(ll)))
	}
	if !e.Net.ICC {
		es = append(es, el(setIsolated, port))
	}
	if e.SNATIP.Is4() {
		es = append(es, el(mapSNAT4EP, vAddr(e.IP)).to(vAddr(e.SNATIP)))
	}
	if e.SNATIP.Is6() && e.IP6.IsValid() {
		es = append(es, el(mapSNAT6EP, vAddr(e.IP6)).to(vAddr(e.SNATIP)))
	}
	if e.Net.Routed() {
		es = append(es, routedElems(e)...)
	}
	return es
}

// dnatMaps are the four maps of one address family.
type dnatMaps struct{ exact, rng, any, anyRange *setDef }

var (
	dnat4 = dnatMaps{mapDNAT4, mapDNAT4Range, mapDNAT4Any, mapDNAT4AnyRange}
	dnat6 = dnatMaps{mapDNAT6, mapDNAT6Range, mapDNAT6Any, mapDNAT6AnyRange}
)

// portElems: a mapping is one element per address family. A range whose
// container ports equal the host ports is one interval element that
// translates the address only (B8). A shifted range (8000-8009 to 9000-9009)
// cannot be expressed that way, since nft_nat has no port offset, so it is
// expanded into one exact element per port: still no rules, only elements.
func portElems(p *model.RPort) []elem {
	var es []elem
	if p.Is4() {
		es = append(es, familyPortElems(p, dnat4, vAddr(p.EP.IP))...)
	}
	if p.Is6() {
		es = append(es, familyPortElems(p, dnat6, vAddr(p.EP.IP6))...)
	}
	return append(es, targetElems(p)...)
}

func familyPortElems(p *model.RPort, m dnatMaps, to value) []elem {
	exact, rng := m.any, m.anyRange
	var host []value
	if p.HostIP.IsValid() {
		exact, rng = m.exact, m.rng
		host = []value{vAddr(p.HostIP)}
	}
	key := func(port value) []value {
		return append(append([]value{}, host...), vProto(p.Proto), port)
	}
	switch {
	case p.HostLo == p.HostHi:
		return []elem{el(exact, key(vPort(p.HostLo))...).to(to, vPort(p.Lo))}
	case p.HostLo == p.Lo:
		return []elem{el(rng, key(vPortRange(p.HostLo, p.HostHi))...).to(to)}
	}
	es := make([]elem, 0, int(p.HostHi-p.HostLo)+1)
	for i := 0; i <= int(p.HostHi-p.HostLo); i++ {
		es = append(es, el(exact, key(vPort(p.HostLo+uint16(i)))...).to(to, vPort(p.Lo+uint16(i))))
	}
	return es
}

// linkElems: the parent may open connections to each exposed port of the
// child, and the child may answer from that port (B15). Over IPv6 too when
// both have an IPv6 address.
func linkElems(l *model.RLink) []elem {
	var es []elem
	for _, x := range l.Child.Exposed {
		proto, port := vProto(x.Proto), vPort(x.Port)
		p4, c4 := vAddr(l.Parent.IP), vAddr(l.Child.IP)
		es = append(es, el(setLinks4, p4, c4, proto, port), el(setLinks4Back, c4, p4, proto, port))
		if l.Parent.IP6.IsValid() && l.Child.IP6.IsValid() {
			p6, c6 := vAddr(l.Parent.IP6), vAddr(l.Child.IP6)
			es = append(es, el(setLinks6, p6, c6, proto, port), el(setLinks6Back, c6, p6, proto, port))
		}
	}
	return dedupe(es)
}

// dedupe drops repeated elements (an exposed port listed twice).
func dedupe(es []elem) []elem {
	seen := make(map[string]bool, len(es))
	out := es[:0]
	for _, e := range es {
		if !seen[e.id()] {
			seen[e.id()] = true
			out = append(out, e)
		}
	}
	return out
}
