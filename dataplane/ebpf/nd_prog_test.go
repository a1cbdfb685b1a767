package ebpf

import (
	"net"
	"net/netip"
	"testing"
)

// ICMPv6 types of router and neighbour discovery (RFC 4861) and router
// renumbering (RFC 2894).
const (
	icmp6RouterSolicit  = 133
	icmp6RouterAdvert   = 134
	icmp6NeighSolicit   = 135
	icmp6NeighAdvert    = 136
	icmp6Redirect       = 137
	icmp6RouterRenumber = 138
)

// Link-local addresses the kernel gives endpoints A and B (EUI-64 of their
// MACs), and the all-nodes group.
var (
	llA      = netip.MustParseAddr("fe80::42:acff:fe11:2")
	llB      = netip.MustParseAddr("fe80::42:acff:fe11:3")
	allNodes = netip.MustParseAddr("ff02::1")
)

// ndOpt is a link-layer address option (1: source, 2: target).
func ndOpt(typ byte, mac net.HardwareAddr) []byte {
	return append([]byte{typ, 1}, mac...)
}

// ndFrame is a neighbour solicitation or advertisement from endpoint A's
// MAC, about target, with options.
func ndFrame(typ uint8, src, dst, target netip.Addr, opts ...[]byte) []byte {
	t := target.As16()
	body := t[:]
	for _, o := range opts {
		body = append(body, o...)
	}
	return pkt6{srcMAC: macA, dstMAC: macGW, src: src, dst: dst, next: 58, icmpType: typ, payload: body}.frame()
}

// TestEndpointNeighbourDiscovery (B17): what an endpoint says in neighbour
// discovery must be about itself, as for ARP; a container never speaks as a
// router.
func TestEndpointNeighbourDiscovery(t *testing.T) {
	f := newFixture(t, fixtureOpts{icc: false, masquerade: true})
	solicited := netip.MustParseAddr("ff02::1:ff00:3")

	// Positive controls: A asking about B, answering for its own addresses,
	// and duplicate address detection of its own.
	f.passUnchanged(progEndpointIngress, ndFrame(icmp6NeighSolicit, ipA6, solicited, ipB6, ndOpt(1, macA)))
	f.passUnchanged(progEndpointIngress, ndFrame(icmp6NeighSolicit, llA, solicited, ipB6, ndOpt(1, macA)))
	f.passUnchanged(progEndpointIngress, ndFrame(icmp6NeighAdvert, ipA6, ipB6, ipA6, ndOpt(2, macA)))
	f.passUnchanged(progEndpointIngress, ndFrame(icmp6NeighAdvert, llA, allNodes, llA, ndOpt(2, macA)))
	f.passUnchanged(progEndpointIngress, ndFrame(icmp6NeighAdvert, ipA6, allNodes, ipA6))
	f.passUnchanged(progEndpointIngress, ndFrame(icmp6NeighSolicit, netip.IPv6Unspecified(), solicited, ipA6))
	f.passUnchanged(progEndpointIngress, pkt6{srcMAC: macA, dstMAC: macGW, src: llA,
		dst: netip.MustParseAddr("ff02::2"), next: 58, icmpType: icmp6RouterSolicit}.frame())

	for _, c := range []struct {
		what  string
		frame []byte
	}{
		{"advertisement for B's address", ndFrame(icmp6NeighAdvert, ipA6, allNodes, ipB6, ndOpt(2, macA))},
		{"advertisement for B's link-local", ndFrame(icmp6NeighAdvert, llA, allNodes, llB, ndOpt(2, macA))},
		{"advertisement for the gateway", ndFrame(icmp6NeighAdvert, ipA6, allNodes, netip.MustParseAddr("fd00:17::1"))},
		{"advertisement from ::", ndFrame(icmp6NeighAdvert, netip.IPv6Unspecified(), allNodes, ipA6)},
		{"advertisement with B's MAC", ndFrame(icmp6NeighAdvert, ipA6, allNodes, ipA6, ndOpt(2, macB))},
		{"advertisement with B's MAC second", ndFrame(icmp6NeighAdvert, ipA6, allNodes, ipA6, ndOpt(2, macA), ndOpt(2, macB))},
		{"solicitation from B's link-local", ndFrame(icmp6NeighSolicit, llB, solicited, ipB6, ndOpt(1, macA))},
		{"solicitation with B's MAC", ndFrame(icmp6NeighSolicit, ipA6, solicited, ipB6, ndOpt(1, macB))},
		{"duplicate address detection of B's", ndFrame(icmp6NeighSolicit, netip.IPv6Unspecified(), solicited, ipB6)},
		{"more options than checked", ndFrame(icmp6NeighAdvert, ipA6, allNodes, ipA6,
			[]byte{14, 1, 0, 0, 0, 0, 0, 0}, []byte{14, 1, 0, 0, 0, 0, 0, 0}, []byte{14, 1, 0, 0, 0, 0, 0, 0},
			[]byte{14, 1, 0, 0, 0, 0, 0, 0}, ndOpt(2, macB))},
	} {
		t.Run(c.what, func(t *testing.T) {
			g := *f
			g.t = t
			g.dropped(progEndpointIngress, c.frame, "spoof-nd")
		})
	}
	f.dropped(progEndpointIngress, ndFrame(icmp6NeighAdvert, ipA6, allNodes, ipA6, []byte{2, 0, 0, 0, 0, 0, 0, 0}), "malformed")

	// Router messages, from any address a container may use.
	for _, typ := range []uint8{icmp6RouterAdvert, icmp6Redirect, icmp6RouterRenumber} {
		for _, src := range []netip.Addr{llA, ipA6} {
			f.dropped(progEndpointIngress, pkt6{srcMAC: macA, dstMAC: macGW, src: src, dst: allNodes,
				next: 58, icmpType: typ, payload: make([]byte, 16)}.frame(), "spoof-router")
		}
	}
}
