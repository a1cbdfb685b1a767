package ebpf

import (
	"net/netip"
	"testing"
	"time"

	"github.com/portcullis/portcullis/dataplane/model"
)

var (
	ipNode6  = netip.MustParseAddr("2001:db8:1::1") // the uplink's IPv6 address
	ipNode6b = netip.MustParseAddr("2001:db8:1::10")
	ipExt6   = netip.MustParseAddr("2001:db8:99::7")
)

func want6(t *testing.T, got *decoded, src netip.Addr, sport uint16, dst netip.Addr, dport uint16) {
	t.Helper()
	want(t, got, src, sport, dst, dport)
}

func (f *fixture) nat6() map[bpfCt6Key]bpfCt6Entry {
	f.t.Helper()
	hs, err := readNAT6(f.d.maps[mapFlows6])
	if err != nil {
		f.t.Fatal(err)
	}
	out := map[bpfCt6Key]bpfCt6Entry{}
	for _, h := range hs {
		out[h.k] = h.v
	}
	return out
}

func ct6Key(src netip.Addr, sport uint16, dst netip.Addr, dport uint16, proto uint8) bpfCt6Key {
	return bpfCt6Key{Saddr: src.As16(), Daddr: dst.As16(), Sport: be16(sport), Dport: be16(dport), Proto: proto}
}

