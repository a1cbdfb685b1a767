package ebpf

import (
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func monoNow(t *testing.T) uint64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		t.Fatal(err)
	}
	return uint64(ts.Nano())
}

// requireTimeout checks that a CT half expires about d from now.
func requireTimeout(t *testing.T, e bpfCtEntry, d time.Duration) {
	t.Helper()
	left := time.Duration(e.Expires - monoNow(t))
	if left > d || left < d-5*time.Second {
		t.Fatalf("entry expires in %v, want about %v (state %#x)", left, d, e.State)
	}
}

func want(t *testing.T, got *decoded, src netip.Addr, sport uint16, dst netip.Addr, dport uint16) {
	t.Helper()
	if got.src != src || got.sport != sport || got.dst != dst || got.dport != dport {
		t.Fatalf("got %v:%d -> %v:%d, want %v:%d -> %v:%d", got.src, got.sport, got.dst, got.dport, src, sport, dst, dport)
	}
}

// TestMasquerade covers B1 (TCP, UDP, ICMP echo) and the CT pair.
func TestMasquerade(t *testing.T) {
	f := newFixture(t, fixtureOpts{icc: true, masquerade: true})
	for _, tc := range []struct {
		name  string
		proto uint8
		icmp  bool
	}{{"tcp", 6, false}, {"udp", 17, false}, {"icmp", 1, true}} {
		t.Run(tc.name, func(t *testing.T) {
			out := pkt4{srcMAC: macA, src: ipA, dst: ipExt, proto: tc.proto, sport: 40000, dport: 443, tcpFlags: 0x02}
			if tc.icmp {
				out.icmpType, out.dport = 8, 0
			}
			got := f.pass(progUplinkEgress, out.frame())
			want(t, got, ipNode, 40000, ipExt, out.dport)

			ct := f.ct()
			fwd, ok := ct[ctKey(ipA, 40000, ipExt, out.dport, tc.proto)]
			if !ok || fwd.Flags&ctSNAT == 0 || fwd.Hooks != hookUplinkEgress {
				t.Fatalf("forward half %+v (found %v)", fwd, ok)
			}
			rk := ctKey(ipExt, out.dport, ipNode, 40000, tc.proto)
			if tc.icmp {
				rk = ctKey(ipExt, 0, ipNode, 40000, 1) // the reply carries the id as "destination port"
			}
			rev, ok := ct[rk]
			if !ok || rev.Flags&ctReverse == 0 || rev.Hooks != hookUplinkIngress {
				t.Fatalf("reverse half %+v (found %v) in %v", rev, ok, ct)
			}

			reply := pkt4{dstMAC: macGW, src: ipExt, dst: ipNode, proto: tc.proto, sport: out.dport, dport: 40000, tcpFlags: 0x12}
			if tc.icmp {
				reply.icmpType, reply.sport = 0, 40000
			}
			got = f.pass(progUplinkIngress, reply.frame())
			if tc.icmp {
				if got.dst != ipA || got.sport != 40000 || got.src != ipExt {
					t.Fatalf("echo reply %+v", got)
				}
				return
			}
			want(t, got, ipExt, out.dport, ipA, 40000)
		})
	}
}

// TestSourcePortCollision is B4: two containers, same source port, same
// destination: both flows work, on different ports of the node.
func TestSourcePortCollision(t *testing.T) {
	f := newFixture(t, fixtureOpts{icc: true, masquerade: true})
	a := pkt4{srcMAC: macA, src: ipA, dst: ipExt, proto: 17, sport: 5000, dport: 53, payload: []byte("query")}
	b := a
	b.srcMAC, b.src = macB, ipB
	ga := f.pass(progUplinkEgress, a.frame())
	gb := f.pass(progUplinkEgress, b.frame())
	if ga.sport != 5000 {
		t.Fatalf("first flow moved off its free port: %d", ga.sport)
	}
	if gb.sport == 5000 || gb.sport < 32768 || gb.sport > 60999 {
		t.Fatalf("second flow got port %d, want a free port in 32768-60999", gb.sport)
	}
	for _, c := range []struct {
		port uint16
		dst  netip.Addr
	}{{ga.sport, ipA}, {gb.sport, ipB}} {
		r := pkt4{src: ipExt, dst: ipNode, proto: 17, sport: 53, dport: c.port, payload: []byte("answer")}
		want(t, f.pass(progUplinkIngress, r.frame()), ipExt, 53, c.dst, 5000)
	}
	// Later packets of either flow keep their translation.
	want(t, f.pass(progUplinkEgress, b.frame()), ipNode, gb.sport, ipExt, 53)
}

