package ebpf

import (
	"net"
	"net/netip"
	"testing"

	"github.com/portcullis/portcullis/dataplane/model"
)

func TestEndpointIdentity(t *testing.T) {
	f := newFixture(t, fixtureOpts{icc: true, masquerade: true})
	good := pkt4{srcMAC: macA, src: ipA, dst: ipExt, proto: 6, sport: 40000, dport: 443, tcpFlags: 0x02}
	f.passUnchanged(progEndpointIngress, good.frame())

	spoofMAC := good
	spoofMAC.srcMAC = macB
	f.dropped(progEndpointIngress, spoofMAC.frame(), "spoof-mac")

	spoofIP := good
	spoofIP.src = ipB
	f.dropped(progEndpointIngress, spoofIP.frame(), "spoof-ip")

	f.passUnchanged(progEndpointIngress, arpFrame(macA, macA, ipA, ipGW))
	f.passUnchanged(progEndpointIngress, arpFrame(macA, macA, netip.IPv4Unspecified(), ipGW)) // probe
	f.dropped(progEndpointIngress, arpFrame(macA, macA, ipB, ipGW), "spoof-arp")
	f.dropped(progEndpointIngress, arpFrame(macA, macB, ipA, ipGW), "spoof-arp")
	f.dropped(progEndpointIngress, arpFrame(macA, macA, ipA, ipGW)[:30], "malformed")

	// IPv6: its own address, link-local and DAD's :: pass; another's does not.
	v6 := pkt6{srcMAC: macA, dstMAC: macGW, src: ipA6, dst: netip.MustParseAddr("2001:db8::1"), next: 17, sport: 1, dport: 53}
	f.passUnchanged(progEndpointIngress, v6.frame())
	ll := v6
	ll.src = netip.MustParseAddr("fe80::42:acff:fe11:2")
	f.passUnchanged(progEndpointIngress, ll.frame())
	spoof6 := v6
	spoof6.src = ipB6
	f.dropped(progEndpointIngress, spoof6.frame(), "spoof-ip")
}

// TestEndpointInternal: an internal network keeps to its bridge (docker
// network create --internal): its containers and gateway are reached,
// broadcast, multicast and link-local stay on it; nothing leaves.
func TestEndpointInternal(t *testing.T) {
	f := newFixture(t, fixtureOpts{icc: true, internal: true})
	tcp := func(dst netip.Addr, dstMAC net.HardwareAddr) []byte {
		return pkt4{srcMAC: macA, dstMAC: dstMAC, src: ipA, dst: dst, proto: 6, sport: 40000, dport: 80, tcpFlags: 0x02}.frame()
	}
	f.passUnchanged(progEndpointIngress, tcp(ipB, macB))
	f.passUnchanged(progEndpointIngress, tcp(ipGW, macGW))
	f.passUnchanged(progEndpointIngress, pkt4{srcMAC: macA, dstMAC: net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
		src: ipA, dst: netip.MustParseAddr("255.255.255.255"), proto: 17, sport: 68, dport: 67}.frame())
	f.passUnchanged(progEndpointIngress, pkt6{srcMAC: macA, dstMAC: macB, src: ipA6, dst: ipB6, next: 6, sport: 1, dport: 22}.frame())
	f.passUnchanged(progEndpointIngress, pkt6{srcMAC: macA, dstMAC: macGW, src: netip.MustParseAddr("fe80::1"),
		dst: netip.MustParseAddr("fe80::42"), next: 17, sport: 1, dport: 22}.frame())
	f.dropped(progEndpointIngress, tcp(ipExt, macGW), "isolation")
	f.dropped(progEndpointIngress, tcp(ipNode, macGW), "isolation")
	f.dropped(progEndpointIngress, tcp(ipOther, macGW), "isolation")
	f.dropped(progEndpointIngress, pkt6{srcMAC: macA, dstMAC: macGW, src: ipA6, dst: netip.MustParseAddr("2001:db8::1"),
		next: 17, sport: 1, dport: 53}.frame(), "isolation")
	// The same packets leave a network that is not internal.
	g := newFixture(t, fixtureOpts{icc: true, masquerade: true})
	g.pass(progEndpointIngress, tcp(ipExt, macGW))
}

