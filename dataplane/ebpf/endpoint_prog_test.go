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
	f.dropped(progEndpointIngress, spoofMAC.frame(), "spoofed-mac")

	spoofIP := good
	spoofIP.src = ipB
	f.dropped(progEndpointIngress, spoofIP.frame(), "spoofed-ip")

	f.passUnchanged(progEndpointIngress, arpFrame(macA, macA, ipA, ipGW))
	f.passUnchanged(progEndpointIngress, arpFrame(macA, macA, netip.IPv4Unspecified(), ipGW)) // probe
	f.dropped(progEndpointIngress, arpFrame(macA, macA, ipB, ipGW), "spoofed-arp")
	f.dropped(progEndpointIngress, arpFrame(macA, macB, ipA, ipGW), "spoofed-arp")
	f.dropped(progEndpointIngress, arpFrame(macA, macA, ipA, ipGW)[:30], "malformed")

	// IPv6: its own address, link-local and DAD's :: pass; another's does not.
	v6 := pkt6{srcMAC: macA, dstMAC: macGW, src: ipA6, dst: netip.MustParseAddr("2001:db8::1"), next: 17, sport: 1, dport: 53}
	f.passUnchanged(progEndpointIngress, v6.frame())
	ll := v6
	ll.src = netip.MustParseAddr("fe80::42:acff:fe11:2")
	f.passUnchanged(progEndpointIngress, ll.frame())
	spoof6 := v6
	spoof6.src = ipB6
	f.dropped(progEndpointIngress, spoof6.frame(), "spoofed-ip")
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
		f.dropped(progEndpointIngress, tcp(ipOther, macGW, 40000, 80), "network-isolation")
		f.passUnchanged(progEndpointIngress, tcp(ipGW2, macGW, 40000, 80))
	})
	t.Run("icc=false", func(t *testing.T) {
		f := newFixture(t, fixtureOpts{icc: false, masquerade: true})
		f.dropped(progEndpointIngress, tcp(ipB, macB, 40000, 22), "link-port")
		f.dropped(progEndpointIngress, tcp(ipB, macGW, 40000, 22), "link-port") // routed through the gateway
		f.dropped(progEndpointIngress, pkt4{srcMAC: macA, dstMAC: macB, src: ipA, dst: ipB, proto: 1, icmpType: 8, sport: 7}.frame(), "link-port")
		f.dropped(progEndpointIngress, tcp(netip.MustParseAddr("172.17.255.255"), macGW, 1, 2), "icc")
		f.dropped(progEndpointIngress, pkt4{srcMAC: macA, dstMAC: net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
			src: ipA, dst: netip.MustParseAddr("255.255.255.255"), proto: 17, sport: 68, dport: 67}.frame(), "icc")
		// A frame for B's MAC with an address that is not B's.
		f.dropped(progEndpointIngress, tcp(ipExt, macB, 40000, 80), "icc")
		// IPv6, global and link-local (B15).
		f.dropped(progEndpointIngress, pkt6{srcMAC: macA, dstMAC: macB, src: ipA6, dst: ipB6, next: 6, sport: 1, dport: 22}.frame(), "link-port")
		f.dropped(progEndpointIngress, pkt6{srcMAC: macA, dstMAC: macB, src: netip.MustParseAddr("fe80::1"),
			dst: netip.MustParseAddr("fe80::2"), next: 17, sport: 1, dport: 22}.frame(), "icc")
		f.dropped(progEndpointIngress, pkt6{srcMAC: macA, dstMAC: net.HardwareAddr{0x33, 0x33, 0, 0, 0, 1}, src: ipA6,
			dst: netip.MustParseAddr("ff02::1"), next: 17, sport: 1, dport: 22}.frame(), "icc")
		// Neighbour discovery and the node itself are always fine.
		f.passUnchanged(progEndpointIngress, pkt6{srcMAC: macA, dstMAC: net.HardwareAddr{0x33, 0x33, 0xff, 0, 0, 3}, src: ipA6,
			dst: netip.MustParseAddr("ff02::1:ff00:3"), next: 58, icmpType: 135}.frame())
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
		f.dropped(progEndpointIngress, tcp(ipB, macB, 40000, 5433), "link-port")
		f.dropped(progEndpointIngress, pkt4{srcMAC: macA, dstMAC: macB, src: ipA, dst: ipB, proto: 17, sport: 40000, dport: 5432}.frame(), "link-port")

		// Now A is the child of B and exposes 8080/tcp: A may only answer from it.
		f.a.Exposed = []model.RPortProto{{Port: 8080, Proto: 6}}
		f.put(linkEntries(&model.RLink{Parent: f.b, Child: f.a, Alias: "web"}, ifB, ifA))
		f.passUnchanged(progEndpointIngress, tcp(ipB, macB, 8080, 51000))
		f.dropped(progEndpointIngress, tcp(ipB, macB, 8081, 51000), "link-port")
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
		f.dropped(progEndpointIngress, orphan.frame(), "unknown-fragment")
		badFirst := first
		badFirst.id, badFirst.dport = 79, 22
		f.dropped(progEndpointIngress, badFirst.frame(), "link-port")
		badLater := later
		badLater.id = 79
		f.dropped(progEndpointIngress, badLater.frame(), "link-port")
	})
}