// TestLocalPortsAvoided: with Linux's default ranges (the node's ephemeral
// ports 32768-60999, SNAT's 1024-32767), a flow whose source port is one
// the node might use for its own connections leaves from a port of the SNAT
// range, and its replies find it; other ports are kept. Hairpin flows to
// the container itself, presented from the gateway like the node's own
// connections to published ports, move the same way.
func TestLocalPortsAvoided(t *testing.T) {
	def := DefaultConfig()
	f := newFixture(t, fixtureOpts{icc: true, masquerade: true, cfg: func(c *Config) {
		c.NATPortMin, c.NATPortMax = def.NATPortMin, def.NATPortMax
		c.LocalPortMin, c.LocalPortMax = def.LocalPortMin, def.LocalPortMax
	}})
	inSNAT := func(what string, port uint16) {
		t.Helper()
		if port < def.NATPortMin || port > def.NATPortMax {
			t.Fatalf("%s left from port %d, want one of %d-%d", what, port, def.NATPortMin, def.NATPortMax)
		}
	}
	for _, proto := range []uint8{6, 17} {
		out := pkt4{srcMAC: macA, src: ipA, dst: ipExt, proto: proto, sport: 40000, dport: 443, tcpFlags: 0x02, payload: []byte("q")}
		got := f.pass(progUplinkEgress, out.frame())
		inSNAT("a flow from port 40000", got.sport)
		want(t, got, ipNode, got.sport, ipExt, 443)
		reply := pkt4{src: ipExt, dst: ipNode, proto: proto, sport: 443, dport: got.sport, tcpFlags: 0x12, payload: []byte("a")}
		want(t, f.pass(progUplinkIngress, reply.frame()), ipExt, 443, ipA, 40000)
		want(t, f.pass(progUplinkEgress, out.frame()), ipNode, got.sport, ipExt, 443) // and it stays
	}
	echo := pkt4{srcMAC: macA, src: ipA, dst: ipExt, proto: 1, icmpType: 8, sport: 40001}
	inSNAT("an echo request with id 40001", f.pass(progUplinkEgress, echo.frame()).sport)

	kept := pkt4{srcMAC: macA, src: ipA, dst: ipExt, proto: 17, sport: 5000, dport: 53, payload: []byte("q")}
	want(t, f.pass(progUplinkEgress, kept.frame()), ipNode, 5000, ipExt, 53)
	high := kept
	high.sport = 61000
	want(t, f.pass(progUplinkEgress, high.frame()), ipNode, 61000, ipExt, 53)

	f.port("self", f.a, ifA, 6, netip.Addr{}, 8081, 8081, 81)
	self := pkt4{srcMAC: macA, src: ipA, dst: ipNode, proto: 6, sport: 42001, dport: 8081, tcpFlags: 0x02}
	got := f.pass(progEndpointIngress, self.frame())
	inSNAT("a hairpin flow to itself from port 42001", got.sport)
	want(t, got, ipGW, got.sport, ipA, 81)
	reply := pkt4{srcMAC: macA, src: ipA, dst: ipGW, proto: 6, sport: 81, dport: got.sport, tcpFlags: 0x12}
	want(t, f.pass(progEndpointIngress, reply.frame()), ipNode, 8081, ipA, 42001)
}