func TestEndpointMalformed(t *testing.T) {
	f := newFixture(t, fixtureOpts{icc: true, masquerade: true})
	good := pkt4{srcMAC: macA, src: ipA, dst: ipExt, proto: 17, sport: 4000, dport: 53}

	// (A frame cut inside the IPv4 header is refused by BPF_PROG_TEST_RUN
	// itself, so truncation is tested through tot_len.)
	badIHL := good
	badIHL.ihl = 3
	f.dropped(progEndpointIngress, badIHL.frame(), "malformed")
	trunc := good.frame()
	f.dropped(progEndpointIngress, trunc[:len(trunc)-4], "malformed") // shorter than tot_len
	shortUDP := pkt4{srcMAC: macA, src: ipA, dst: ipExt, proto: 6, sport: 1, dport: 2}.frame()
	shortUDP = shortUDP[:14+20+8] // TCP header cut to 8 bytes
	shortUDP[14+3] = 28           // and tot_len says so
	shortUDP[14+10], shortUDP[14+11] = 0, 0
	f.dropped(progEndpointIngress, shortUDP, "malformed")

	vlan := eth(macGW, macA, 0x8100, make([]byte, 46))
	f.dropped(progEndpointIngress, vlan, "vlan")
	lldp := eth(net.HardwareAddr{0x01, 0x80, 0xc2, 0, 0, 0x0e}, macA, 0x88cc, make([]byte, 46))
	f.dropped(progEndpointIngress, lldp, "non-ip")
}

