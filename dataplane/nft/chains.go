package nft

import (
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

// Hook priorities. The inet chains sit at the standard iptables-equivalent
// priorities, so they interleave with iptables-nft and firewalld tables in
// the usual order; the bridge chains sit at the bridge family's filter
// priority (-200), before br_netfilter (0) hands frames to the IP hooks.
const (
	prioRaw    = -300 // before conntrack (-200)
	prioDstNAT = -100
	prioFilter = 0
	prioSrcNAT = 100
	prioBridge = -200
)

// Chain names that rules refer to.
const chainPublished = "published"

var (
	loopback4 = netip.MustParsePrefix("127.0.0.0/8")
	linkLocal = netip.MustParsePrefix("fe80::/10")
)

func inetChains(mark uint32) []*chainDef {
	r := func(t ...term) rule { return mkRule(famInet, t...) }
	return append([]*chainDef{
		rawPrerouting(),
		baseChain("nat-prerouting", nftables.ChainTypeNAT, nftables.ChainHookPrerouting,
			"prerouting", prioDstNAT, "dstnat", r(jump(chainPublished))),
		// B9 with icc=false: copy the published label of the connection onto
		// every packet of it that comes from a bridge, in both directions.
		// The nat chains see only the first packet of a connection, but with
		// br_netfilter every packet of a DNATed container-to-container flow
		// is bridged and meets the ICC filter. The bridge family cannot read
		// conntrack here (no nf_conntrack_bridge), the packet mark it can.
		// br_netfilter runs this chain before the bridge forward hook; a
		// container cannot forge the mark (it is cleared when a packet
		// crosses from the container's namespace into the node's).
		baseChain("filter-prerouting", nftables.ChainTypeFilter, nftables.ChainHookPrerouting,
			"prerouting", prioFilter, "filter",
			append(staleTargetJumps(mark),
				r(inSet(setBridges, fIifname), hasMark(ctMark, mark), orMark(metaMark, mark)))...),
		// B10: connections the node itself opens to a published port.
		natOutput(r(jump(chainPublished))),
		regularChain(chainPublished, publishedRules(mark, 0)...),
		baseChain("nat-postrouting", nftables.ChainTypeNAT, nftables.ChainHookPostrouting,
			"postrouting", prioSrcNAT, "srcnat", postroutingRules()...),
		baseChain("filter-forward", nftables.ChainTypeFilter, nftables.ChainHookForward,
			"forward", prioFilter, "filter", forwardRules()...),
	}, staleChains(mark)...)
}

// rawPrerouting (B11): with route_localnet=1 the kernel would accept
// 127.0.0.0/8 from any interface; only lo may bring it (as Docker 28's raw
// rule). It runs before conntrack, so it sees the destination a packet
// arrived with, not one that a reply's translation restores.
func rawPrerouting() *chainDef {
	return baseChain("raw-prerouting", nftables.ChainTypeFilter, nftables.ChainHookPrerouting,
		"prerouting", prioRaw, "raw",
		mkRule(famInet, ifname(fIifname, expr.CmpOpNeq, "lo"), inPrefix(fIPDaddr, loopback4),
			dropCounted(dropLoopback)))
}

// natOutput is the chain of connections the node itself opens (B10).
func natOutput(rules ...rule) *chainDef {
	return baseChain("nat-output", nftables.ChainTypeNAT, nftables.ChainHookOutput,
		"output", prioDstNAT, "-100", rules...)
}

// loopbackMasquerade (B10): after output DNAT of 127.0.0.1 the packet
// leaves for a bridge with source 127.0.0.1, which the container could not
// answer; it gets the bridge's address instead.
func loopbackMasquerade() rule {
	return mkRule(famInet, inSet(setBridges, fOifname), inPrefix(fIPSaddr, loopback4), masquerade())
}

// localChains are the chains of ModeLocal: only what connections opened
// by the node itself need (B10, B11), for a datapath on tc hooks that such
// connections never cross. The published rules sit in nat-output itself
// and translate without labelling: the label serves the ICC filter of the
// bridge table, which this mode has not.
//
// And one thing the datapath leaves to it: IPv6 hairpin (B9 through a node
// IPv6 address). A container's packet to a node IPv6 address passes the
// endpoint program up the stack, where nat-prerouting translates it with
// the same maps, only for packets from a bridge; the external side's IPv6
// published ports stay the datapath's.
func localChains() []*chainDef {
	return []*chainDef{
		rawPrerouting(),
		baseChain("nat-prerouting", nftables.ChainTypeNAT, nftables.ChainHookPrerouting,
			"prerouting", prioDstNAT, "dstnat", publishedRules(0, depIP6, inSet(setBridges, fIifname))...),
		natOutput(publishedRules(0, 0)...),
		baseChain("nat-postrouting", nftables.ChainTypeNAT, nftables.ChainHookPostrouting,
			"postrouting", prioSrcNAT, "srcnat", localPostroutingRules()...),
	}
}

// localPostroutingRules masquerade the connections the node opened to a
// published port (B10) when they leave through a bridge, sources
// 127.0.0.0/8 and node addresses alike. The container then answers the
// bridge's own address, which its default route leads to the node, and
// which the datapath next to this one passes up the stack, where conntrack
// restores the node's address. Source 127.0.0.0/8 comes first and
// unconditionally, as in the full mode: it cannot leave otherwise.
//
// The IPv6 hairpin connections translated in nat-prerouting are masqueraded
// too, whatever their source: the target then answers the bridge's
// address, so its reply goes up the stack for conntrack to restore, instead
// of straight to a neighbour (same bridge, refused by ICC or by the
// neighbour's socket) or to another network (refused by isolation). In
// this mode nothing else gives an IPv6 connection DNAT status: the
// datapath translates without conntrack.
func localPostroutingRules() []rule {
	dnat := func() term { return ctBits(expr.CtKeySTATUS, ctStatusDNAT, "ct status dnat") }
	return []rule{
		loopbackMasquerade(),
		mkRule(famInet, inSet(setBridges, fOifname), dnat(), fibSaddrLocal(), masquerade()),
		mkRule(famInet, nfproto(depIP6), inSet(setBridges, fOifname), dnat(), masquerade()),
	}
}

// dnatLookups are the dnat maps in the order publishedRules tries them,
// each with the packet fields of its key and its address family.
var dnatLookups = []struct {
	d   dep
	m   *setDef
	key []field
}{
	{depIP4, mapDNAT4, []field{fIPDaddr, fL4proto, fThDport}},
	{depIP4, mapDNAT4Range, []field{fIPDaddr, fL4proto, fThDport}},
	{depIP6, mapDNAT6, []field{fIP6Daddr, fL4proto, fThDport}},
	{depIP6, mapDNAT6Range, []field{fIP6Daddr, fL4proto, fThDport}},
	{depIP4, mapDNAT4Any, []field{fL4proto, fThDport}},
	{depIP4, mapDNAT4AnyRange, []field{fL4proto, fThDport}},
	{depIP6, mapDNAT6Any, []field{fL4proto, fThDport}},
	{depIP6, mapDNAT6AnyRange, []field{fL4proto, fThDport}},
}

// publishedRules DNAT published ports: exact host addresses first, then
// ranges, then wildcard mappings, which apply to every local address (and so
// also to 127.0.0.1 from the node, B10, and to a node address from a
// container, B9).
//
// Each map is looked up twice: first to label the connection with mark in
// its conntrack mark, then to translate it. The label cannot follow the
// translation in the same rule, since nat ends the rule with its verdict;
// and it cannot precede the lookup, or every new connection would carry
// it. A second hash lookup, for the first packet of a connection only, is
// the price of a rule that means what it says. With mark 0 (ModeLocal)
// there is no label, only the translation. With only set, the rules of that
// family alone; every rule starts with the terms pre.
func publishedRules(mark uint32, only dep, pre ...term) []rule {
	var rules []rule
	for _, p := range dnatLookups {
		if only != 0 && p.d != only {
			continue
		}
		local := slices.Clone(pre)
		if len(p.key) == 2 { // a wildcard map: only for local addresses
			local = append(local, nfproto(p.d), fibLocal())
		}
		if mark != 0 {
			label := append(slices.Clone(local), inSet(p.m, p.key...), orMark(ctMark, mark))
			rules = append(rules, mkRule(famInet, label...))
		}
		dnat := append(slices.Clone(local), natMap(expr.NATTypeDestNAT, p.d, p.m, p.key...))
		rules = append(rules, mkRule(famInet, dnat...))
	}
	return rules
}

func postroutingRules() []rule {
	r := func(t ...term) rule { return mkRule(famInet, t...) }
	snat := expr.NATTypeSourceNAT
	return []rule{
		// B10: 127.0.0.1 cannot be a source on a bridge.
		loopbackMasquerade(),
		// B9 hairpin: a container reached a published port through a node
		// address and the DNAT sends it back into its own bridge; without
		// this the answer would go straight over the bridge, bypass the
		// reverse translation, and be dropped by the client. Keyed on the
		// output bridge and the source subnet, not on the input interface:
		// when br_netfilter bridges a DNATed frame ("bridged_dnat") it runs
		// postrouting with no input device.
		r(ctBits(expr.CtKeySTATUS, ctStatusDNAT, "ct status dnat"),
			inSet(setBridgeNets4, fOifname, fIPSaddr), masquerade()),
		r(ctBits(expr.CtKeySTATUS, ctStatusDNAT, "ct status dnat"),
			inSet(setBridgeNets6, fOifname, fIP6Saddr), masquerade()),
		// Everything below is for traffic leaving towards the outside.
		r(inSet(setBridges, fOifname), ret),
		r(natMap(snat, depIP4, mapSNAT4EP, fIPSaddr)),
		r(natMap(snat, depIP6, mapSNAT6EP, fIP6Saddr)),
		r(natMap(snat, depIP4, mapSNAT4Net, fIPSaddr)),
		r(natMap(snat, depIP6, mapSNAT6Net, fIP6Saddr)),
		r(inSet(setMasq4, fIPSaddr), masquerade()),
		r(inSet(setMasq6, fIP6Saddr), masquerade()),
	}
}

// ct state and status bits (linux/netfilter/nf_conntrack_common.h).
const (
	ctStateEstablishedRelated = 0x2 | 0x4
	ctStatusDNAT              = 1 << 5 // IPS_DST_NAT
)

// forwardRules keep the outside and other networks away from containers
// (B12, B18): only replies, published ports, egress and same-bridge traffic
// (seen here when br_netfilter passes bridged frames through), or between
// the routed endpoints of an icc network, go into a bridge or routed veth. An internal network has no egress (to other bridges the last
// rule drops it, as for every network).
func forwardRules() []rule {
	r := func(t ...term) rule { return mkRule(famInet, t...) }
	return []rule{
		r(ctBits(expr.CtKeySTATE, ctStateEstablishedRelated, "ct state established,related"), accept),
		r(ctBits(expr.CtKeySTATUS, ctStatusDNAT, "ct status dnat"), accept),
		r(inSet(setInternal, fIifname), notInSet(setBridges, fOifname), dropCounted(dropInternal)),
		r(inSet(setBridges, fIifname), notInSet(setBridges, fOifname), accept),
		r(inSet(setBridgePairs, fIifname, fOifname), accept),
		r(inSet(setRoutedICC4, fIifname, fIPDaddr), accept),
		r(inSet(setRoutedICC6, fIifname, fIP6Daddr), accept),
		r(inSet(setBridges, fOifname), dropCounted(dropInbound)),
	}
}

func bridgeChains(mark uint32) []*chainDef {
	return []*chainDef{
		baseChain("filter-prerouting", nftables.ChainTypeFilter, nftables.ChainHookPrerouting,
			"prerouting", prioBridge, "filter", antiSpoofRules()...),
		baseChain("filter-forward", nftables.ChainTypeFilter, nftables.ChainHookForward,
			"forward", prioBridge, "filter", iccRules(mark)...),
	}
}

// antiSpoofRules (B17): what an endpoint sends must carry its own MAC and
// addresses. IPv6 link-local sources are allowed (neighbour discovery), and
// :: for duplicate address detection. Other ethertypes are dropped.
func antiSpoofRules() []rule {
	r := func(t ...term) rule { return mkRule(famBridge, t...) }
	rules := []rule{
		r(notInSet(setPorts, fIifname), accept),
		r(notInSet(setPortMAC, fIifname, fEtherSaddr), dropCounted(dropSpoof)),
	}
	rules = append(rules, ndRules()...)
	return append(rules,
		r(inSet(setPortIP4, fIifname, fIPSaddr), accept),
		r(inSet(setPortMAC, fIifname, fARPSha), inSet(setPortIP4, fIifname, fARPSpa), accept),
		r(inSet(setPortIP6, fIifname, fIP6Saddr), accept),
		r(inPrefix(fIP6Saddr, linkLocal), accept),
		r(isAddr(fIP6Saddr, netip.IPv6Unspecified()), accept),
		r(dropCounted(dropSpoof)),
	)
}

// iccRules (B15, B16): frames bridged between the ports of an icc=false
// network. The kernel here has no nf_conntrack_bridge (a ct expression in a
// bridge table is refused), so replies of a link are matched statelessly by
// their source port, as Docker does; unlike Docker, a bare TCP SYN never
// passes as a reply, so the child cannot open a TCP connection to the
// parent even from its exposed port. The kernel has no NFT_BRIDGE_META
// either (no meta ibrname), so isolation is keyed on the endpoint ports.
//
// A frame carrying mark belongs to a connection DNATed by a published port
// (see filter-prerouting in the inet table): with br_netfilter a container
// reaching a neighbour's published port through a node address is
// translated and then bridged, and B9 says that works whatever icc is.
func iccRules(mark uint32) []rule {
	r := func(t ...term) rule { return mkRule(famBridge, t...) }
	return []rule{
		r(notInSet(setIsolated, fIifname), notInSet(setIsolated, fOifname), accept),
		r(etherARP(), accept),
		r(icmp6Type(icmp6NeighSolicit, "nd-neighbor-solicit"), accept),
		r(icmp6Type(icmp6NeighAdvert, "nd-neighbor-advert"), accept),
		r(hasMark(metaMark, mark), accept),
		r(inSet(setLinks4, fIPSaddr, fIPDaddr, fL4proto, fThDport), accept),
		r(inSet(setLinks6, fIP6Saddr, fIP6Daddr, fL4proto, fThDport), accept),
		r(tcpSyn(), dropCounted(dropICC)),
		r(inSet(setLinks4Back, fIPSaddr, fIPDaddr, fL4proto, fThSport), accept),
		r(inSet(setLinks6Back, fIP6Saddr, fIP6Daddr, fL4proto, fThSport), accept),
		r(dropCounted(dropICC)),
	}
}