// TestNATExhaustion: with a one-port range and the port taken, a new flow is
// dropped and counted; once the pair holding the port expired, the datapath
// takes it over.
func TestNATExhaustion(t *testing.T) {
	f := newFixture(t, fixtureOpts{icc: true, masquerade: true, cfg: func(c *Config) {
		c.NATPortMin, c.NATPortMax, c.NATRetries = 40000, 40000, 4
	}})
	a := pkt4{srcMAC: macA, src: ipA, dst: ipExt, proto: 17, sport: 40000, dport: 53}
	b := a
	b.srcMAC, b.src = macB, ipB
	f.pass(progUplinkEgress, a.frame())
	f.dropped(progUplinkEgress, b.frame(), "nat-ports-exhausted")

	// Age A's pair.
	m := f.d.maps[mapFlows4]
	for _, k := range []bpfCtKey{ctKey(ipA, 40000, ipExt, 53, 17), ctKey(ipExt, 53, ipNode, 40000, 17)} {
		var e bpfCtEntry
		if err := m.Lookup(k, &e); err != nil {
			t.Fatal(err)
		}
		e.Expires = 1
		if err := m.Update(k, e, 0); err != nil {
			t.Fatal(err)
		}
	}
	want(t, f.pass(progUplinkEgress, b.frame()), ipNode, 40000, ipExt, 53)
	if _, ok := f.ct()[ctKey(ipA, 40000, ipExt, 53, 17)]; ok {
		t.Fatal("the expired pair's forward half is still there")
	}
}

// TestUDPZeroChecksum: a UDP datagram without checksum keeps none.
func TestUDPZeroChecksum(t *testing.T) {
	f := newFixture(t, fixtureOpts{icc: true, masquerade: true})
	p := pkt4{srcMAC: macA, src: ipA, dst: ipExt, proto: 17, sport: 6000, dport: 53, noUDPCsum: true, payload: []byte("x")}
	got := f.pass(progUplinkEgress, p.frame())
	if got.udpCsum != 0 {
		t.Fatalf("UDP checksum %#04x, want 0", got.udpCsum)
	}
}

// TestSNATAddress is B2 and B3: a network or an endpoint with a fixed source
// address, and a routed network whose containers keep theirs.
func TestSNATAddress(t *testing.T) {
	netSNAT := netip.MustParseAddr("192.0.2.100")
	epSNAT := netip.MustParseAddr("192.0.2.200")
	out := pkt4{srcMAC: macA, src: ipA, dst: ipExt, proto: 6, sport: 41000, dport: 80, tcpFlags: 0x02}
	t.Run("network", func(t *testing.T) {
		f := newFixture(t, fixtureOpts{icc: true, masquerade: true, netSNAT: netSNAT})
		want(t, f.pass(progUplinkEgress, out.frame()), netSNAT, 41000, ipExt, 80)
	})
	t.Run("endpoint", func(t *testing.T) {
		f := newFixture(t, fixtureOpts{icc: true, masquerade: true, netSNAT: netSNAT, epSNAT: epSNAT})
		want(t, f.pass(progUplinkEgress, out.frame()), epSNAT, 41000, ipExt, 80)
		// Published ports answer on the endpoint's address (it is a node address).
		f.port("p", f.a, ifA, 6, netip.Addr{}, 8080, 8080, 80)
		in := pkt4{src: ipExt, dst: epSNAT, proto: 6, sport: 50000, dport: 8080, tcpFlags: 0x02}
		want(t, f.pass(progUplinkIngress, in.frame()), ipExt, 50000, ipA, 80)
	})
	t.Run("routed", func(t *testing.T) {
		f := newFixture(t, fixtureOpts{icc: true, masquerade: false})
		f.passUnchanged(progUplinkEgress, out.frame())
		// B12: the reply comes in, a stranger does not.
		reply := pkt4{src: ipExt, dst: ipA, proto: 6, sport: 80, dport: 41000, tcpFlags: 0x12}
		f.passUnchanged(progUplinkIngress, reply.frame())
		stranger := pkt4{src: ipExt, dst: ipA, proto: 6, sport: 80, dport: 22, tcpFlags: 0x02}
		f.dropped(progUplinkIngress, stranger.frame(), "inbound")
	})
	t.Run("no-uplink-address", func(t *testing.T) {
		f := newFixture(t, fixtureOpts{icc: true, masquerade: true})
		f.del(uplinkEntries(ifUplink, nil)[:1])
		f.dropped(progUplinkEgress, out.frame(), "no-snat-address")
	})
}