func TestEndpointICC(t *testing.T) {
	tcp := func(dst netip.Addr, dstMAC net.HardwareAddr, sport, dport uint16) []byte {
		return pkt4{srcMAC: macA, dstMAC: dstMAC, src: ipA, dst: dst, proto: 6, sport: sport, dport: dport, tcpFlags: 0x02}.frame()
	}
	t.Run("icc=true", func(t *testing.T) {
		f := newFixture(t, fixtureOpts{icc: true, masquerade: true})
		f.passUnchanged(progEndpointIngress, tcp(ipB, macB, 40000, 22))
		f.passUnchanged(progEndpointIngress, pkt6{srcMAC: macA, dstMAC: macB, src: ipA6, dst: ipB6, next: 6, sport: 1, dport: 22}.frame())
		// B18: another network's container is out of reach; its gateway (a node address) is not.
		f.dropped(progEndpointIngress, tcp(ipOther, macGW, 40000, 80), "isolation")
		f.passUnchanged(progEndpointIngress, tcp(ipGW2, macGW, 40000, 80))
	})
	t.Run("icc=false", func(t *testing.T) {
		f := newFixture(t, fixtureOpts{icc: false, masquerade: true})
		f.dropped(progEndpointIngress, tcp(ipB, macB, 40000, 22), "icc")
		f.dropped(progEndpointIngress, tcp(ipB, macGW, 40000, 22), "icc") // routed through the gateway
		f.dropped(progEndpointIngress, pkt4{srcMAC: macA, dstMAC: macB, src: ipA, dst: ipB, proto: 1, icmpType: 8, sport: 7}.frame(), "icc")
		f.dropped(progEndpointIngress, tcp(netip.MustParseAddr("172.17.255.255"), macGW, 1, 2), "icc")
		f.dropped(progEndpointIngress, pkt4{srcMAC: macA, dstMAC: net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
			src: ipA, dst: netip.MustParseAddr("255.255.255.255"), proto: 17, sport: 68, dport: 67}.frame(), "icc")
		// A frame for B's MAC with an address that is not B's.
		f.dropped(progEndpointIngress, tcp(ipExt, macB, 40000, 80), "icc")
		// IPv6, global and link-local (B15).
		f.dropped(progEndpointIngress, pkt6{srcMAC: macA, dstMAC: macB, src: ipA6, dst: ipB6, next: 6, sport: 1, dport: 22}.frame(), "icc")
		f.dropped(progEndpointIngress, pkt6{srcMAC: macA, dstMAC: macB, src: netip.MustParseAddr("fe80::1"),
			dst: netip.MustParseAddr("fe80::2"), next: 17, sport: 1, dport: 22}.frame(), "icc")
		f.dropped(progEndpointIngress, pkt6{srcMAC: macA, dstMAC: net.HardwareAddr{0x33, 0x33, 0, 0, 0, 1}, src: ipA6,
			dst: netip.MustParseAddr("ff02::1"), next: 17, sport: 1, dport: 22}.frame(), "icc")
		// Neighbour discovery and the node itself are always fine.
		f.passUnchanged(progEndpointIngress, pkt6{srcMAC: macA, dstMAC: net.HardwareAddr{0x33, 0x33, 0xff, 0, 0, 3}, src: ipA6,
			dst: netip.MustParseAddr("ff02::1:ff00:3"), next: 58, icmpType: 135, payload: ipB6.AsSlice()}.frame())
		f.passUnchanged(progEndpointIngress, pkt6{srcMAC: macA, dstMAC: macGW, src: netip.MustParseAddr("fe80::1"),
			dst: netip.MustParseAddr("fe80::42"), next: 17, sport: 1, dport: 22}.frame())
		f.passUnchanged(progEndpointIngress, tcp(ipGW, macGW, 40000, 53))
		f.passUnchanged(progEndpointIngress, tcp(ipExt, macGW, 40000, 443))
		f.passUnchanged(progEndpointIngress, arpFrame(macA, macA, ipA, ipB))
	})
	t.Run("links", func(t *testing.T) {
		f := newFixture(t, fixtureOpts{icc: false, masquerade: true})
		// A is the parent of B, which exposes 5432/tcp.
		f.b.Exposed = []model.RPortProto{{Port: 5432, Proto: 6}}
		f.put(linkEntries(&model.RLink{Parent: f.a, Child: f.b, Alias: "db"}, ifA, ifB))
		f.passUnchanged(progEndpointIngress, tcp(ipB, macB, 40000, 5432))
		f.passUnchanged(progEndpointIngress, pkt6{srcMAC: macA, dstMAC: macB, src: ipA6, dst: ipB6, next: 6, sport: 40000, dport: 5432}.frame())
		f.dropped(progEndpointIngress, tcp(ipB, macB, 40000, 5433), "icc-link-port")
		f.dropped(progEndpointIngress, pkt4{srcMAC: macA, dstMAC: macB, src: ipA, dst: ipB, proto: 17, sport: 40000, dport: 5432}.frame(), "icc-link-port")

		// Now A is the child of B and exposes 8080/tcp: A may only answer
		// (TestLinkFlows), never open from that port.
		f.a.Exposed = []model.RPortProto{{Port: 8080, Proto: 6}}
		f.put(linkEntries(&model.RLink{Parent: f.b, Child: f.a, Alias: "web"}, ifB, ifA))
		f.dropped(progEndpointIngress, tcp(ipB, macB, 8080, 51000), "icc-link-port")
		f.dropped(progEndpointIngress, tcp(ipB, macB, 8081, 51000), "icc-link-port")
	})
	t.Run("fragments", func(t *testing.T) {
		f := newFixture(t, fixtureOpts{icc: false, masquerade: true})
		f.b.Exposed = []model.RPortProto{{Port: 5353, Proto: 17}}
		f.put(linkEntries(&model.RLink{Parent: f.a, Child: f.b, Alias: "dns"}, ifA, ifB))
		first := pkt4{srcMAC: macA, dstMAC: macB, src: ipA, dst: ipB, proto: 17, sport: 40000, dport: 5353, id: 77, mf: true, payload: make([]byte, 16)}
		f.passUnchanged(progEndpointIngress, first.frame())
		later := first
		later.mf, later.fragOff = false, 3
		f.passUnchanged(progEndpointIngress, later.frame())
		// A later fragment of a datagram whose first was not seen, and one
		// whose first fragment was refused, do not pass.
		orphan := later
		orphan.id = 78
		f.dropped(progEndpointIngress, orphan.frame(), "fragment")
		badFirst := first
		badFirst.id, badFirst.dport = 79, 22
		f.dropped(progEndpointIngress, badFirst.frame(), "icc-link-port")
		badLater := later
		badLater.id = 79
		f.dropped(progEndpointIngress, badLater.frame(), "icc-link-port")
	})
}