// TestPublishedPorts6 is B6 over IPv6: a wildcard mapping answers on the
// node's IPv6 addresses for an endpoint that has one, a mapping on an IPv6
// host address only there, the client's address is kept, and the replies
// are translated back.
func TestPublishedPorts6(t *testing.T) {
	f := newFixture(t, fixtureOpts{icc: false, masquerade: true})
	f.put(uplinkEntries(ifUplink, []netip.Addr{ipNode, ipNode6}))
	f.port("web", f.a, ifA, 6, netip.Addr{}, 8080, 8080, 80)
	f.port("dns", f.a, ifA, 17, netip.Addr{}, 5300, 5309, 5400)
	f.port("sctp", f.a, ifA, 132, netip.Addr{}, 8082, 8082, 82)
	f.port("only6", f.b, ifB, 6, ipNode6b, 9443, 9443, 443)
	f.port("only4", f.b, ifB, 6, ipNode, 9444, 9444, 444)
	f.port("v4-endpoint", f.c, ifC, 6, netip.Addr{}, 7000, 7000, 70) // C has no IPv6 address

	t.Run("tcp", func(t *testing.T) {
		syn := pkt6{src: ipExt6, dst: ipNode6, next: 6, sport: 50000, dport: 8080, tcpFlags: 0x02}
		want6(t, f.pass6(progUplinkIngress, syn.frame()), ipExt6, 50000, ipA6, 80)
		n := f.nat6()
		fwd, ok := n[ct6Key(ipExt6, 50000, ipNode6, 8080, 6)]
		if !ok || fwd.Flags != ctDNAT || fwd.Hooks != hookUplinkIngress || fwd.Ifindex != ifA {
			t.Fatalf("forward half %+v (%v)", fwd, ok)
		}
		rev, ok := n[ct6Key(ipA6, 80, ipExt6, 50000, 6)]
		if !ok || rev.Flags != ctDNAT|ctReverse || rev.Hooks != hookEndpointIngress {
			t.Fatalf("reverse half %+v (%v)", rev, ok)
		}
		// The reply, on an icc=false network: established, no policy.
		synack := pkt6{srcMAC: macA, src: ipA6, dst: ipExt6, next: 6, sport: 80, dport: 50000, tcpFlags: 0x12}
		want6(t, f.pass6(progEndpointIngress, synack.frame()), ipNode6, 8080, ipExt6, 50000)
		// It leaves the node as the node's own traffic.
		f.passUnchanged(progUplinkEgress, pkt6{src: ipNode6, dst: ipExt6, next: 6, sport: 8080, dport: 50000, tcpFlags: 0x12}.frame())
		ack := syn
		ack.tcpFlags = 0x10
		want6(t, f.pass6(progUplinkIngress, ack.frame()), ipExt6, 50000, ipA6, 80)
		if e := f.nat6()[ct6Key(ipExt6, 50000, ipNode6, 8080, 6)]; e.State&ctReplied == 0 ||
			time.Duration(e.Expires-monoNow(t)) < time.Hour {
			t.Fatalf("established flow: state %#x, expires in %v", e.State, time.Duration(e.Expires-monoNow(t)))
		}
		fin := ack
		fin.tcpFlags = 0x11
		f.pass6(progUplinkIngress, fin.frame())
		if e := f.nat6()[ct6Key(ipA6, 80, ipExt6, 50000, 6)]; e.State&ctFinFwd == 0 {
			t.Fatalf("FIN not recorded on the partner half: state %#x", e.State)
		}
	})
	t.Run("icmpv6-errors", func(t *testing.T) {
		router := netip.MustParseAddr("2001:db8:99::1")
		// A router on the path tells the node that A's answer (sent as the
		// node's) is too big: A gets it, about its own packet.
		sent := pkt6{src: ipNode6, dst: ipExt6, next: 6, sport: 8080, dport: 50000, tcpFlags: 0x10, payload: make([]byte, 64)}
		ptb := pkt6{src: router, dst: ipNode6, next: 58, icmpType: 2, payload: sent.ip()}
		got := f.pass6(progUplinkIngress, ptb.frame()) // decode6 checks the ICMPv6 checksum
		if got.src != router || got.dst != ipA6 || got.icmpType != 2 || got.inner == nil {
			t.Fatalf("packet too big on the uplink: %+v", got)
		}
		if in := got.inner; in.src != ipA6 || in.sport != 80 || in.dst != ipExt6 || in.dport != 50000 {
			t.Fatalf("quoted packet %+v, want [%v]:80 -> [%v]:50000", in, ipA6, ipExt6)
		}
		// A's own error about the client's packet leaves as the node's.
		recv := pkt6{src: ipExt6, dst: ipA6, next: 6, sport: 50000, dport: 80, tcpFlags: 0x10}
		unreach := pkt6{srcMAC: macA, src: ipA6, dst: ipExt6, next: 58, icmpType: 1, payload: recv.ip()}
		got = f.pass6(progEndpointIngress, unreach.frame())
		if got.src != ipNode6 || got.dst != ipExt6 || got.inner == nil {
			t.Fatalf("unreachable from the container: %+v", got)
		}
		if in := got.inner; in.src != ipExt6 || in.sport != 50000 || in.dst != ipNode6 || in.dport != 8080 {
			t.Fatalf("quoted packet %+v, want [%v]:50000 -> [%v]:8080", in, ipExt6, ipNode6)
		}
		// An error about no flow of ours is the node's business.
		other := sent
		other.dport = 50999
		f.passUnchanged(progUplinkIngress, pkt6{src: router, dst: ipNode6, next: 58, icmpType: 2, payload: other.ip()}.frame())
	})
	t.Run("udp-range", func(t *testing.T) {
		q := pkt6{src: ipExt6, dst: ipNode6, next: 17, sport: 1234, dport: 5305, payload: []byte("query")}
		want6(t, f.pass6(progUplinkIngress, q.frame()), ipExt6, 1234, ipA6, 5405)
		r := pkt6{srcMAC: macA, src: ipA6, dst: ipExt6, next: 17, sport: 5405, dport: 1234, payload: []byte("answer")}
		want6(t, f.pass6(progEndpointIngress, r.frame()), ipNode6, 5305, ipExt6, 1234)
	})
	t.Run("sctp", func(t *testing.T) {
		init := pkt6{src: ipExt6, dst: ipNode6, next: 132, sport: 5000, dport: 8082, payload: make([]byte, 20)}
		got := f.pass6(progUplinkIngress, init.frame()) // decode6 checks the CRC32c
		want6(t, got, ipExt6, 5000, ipA6, 82)
		if got.sctpCRC == 0 {
			t.Fatal("CRC32c zeroed")
		}
		ack := pkt6{srcMAC: macA, src: ipA6, dst: ipExt6, next: 132, sport: 82, dport: 5000, payload: make([]byte, 36)}
		want6(t, f.pass6(progEndpointIngress, ack.frame()), ipNode6, 8082, ipExt6, 5000)
	})
	t.Run("host-ip", func(t *testing.T) {
		f.put(uplinkEntries(ifUplink+100, []netip.Addr{ipNode6b}))
		p := pkt6{src: ipExt6, dst: ipNode6b, next: 6, sport: 50001, dport: 9443, tcpFlags: 0x02}
		want6(t, f.pass6(progUplinkIngress, p.frame()), ipExt6, 50001, ipB6, 443)
		other := p
		other.dst = ipNode6
		f.passUnchanged(progUplinkIngress, other.frame()) // B7: not on this address
		// A mapping on an IPv4 host address has no IPv6 side.
		f.passUnchanged(progUplinkIngress, pkt6{src: ipExt6, dst: ipNode6, next: 6, sport: 50002, dport: 9444, tcpFlags: 0x02}.frame())
		// Nor has one of an endpoint without an IPv6 address.
		f.passUnchanged(progUplinkIngress, pkt6{src: ipExt6, dst: ipNode6, next: 6, sport: 50003, dport: 7000, tcpFlags: 0x02}.frame())
	})
	t.Run("not-published", func(t *testing.T) {
		f.passUnchanged(progUplinkIngress, pkt6{src: ipExt6, dst: netip.MustParseAddr("::1"), next: 6, sport: 50004, dport: 8080, tcpFlags: 0x02}.frame())
		f.passUnchanged(progUplinkIngress, pkt6{src: ipExt6, dst: netip.MustParseAddr("2001:db8:77::1"), next: 6, sport: 50005, dport: 8080, tcpFlags: 0x02}.frame())
		f.passUnchanged(progUplinkIngress, pkt6{src: ipExt6, dst: ipNode6, next: 6, sport: 50006, dport: 8081, tcpFlags: 0x02}.frame())
		f.dropped(progUplinkIngress, pkt6{src: ipExt6, dst: ipA6, next: 6, sport: 50007, dport: 80, tcpFlags: 0x02}.frame(), "inbound")
		// A container's packet from the published port that is no reply
		// goes through policy (icc=false: not to B).
		f.dropped(progEndpointIngress, pkt6{srcMAC: macA, dstMAC: macB, src: ipA6, dst: ipB6, next: 6, sport: 80, dport: 50000, tcpFlags: 0x12}.frame(), "icc")
	})
	t.Run("flush-and-gc", func(t *testing.T) {
		n, err := flushNAT6(f.d.maps[mapFlows6], []flushRule{{port: true, addr: ipA6, proto: 6, lo: 8080, hi: 8080}})
		if err != nil || n != 2 {
			t.Fatalf("flush tcp 8080: %d halves, %v", n, err)
		}
		if _, ok := f.nat6()[ct6Key(ipExt6, 1234, ipNode6, 5305, 17)]; !ok {
			t.Fatal("flush of tcp 8080 took the udp flow too")
		}
		if n, err := flushNAT6(f.d.maps[mapFlows6], []flushRule{{addr: ipB6}}); err != nil || n != 2 {
			t.Fatalf("flush endpoint b: %d halves, %v", n, err)
		}
		res, err := nat6Table(f.d.maps[mapFlows6]).collect(monoNow(t)+uint64(2*time.Minute), nil)
		if err != nil || res.Deleted != 4 || res.Entries != 4 {
			t.Fatalf("gc: %+v, %v", res, err)
		}
	})
}