// TestPublishedPorts covers B6, B7, B8, B11 and B12.
func TestPublishedPorts(t *testing.T) {
	f := newFixture(t, fixtureOpts{icc: true, masquerade: true})
	f.port("web", f.a, ifA, 6, netip.Addr{}, 8080, 8080, 80)
	f.port("range", f.a, ifA, 17, netip.Addr{}, 8000, 8999, 9000)
	f.port("sctp", f.a, ifA, 132, netip.Addr{}, 3868, 3868, 3868)
	f.port("only", f.b, ifB, 6, ipNode2, 9443, 9443, 443)
	f.port("lo", f.b, ifB, 6, netip.MustParseAddr("127.0.0.1"), 5000, 5000, 5000)
	f.put(uplinkEntries(ifUplink+100, []netip.Addr{ipNode2})) // a second node address

	t.Run("tcp", func(t *testing.T) {
		syn := pkt4{src: ipExt, dst: ipNode, proto: 6, sport: 50000, dport: 8080, tcpFlags: 0x02}
		want(t, f.pass(progUplinkIngress, syn.frame()), ipExt, 50000, ipA, 80)
		ct := f.ct()
		fwd, ok := ct[ctKey(ipExt, 50000, ipNode, 8080, 6)]
		if !ok || fwd.Flags != ctDNAT || fwd.Hooks != hookUplinkIngress || fwd.Ifindex != ifA {
			t.Fatalf("forward half %+v", fwd)
		}
		rev, ok := ct[ctKey(ipA, 80, ipExt, 50000, 6)]
		if !ok || rev.Hooks != hookEndpointIngress {
			t.Fatalf("reverse half %+v", rev)
		}
		// The container answers; its endpoint program puts the node address back.
		synack := pkt4{srcMAC: macA, src: ipA, dst: ipExt, proto: 6, sport: 80, dport: 50000, tcpFlags: 0x12}
		want(t, f.pass(progEndpointIngress, synack.frame()), ipNode, 8080, ipExt, 50000)
		// That reply needs no SNAT on the way out.
		f.passUnchanged(progUplinkEgress, pkt4{src: ipNode, dst: ipExt, proto: 6, sport: 8080, dport: 50000, tcpFlags: 0x12}.frame())
		requireTimeout(t, f.ct()[ctKey(ipExt, 50000, ipNode, 8080, 6)], 6*time.Hour)
	})
	t.Run("range", func(t *testing.T) {
		p := pkt4{src: ipExt, dst: ipNode, proto: 17, sport: 1234, dport: 8517, payload: []byte("x")}
		want(t, f.pass(progUplinkIngress, p.frame()), ipExt, 1234, ipA, 9517)
		if n := len(portEntries(&modelPort8000, ifA)); n > 10 {
			t.Fatalf("range 8000-8999 costs %d entries", n)
		}
	})
	t.Run("sctp", func(t *testing.T) {
		p := pkt4{src: ipExt, dst: ipNode, proto: 132, sport: 3868, dport: 3868}
		want(t, f.pass(progUplinkIngress, p.frame()), ipExt, 3868, ipA, 3868)
	})
	t.Run("host-ip", func(t *testing.T) {
		p := pkt4{src: ipExt, dst: ipNode2, proto: 6, sport: 50001, dport: 9443, tcpFlags: 0x02}
		want(t, f.pass(progUplinkIngress, p.frame()), ipExt, 50001, ipB, 443)
		other := p
		other.dst = ipNode
		f.passUnchanged(progUplinkIngress, other.frame()) // B7: not on this address
	})
	t.Run("loopback", func(t *testing.T) {
		p := pkt4{src: ipExt, dst: netip.MustParseAddr("127.0.0.1"), proto: 6, sport: 50002, dport: 5000, tcpFlags: 0x02}
		f.passUnchanged(progUplinkIngress, p.frame()) // B11: left to the kernel, which drops martians
	})
	t.Run("not-local", func(t *testing.T) {
		p := pkt4{src: ipExt, dst: netip.MustParseAddr("203.0.113.50"), proto: 6, sport: 50003, dport: 8080, tcpFlags: 0x02}
		f.passUnchanged(progUplinkIngress, p.frame())
	})
	t.Run("unpublished", func(t *testing.T) {
		f.dropped(progUplinkIngress, pkt4{src: ipExt, dst: ipA, proto: 6, sport: 50004, dport: 80, tcpFlags: 0x02}.frame(), "inbound")
		f.dropped(progUplinkIngress, pkt4{src: ipExt, dst: ipA, proto: 1, icmpType: 8, sport: 9}.frame(), "inbound")
		f.passUnchanged(progUplinkIngress, pkt4{src: ipExt, dst: ipNode, proto: 6, sport: 50004, dport: 81, tcpFlags: 0x02}.frame())
		f.passUnchanged(progUplinkIngress, pkt4{src: ipExt, dst: ipGW, proto: 6, sport: 50004, dport: 22, tcpFlags: 0x02}.frame())
	})
}

