package nft

import (
	"net"
	"net/netip"
)

// ICMPv6 types of router and neighbour discovery (RFC 4861) and router
// renumbering (RFC 2894), with the names nft lists them by.
const (
	icmp6RouterAdvert   = 134
	icmp6NeighSolicit   = 135
	icmp6NeighAdvert    = 136
	icmp6Redirect       = 137
	icmp6RouterRenumber = 138
)

// ND option types of the link-layer addresses (RFC 4861 4.6.1).
const (
	ndOptSourceLL = 1
	ndOptTargetLL = 2
)

// ndRules (B17) hold neighbour discovery to what ARP is held to: a
// solicitation comes from the endpoint's own address (or from ::, for
// duplicate address detection of its own), an advertisement is for the
// endpoint's own address, and the link-layer address they carry is its
// MAC. Without them a container on an icc=false network could point the
// node's and its neighbours' caches at itself. Router advertisements,
// redirects and router renumbering are dropped: a container is never a
// router. The endpoint's addresses are in port-ip6, its link-local one too
// (endpointLinkLocal). Only the first option is read: nft cannot walk them,
// and a solicitation or advertisement carries the link-layer option first.
func ndRules() []rule {
	r := func(t ...term) rule { return mkRule(famBridge, t...) }
	ns := icmp6Type(icmp6NeighSolicit, "nd-neighbor-solicit")
	na := icmp6Type(icmp6NeighAdvert, "nd-neighbor-advert")
	spoof := dropCounted(dropSpoof)
	return []rule{
		r(icmp6Type(icmp6RouterAdvert, "nd-router-advert"), spoof),
		r(icmp6Type(icmp6Redirect, "nd-redirect"), spoof),
		r(icmp6Type(icmp6RouterRenumber, "router-renumbering"), spoof),
		r(ns, isAddr(fIP6Saddr, netip.IPv6Unspecified()), notInSet(setPortIP6, fIifname, fNDTarget), spoof),
		r(ns, inPrefix(fIP6Saddr, linkLocal), notInSet(setPortIP6, fIifname, fIP6Saddr), spoof),
		r(ns, isByte(fNDOptType, ndOptSourceLL), notInSet(setPortMAC, fIifname, fNDOptMAC), spoof),
		r(na, notInSet(setPortIP6, fIifname, fNDTarget), spoof),
		r(na, isAddr(fIP6Saddr, netip.IPv6Unspecified()), spoof),
		r(na, inPrefix(fIP6Saddr, linkLocal), notInSet(setPortIP6, fIifname, fIP6Saddr), spoof),
		r(na, isByte(fNDOptType, ndOptTargetLL), notInSet(setPortMAC, fIifname, fNDOptMAC), spoof),
	}
}

// endpointLinkLocal is the link-local address the kernel gives an
// interface with MAC mac by default (addr_gen_mode eui64: modified EUI-64,
// RFC 4291 appendix A). Containers with another address generation mode
// have a link-local address the model does not know, and their neighbour
// discovery from it is dropped.
func endpointLinkLocal(mac net.HardwareAddr) (netip.Addr, bool) {
	if len(mac) != 6 {
		return netip.Addr{}, false
	}
	a := [16]byte{0: 0xfe, 1: 0x80, 11: 0xff, 12: 0xfe}
	a[8], a[9], a[10] = mac[0]^2, mac[1], mac[2]
	a[13], a[14], a[15] = mac[3], mac[4], mac[5]
	return netip.AddrFrom16(a), true
}