// TestLinkFlows is B15's stateful half: with icc=false and A linked to B's
// exposed ports, B answers A's flows and nothing else. Docker matches the
// child's packets on their source port only, so its child may open
// connections to the parent from the exposed port; here it may not.
func TestLinkFlows(t *testing.T) {
	f := newFixture(t, fixtureOpts{icc: false, masquerade: true})
	f.b.Exposed = []model.RPortProto{{Port: 5432, Proto: 6}, {Port: 5353, Proto: 17}}
	link := &model.RLink{Parent: f.a, Child: f.b, Alias: "db"}
	f.put(linkEntries(link, ifA, ifB))
	b := f.as(ifB)
	tcp4 := func(src, dst netip.Addr, srcMAC, dstMAC net.HardwareAddr, sport, dport uint16, flags uint8) []byte {
		return pkt4{srcMAC: srcMAC, dstMAC: dstMAC, src: src, dst: dst, proto: 6, sport: sport, dport: dport, tcpFlags: flags}.frame()
	}
	const syn, synack, ack = 0x02, 0x12, 0x10

	t.Run("tcp", func(t *testing.T) {
		// Before A opens anything, B gets nowhere, from its exposed port
		// or any other, with or without ACK.
		b.dropped(progEndpointIngress, tcp4(ipB, ipA, macB, macA, 5432, 40000, syn), "icc")
		b.dropped(progEndpointIngress, tcp4(ipB, ipA, macB, macA, 5432, 40000, synack), "icc")
		b.dropped(progEndpointIngress, tcp4(ipB, ipA, macB, macA, 5432, 80, syn), "icc")

		f.passUnchanged(progEndpointIngress, tcp4(ipA, ipB, macA, macB, 40000, 5432, syn))
		ct := f.ct()
		fwd, ok := ct[ctKey(ipA, 40000, ipB, 5432, 6)]
		rev, rok := ct[ctKey(ipB, 5432, ipA, 40000, 6)]
		if !ok || !rok || fwd.Flags != ctLink || rev.Flags != ctLink|ctReverse || rev.Hooks != hookEndpointIngress {
			t.Fatalf("link flow: forward %+v (%v), reverse %+v (%v)", fwd, ok, rev, rok)
		}
		b.passUnchanged(progEndpointIngress, tcp4(ipB, ipA, macB, macA, 5432, 40000, synack))
		b.passUnchanged(progEndpointIngress, tcp4(ipB, ipA, macB, macA, 5432, 40000, ack))
		f.passUnchanged(progEndpointIngress, tcp4(ipA, ipB, macA, macB, 40000, 5432, ack))
		if st := f.ct()[ctKey(ipB, 5432, ipA, 40000, 6)].State; st&ctReplied == 0 {
			t.Fatalf("reverse half state %#x: reply not recorded", st)
		}
		// A SYN from B on the very tuple A uses is not an answer.
		b.dropped(progEndpointIngress, tcp4(ipB, ipA, macB, macA, 5432, 40000, syn), "icc")
		// Other tuples stay closed.
		b.dropped(progEndpointIngress, tcp4(ipB, ipA, macB, macA, 5432, 40001, ack), "icc")
		b.dropped(progEndpointIngress, tcp4(ipB, ipA, macB, macA, 5433, 40000, ack), "icc")
	})
	t.Run("udp-and-icmp-errors", func(t *testing.T) {
		q := pkt4{srcMAC: macA, dstMAC: macB, src: ipA, dst: ipB, proto: 17, sport: 40002, dport: 5353, payload: []byte("q")}
		b.dropped(progEndpointIngress, pkt4{srcMAC: macB, dstMAC: macA, src: ipB, dst: ipA, proto: 17, sport: 5353, dport: 40002}.frame(), "icc")
		f.passUnchanged(progEndpointIngress, q.frame())
		b.passUnchanged(progEndpointIngress, pkt4{srcMAC: macB, dstMAC: macA, src: ipB, dst: ipA, proto: 17, sport: 5353, dport: 40002}.frame())
		b.dropped(progEndpointIngress, pkt4{srcMAC: macB, dstMAC: macA, src: ipB, dst: ipA, proto: 17, sport: 5353, dport: 40003}.frame(), "icc")
		// B has nothing on 5353 and says so: the error reaches A.
		unreach := pkt4{srcMAC: macB, dstMAC: macA, src: ipB, dst: ipA, proto: 1, icmpType: 3, icmpCode: 3, inner: q.ip()}
		b.passUnchanged(progEndpointIngress, unreach.frame())
		stray := unreach
		stray.inner = pkt4{src: ipA, dst: ipB, proto: 17, sport: 40004, dport: 5353}.ip()
		b.dropped(progEndpointIngress, stray.frame(), "icc")
	})
	t.Run("ipv6", func(t *testing.T) {
		out := pkt6{srcMAC: macA, dstMAC: macB, src: ipA6, dst: ipB6, next: 6, sport: 41000, dport: 5432, tcpFlags: syn}
		back := pkt6{srcMAC: macB, dstMAC: macA, src: ipB6, dst: ipA6, next: 6, sport: 5432, dport: 41000, tcpFlags: synack}
		b.dropped(progEndpointIngress, back.frame(), "icc")
		f.passUnchanged(progEndpointIngress, out.frame())
		b.passUnchanged(progEndpointIngress, back.frame())
		opens := back
		opens.tcpFlags = syn
		b.dropped(progEndpointIngress, opens.frame(), "icc")
		other := back
		other.dport = 80
		b.dropped(progEndpointIngress, other.frame(), "icc")
		// An ICMPv6 error from B about A's packet reaches A.
		b.passUnchanged(progEndpointIngress, pkt6{srcMAC: macB, dstMAC: macA, src: ipB6, dst: ipA6, next: 58, icmpType: 1, payload: out.ip()}.frame())
		// The flow is B's way back only: from outside, forging B's address,
		// it is no reply to anything (the uplink program).
		f.dropped(progUplinkIngress, pkt6{src: ipB6, dst: ipA6, next: 6, sport: 5432, dport: 41000, tcpFlags: synack}.frame(), "inbound")
	})
	t.Run("unlink", func(t *testing.T) {
		f.del(linkEntries(link, ifA, ifB))
		if _, err := flushCT(f.d.maps[mapFlows4], []flushRule{{link: true, addr: ipA, peer: ipB}}); err != nil {
			t.Fatal(err)
		}
		if _, err := flushCT6(f.d.maps[mapTrack6], []flushRule{{link: true, addr: ipA6, peer: ipB6}}); err != nil {
			t.Fatal(err)
		}
		for k, v := range f.ct() {
			if v.Flags&ctLink != 0 {
				t.Fatalf("link flow left after unlink: %+v", k)
			}
		}
		b.dropped(progEndpointIngress, tcp4(ipB, ipA, macB, macA, 5432, 40000, ack), "icc")
		b.dropped(progEndpointIngress, pkt6{srcMAC: macB, dstMAC: macA, src: ipB6, dst: ipA6, next: 6, sport: 5432, dport: 41000, tcpFlags: ack}.frame(), "icc")
		f.dropped(progEndpointIngress, tcp4(ipA, ipB, macA, macB, 40000, 5432, ack), "icc")
	})
}