// TestHairpin is B9: containers reaching published ports on a node address.
func TestHairpin(t *testing.T) {
	f := newFixture(t, fixtureOpts{icc: false, masquerade: true})
	f.port("b", f.b, ifB, 6, netip.Addr{}, 8080, 8080, 80)
	f.port("self", f.a, ifA, 6, netip.Addr{}, 8081, 8081, 81)

	// To another container (icc=false does not stop published ports).
	p := pkt4{srcMAC: macA, src: ipA, dst: ipNode, proto: 6, sport: 42000, dport: 8080, tcpFlags: 0x02}
	want(t, f.pass(progEndpointIngress, p.frame()), ipA, 42000, ipB, 80)

	// To itself: the source becomes the gateway, and the reply goes back.
	self := pkt4{srcMAC: macA, src: ipA, dst: ipNode, proto: 6, sport: 42001, dport: 8081, tcpFlags: 0x02}
	want(t, f.pass(progEndpointIngress, self.frame()), ipGW, 42001, ipA, 81)
	reply := pkt4{srcMAC: macA, src: ipA, dst: ipGW, proto: 6, sport: 81, dport: 42001, tcpFlags: 0x12}
	want(t, f.pass(progEndpointIngress, reply.frame()), ipNode, 8081, ipA, 42001)

	// A's answer on a connection the node opened and netfilter translated
	// (B10: masqueraded to the gateway) is no hairpin flow, even when the
	// node's client port is a published one: it goes up to conntrack as is.
	before := len(f.ct())
	for _, dst := range []netip.Addr{ipGW, ipNode} {
		answer := pkt4{srcMAC: macA, src: ipA, dst: dst, proto: 6, sport: 80, dport: 8080, tcpFlags: 0x12}
		f.passUnchanged(progEndpointIngress, answer.frame())
		answer.tcpFlags = 0x10
		f.passUnchanged(progEndpointIngress, answer.frame())
	}
	if n := len(f.ct()); n != before {
		t.Fatalf("answers to the node made %d conntrack halves", n-before)
	}
}

// TestICMPErrors is B5: errors about translated flows reach the container
// with the quoted header translated back, and the other way round.
func TestICMPErrors(t *testing.T) {
	f := newFixture(t, fixtureOpts{icc: true, masquerade: true})
	b := pkt4{srcMAC: macB, src: ipB, dst: ipExt, proto: 17, sport: 5000, dport: 53, payload: []byte("q")}
	a := pkt4{srcMAC: macA, src: ipA, dst: ipExt, proto: 17, sport: 5000, dport: 53, payload: []byte("q")}
	f.pass(progUplinkEgress, b.frame())
	ga := f.pass(progUplinkEgress, a.frame()) // A's flow gets another port
	if ga.sport == 5000 {
		t.Fatal("expected a port change")
	}

	t.Run("frag-needed-from-router", func(t *testing.T) {
		sent := pkt4{src: ipNode, dst: ipExt, proto: 17, sport: ga.sport, dport: 53, payload: []byte("q")}
		e := pkt4{src: ipRtr, dst: ipNode, proto: 1, icmpType: 3, icmpCode: 4, inner: sent.ip()}
		got := f.pass(progUplinkIngress, e.frame())
		if got.src != ipRtr || got.dst != ipA {
			t.Fatalf("outer %v -> %v, want %v -> %v", got.src, got.dst, ipRtr, ipA)
		}
		if in := got.inner; in.src != ipA || in.sport != 5000 || in.dst != ipExt || in.dport != 53 {
			t.Fatalf("inner %+v", in)
		}
	})
	t.Run("ttl-exceeded-echo", func(t *testing.T) {
		ping := pkt4{srcMAC: macA, src: ipA, dst: ipExt, proto: 1, icmpType: 8, sport: 777, ttl: 1}
		gp := f.pass(progUplinkEgress, ping.frame())
		sent := pkt4{src: ipNode, dst: ipExt, proto: 1, icmpType: 8, sport: gp.sport, ttl: 1}
		e := pkt4{src: ipRtr, dst: ipNode, proto: 1, icmpType: 11, inner: sent.ip()}
		got := f.pass(progUplinkIngress, e.frame())
		if got.dst != ipA || got.inner.src != ipA || got.inner.sport != 777 {
			t.Fatalf("got %+v inner %+v", got, got.inner)
		}
	})
	t.Run("port-unreachable-from-container", func(t *testing.T) {
		// A published UDP port whose service is down: the container's error
		// leaves with the node's address inside and out.
		f.port("dns", f.a, ifA, 17, netip.Addr{}, 5353, 5353, 53)
		q := pkt4{src: ipExt, dst: ipNode, proto: 17, sport: 6000, dport: 5353, payload: []byte("q")}
		f.pass(progUplinkIngress, q.frame())
		delivered := pkt4{src: ipExt, dst: ipA, proto: 17, sport: 6000, dport: 53, payload: []byte("q")}
		e := pkt4{srcMAC: macA, src: ipA, dst: ipExt, proto: 1, icmpType: 3, icmpCode: 3, inner: delivered.ip()}
		got := f.pass(progEndpointIngress, e.frame())
		if got.src != ipNode || got.inner.dst != ipNode || got.inner.dport != 5353 {
			t.Fatalf("got %+v inner %+v", got, got.inner)
		}
	})
	t.Run("unknown-flow", func(t *testing.T) {
		sent := pkt4{src: ipNode, dst: ipExt, proto: 17, sport: 1, dport: 2}
		e := pkt4{src: ipRtr, dst: ipNode, proto: 1, icmpType: 3, icmpCode: 1, inner: sent.ip()}
		f.passUnchanged(progUplinkIngress, e.frame())
	})
}