func TestPortEntriesFamilies(t *testing.T) {
	ep := &model.REndpoint{IP: ipA, IP6: ipA6}
	count := func(p *model.RPort) (v4, v6 int) {
		for _, e := range portEntries(p, ifA) {
			switch e.m {
			case mapPorts:
				v4++
			case mapPorts6:
				v6++
			}
		}
		return
	}
	for _, tc := range []struct {
		name   string
		p      model.RPort
		v4, v6 int
	}{
		{"wildcard", model.RPort{EP: ep, Proto: 6, HostLo: 80, HostHi: 80, Lo: 80}, 1, 1},
		{"wildcard, no ipv6", model.RPort{EP: &model.REndpoint{IP: ipA}, Proto: 6, HostLo: 80, HostHi: 80, Lo: 80}, 1, 0},
		{"ipv4 host", model.RPort{EP: ep, Proto: 6, HostIP: ipNode, HostLo: 80, HostHi: 80, Lo: 80}, 1, 0},
		{"ipv6 host", model.RPort{EP: ep, Proto: 6, HostIP: ipNode6, HostLo: 80, HostHi: 80, Lo: 80}, 0, 1},
		{"ipv6 host, range", model.RPort{EP: ep, Proto: 17, HostIP: ipNode6, HostLo: 8000, HostHi: 8999, Lo: 8000}, 0, len(portBlocks(8000, 8999))},
	} {
		if v4, v6 := count(&tc.p); v4 != tc.v4 || v6 != tc.v6 {
			t.Errorf("%s: %d IPv4 and %d IPv6 entries, want %d and %d", tc.name, v4, v6, tc.v4, tc.v6)
		}
	}
}