// TestFragmentsNAT: later fragments follow the first through NAT.
func TestFragmentsNAT(t *testing.T) {
	f := newFixture(t, fixtureOpts{icc: true, masquerade: true})
	first := pkt4{srcMAC: macA, src: ipA, dst: ipExt, proto: 17, sport: 7000, dport: 53, id: 99, mf: true, payload: make([]byte, 24)}
	want(t, f.pass(progUplinkEgress, first.frame()), ipNode, 7000, ipExt, 53)
	later := first
	later.mf, later.fragOff = false, 4
	got := f.pass(progUplinkEgress, later.frame())
	if got.src != ipNode {
		t.Fatalf("later fragment left with %v", got.src)
	}
	orphan := later
	orphan.id = 100
	f.dropped(progUplinkEgress, orphan.frame(), "fragment")

	// Replies, fragmented too.
	r1 := pkt4{src: ipExt, dst: ipNode, proto: 17, sport: 53, dport: 7000, id: 5, mf: true, payload: make([]byte, 24)}
	want(t, f.pass(progUplinkIngress, r1.frame()), ipExt, 53, ipA, 7000)
	r2 := r1
	r2.mf, r2.fragOff = false, 4
	if got := f.pass(progUplinkIngress, r2.frame()); got.dst != ipA {
		t.Fatalf("later reply fragment to %v", got.dst)
	}
}

// TestConntrackTimeouts follows a TCP flow through its states.
func TestConntrackTimeouts(t *testing.T) {
	f := newFixture(t, fixtureOpts{icc: true, masquerade: true})
	fk, rk := ctKey(ipA, 43000, ipExt, 443, 6), ctKey(ipExt, 443, ipNode, 43000, 6)
	seg := func(flags uint8) []byte {
		return pkt4{srcMAC: macA, src: ipA, dst: ipExt, proto: 6, sport: 43000, dport: 443, tcpFlags: flags}.frame()
	}
	back := func(flags uint8) []byte {
		return pkt4{src: ipExt, dst: ipNode, proto: 6, sport: 443, dport: 43000, tcpFlags: flags}.frame()
	}
	f.pass(progUplinkEgress, seg(0x02))
	requireTimeout(t, f.ct()[fk], 60*time.Second)
	requireTimeout(t, f.ct()[rk], 60*time.Second)
	f.pass(progUplinkIngress, back(0x12))
	requireTimeout(t, f.ct()[fk], 6*time.Hour)
	requireTimeout(t, f.ct()[rk], 6*time.Hour)
	f.pass(progUplinkEgress, seg(0x11)) // FIN one way: still established
	requireTimeout(t, f.ct()[fk], 6*time.Hour)
	f.pass(progUplinkIngress, back(0x11)) // and the other
	requireTimeout(t, f.ct()[fk], 10*time.Second)
	requireTimeout(t, f.ct()[rk], 10*time.Second)
	f.pass(progUplinkEgress, seg(0x02)) // a new SYN on the tuple starts over
	requireTimeout(t, f.ct()[fk], 60*time.Second)
	f.pass(progUplinkIngress, back(0x04)) // RST
	requireTimeout(t, f.ct()[fk], 10*time.Second)

	f.pass(progUplinkEgress, pkt4{srcMAC: macA, src: ipA, dst: ipExt, proto: 17, sport: 43001, dport: 53}.frame())
	requireTimeout(t, f.ct()[ctKey(ipA, 43001, ipExt, 53, 17)], 60*time.Second)
}

// TestUplinkMalformed: what the uplink programs cannot parse is the
// kernel's to judge.
func TestUplinkMalformed(t *testing.T) {
	f := newFixture(t, fixtureOpts{icc: true, masquerade: true})
	bad := pkt4{src: ipExt, dst: ipA, proto: 6, sport: 1, dport: 2, ihl: 3}
	f.passUnchanged(progUplinkIngress, bad.frame())
	f.passUnchanged(progUplinkEgress, pkt4{src: ipA, dst: ipExt, proto: 6, ihl: 4}.frame())
	f.passUnchanged(progUplinkIngress, eth(macGW, macExt, 0x8100, make([]byte, 46)))
	f.passUnchanged(progUplinkIngress, pkt6{src: netip.MustParseAddr("2001:db8::1"), dst: netip.MustParseAddr("2001:db8::2"), next: 6, sport: 1, dport: 22}.frame())
}

// TestIPv6Routed: on a network without masquerade IPv6 is routed, not
// translated (B3), but from outside only replies of flows a container
// opened reach it (B12 for IPv6).
func TestIPv6Routed(t *testing.T) {
	f := newFixture(t, fixtureOpts{icc: true, masquerade: false})
	remote := netip.MustParseAddr("2001:db8::99")
	out := pkt6{srcMAC: macA, src: ipA6, dst: remote, next: 6, sport: 40000, dport: 443, tcpFlags: 0x02}
	f.passUnchanged(progUplinkEgress, out.frame())
	reply := pkt6{src: remote, dst: ipA6, next: 6, sport: 443, dport: 40000, tcpFlags: 0x12}
	f.passUnchanged(progUplinkIngress, reply.frame())
	f.dropped(progUplinkIngress, pkt6{src: remote, dst: ipA6, next: 6, sport: 443, dport: 40001, tcpFlags: 0x02}.frame(), "inbound")
	f.dropped(progUplinkIngress, pkt6{src: remote, dst: ipB6, next: 17, sport: 53, dport: 53}.frame(), "inbound")

	// Echo, and a "packet too big" about the TCP flow (path MTU discovery).
	f.passUnchanged(progUplinkEgress, pkt6{srcMAC: macA, src: ipA6, dst: remote, next: 58, icmpType: 128, sport: 9}.frame())
	f.passUnchanged(progUplinkIngress, pkt6{src: remote, dst: ipA6, next: 58, icmpType: 129, sport: 9}.frame())
	f.dropped(progUplinkIngress, pkt6{src: remote, dst: ipA6, next: 58, icmpType: 128, sport: 9}.frame(), "inbound")
	ptb := pkt6{src: netip.MustParseAddr("2001:db8:ffff::1"), dst: ipA6, next: 58, icmpType: 2, payload: out.ip()}
	f.passUnchanged(progUplinkIngress, ptb.frame())
	stray := ptb
	stray.payload = pkt6{src: ipA6, dst: remote, next: 6, sport: 40002, dport: 443}.ip()
	f.dropped(progUplinkIngress, stray.frame(), "inbound")

	// The gateway is the node's own address.
	f.passUnchanged(progUplinkIngress, pkt6{src: remote, dst: netip.MustParseAddr("fd00:17::1"), next: 6, sport: 1, dport: 22}.frame())

	// TCP flags count for IPv6 too: after FIN both ways the flow times out
	// like a closed one.
	fin := out
	fin.tcpFlags = 0x11
	f.passUnchanged(progUplinkEgress, fin.frame())
	finBack := reply
	finBack.tcpFlags = 0x11
	f.passUnchanged(progUplinkIngress, finBack.frame())
	var e bpfTrack6Entry
	if err := f.d.maps[mapTrack6].Lookup(ct6Key(remote, 443, ipA6, 40000, 6), &e); err != nil {
		t.Fatal(err)
	}
	if e.State&(ctFinFwd|ctFinRev) != ctFinFwd|ctFinRev || time.Duration(e.Expires-monoNow(t)) > 10*time.Second {
		t.Fatalf("after FIN both ways: state %#x, expires in %v", e.State, time.Duration(e.Expires-monoNow(t)))
	}
}

// TestSCTPChecksum: NAT that changes SCTP ports carries the change into the
// CRC32c (B6), for any packet length (the incremental update in
// bpf/lib/crc32c.h multiplies by x^(8n), one factor per bit of n), in both
// directions; a CRC left to offload (zero) stays zero, and a wrong one stays
// wrong.
func TestSCTPChecksum(t *testing.T) {
	f := newFixture(t, fixtureOpts{icc: true, masquerade: true})
	f.port("sctp", f.a, ifA, 132, netip.Addr{}, 8082, 8082, 82)
	// (A test run takes one page of packet at most.)
	for i, n := range []int{0, 4, 20, 333, 1024, 1452, 2047, 3000} {
		sport := uint16(5000 + i)
		in := pkt4{src: ipExt, dst: ipNode, proto: 132, sport: sport, dport: 8082, payload: make([]byte, n)}
		for j := range in.payload {
			in.payload[j] = byte(j * 7)
		}
		got := f.pass(progUplinkIngress, in.frame()) // decode4 checks the CRC32c
		want(t, got, ipExt, sport, ipA, 82)
		if got.sctpCRC == 0 {
			t.Fatalf("%d bytes: CRC32c zeroed", n)
		}
		out := pkt4{srcMAC: macA, src: ipA, dst: ipExt, proto: 132, sport: 82, dport: sport, payload: in.payload}
		want(t, f.pass(progEndpointIngress, out.frame()), ipNode, 8082, ipExt, sport)
	}
	t.Run("offloaded", func(t *testing.T) {
		out := pkt4{srcMAC: macA, src: ipA, dst: ipExt, proto: 132, sport: 82, dport: 5000, sctpNoCRC: true, payload: make([]byte, 16)}
		got := f.pass(progEndpointIngress, out.frame())
		if want(t, got, ipNode, 8082, ipExt, 5000); got.sctpCRC != 0 {
			t.Fatalf("CRC32c left to offload became %#x", got.sctpCRC)
		}
	})
	t.Run("corrupt", func(t *testing.T) {
		in := pkt4{src: ipExt, dst: ipNode, proto: 132, sport: 6000, dport: 8082, payload: make([]byte, 16)}
		frame := in.frame()
		frame[14+20+8] ^= 0x01 // a CRC that was wrong on arrival
		ret, out := f.run(progUplinkIngress, frame)
		if ret != actOK {
			t.Fatalf("verdict %d", ret)
		}
		if _, err := decode4(out); err == nil {
			t.Fatal("a corrupted SCTP packet left NAT with a valid CRC32c")
		}
	})
	t.Run("snat-port-collision", func(t *testing.T) {
		// A and B open associations from the same port to the same peer:
		// the second gets another source port, and a CRC to match.
		a := pkt4{srcMAC: macA, src: ipA, dst: ipExt, proto: 132, sport: 3868, dport: 3868, payload: make([]byte, 40)}
		want(t, f.pass(progUplinkEgress, a.frame()), ipNode, 3868, ipExt, 3868)
		b := a
		b.srcMAC, b.src = macB, ipB
		got := f.pass(progUplinkEgress, b.frame())
		if got.src != ipNode || got.sport == 3868 || got.sctpCRC == 0 {
			t.Fatalf("second association left as %v:%d (crc %#x)", got.src, got.sport, got.sctpCRC)
		}
		back := pkt4{src: ipExt, dst: ipNode, proto: 132, sport: 3868, dport: got.sport, payload: make([]byte, 40)}
		want(t, f.pass(progUplinkIngress, back.frame()), ipExt, 3868, ipB, 3868)
	})
}
