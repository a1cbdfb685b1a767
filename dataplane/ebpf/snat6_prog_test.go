package ebpf

import (
	"net/netip"
	"testing"
	"time"
)

// masq6Fixture: network pc0 (A and B have IPv6 addresses) masquerades, and
// the uplink has an IPv4 and an IPv6 address.
func masq6Fixture(t *testing.T) *fixture {
	f := newFixture(t, fixtureOpts{icc: true, masquerade: true})
	f.put(uplinkEntries(ifUplink, []netip.Addr{ipNode, netip.MustParseAddr("fe80::1"), ipNode6}))
	return f
}

// TestMasquerade6 is B1 over IPv6: TCP, UDP and echo from a container leave
// from the uplink's IPv6 address, with the source port (echo id) kept when
// it is free and not one of the node's ephemeral ports; the replies reach
// the container; nothing else from outside does (B12).
func TestMasquerade6(t *testing.T) {
	f := masq6Fixture(t)
	for _, tc := range []struct {
		name string
		out  pkt6
		back pkt6
	}{
		{"tcp", pkt6{src: ipA6, dst: ipExt6, next: 6, sport: 40000, dport: 443, tcpFlags: 0x02},
			pkt6{src: ipExt6, dst: ipNode6, next: 6, sport: 443, dport: 40000, tcpFlags: 0x12}},
		{"udp", pkt6{src: ipA6, dst: ipExt6, next: 17, sport: 40001, dport: 53, payload: []byte("query")},
			pkt6{src: ipExt6, dst: ipNode6, next: 17, sport: 53, dport: 40001, payload: []byte("answer")}},
		{"echo", pkt6{src: ipA6, dst: ipExt6, next: 58, icmpType: 128, sport: 40002},
			pkt6{src: ipExt6, dst: ipNode6, next: 58, icmpType: 129, sport: 40002}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// decode6 checks the checksums, pseudo header included.
			want6(t, f.pass6(progUplinkEgress, tc.out.frame()), ipNode6, tc.out.sport, ipExt6, tc.out.dport)
			// Again: the established flow.
			want6(t, f.pass6(progUplinkEgress, tc.out.frame()), ipNode6, tc.out.sport, ipExt6, tc.out.dport)
			want6(t, f.pass6(progUplinkIngress, tc.back.frame()), ipExt6, tc.back.sport, ipA6, tc.back.dport)
		})
	}
	n := f.nat6()
	fwd, ok := n[ct6Key(ipA6, 40000, ipExt6, 443, 6)]
	if !ok || fwd.Flags != ctSNAT || fwd.Hooks != hookUplinkEgress || fwd.Nat != ct6Key(ipNode6, 40000, ipExt6, 443, 6) {
		t.Fatalf("forward half %+v (%v)", fwd, ok)
	}
	rev, ok := n[ct6Key(ipExt6, 443, ipNode6, 40000, 6)]
	if !ok || rev.Flags != ctSNAT|ctReverse || rev.Hooks != hookUplinkIngress || rev.State&ctReplied == 0 {
		t.Fatalf("reverse half %+v (%v)", rev, ok)
	}
	// The echo request's tuple has the id as its source port, the reply's
	// as its destination port.
	if _, ok := n[ct6Key(ipExt6, 0, ipNode6, 40002, 58)]; !ok {
		t.Fatalf("no reverse half for the echo: %v", n)
	}

	t.Run("ephemeral-port", func(t *testing.T) {
		// 62000 is one of the node's own ports: the flow gets one of the
		// SNAT range instead.
		got := f.pass6(progUplinkEgress, pkt6{src: ipA6, dst: ipExt6, next: 17, sport: 62000, dport: 53}.frame())
		if got.src != ipNode6 || got.sport < 32768 || got.sport > 60999 || got.dport != 53 {
			t.Fatalf("left as [%v]:%d -> :%d, want [%v]:<32768-60999> -> :53", got.src, got.sport, got.dport, ipNode6)
		}
		back := pkt6{src: ipExt6, dst: ipNode6, next: 17, sport: 53, dport: got.sport}
		want6(t, f.pass6(progUplinkIngress, back.frame()), ipExt6, 53, ipA6, 62000)
	})
	t.Run("unsolicited", func(t *testing.T) {
		// From outside only replies: to the container's own address, or
		// to the node's on a port no flow has, nothing reaches A.
		f.dropped(progUplinkIngress, pkt6{src: ipExt6, dst: ipA6, next: 6, sport: 443, dport: 40000, tcpFlags: 0x12}.frame(), "inbound")
		f.passUnchanged(progUplinkIngress, pkt6{src: ipExt6, dst: ipNode6, next: 6, sport: 443, dport: 40009, tcpFlags: 0x12}.frame())
		f.passUnchanged(progUplinkIngress, pkt6{src: ipExt6, dst: ipNode6, next: 6, sport: 444, dport: 40000, tcpFlags: 0x12}.frame())
	})
	t.Run("node-traffic", func(t *testing.T) {
		// The node's own IPv6 traffic is not touched.
		f.passUnchanged(progUplinkEgress, pkt6{src: ipNode6, dst: ipExt6, next: 6, sport: 40000, dport: 443, tcpFlags: 0x02}.frame())
	})
	if d := f.drops(); d["rewrite-failed"] != 0 || d["nat-conflict"] != 0 {
		t.Fatalf("drops %v", d)
	}
}

// TestMasquerade6Collision is B4 over IPv6: two containers opening flows
// from the same source port to the same peer both work, the second from
// another port, and each gets its own replies.
func TestMasquerade6Collision(t *testing.T) {
	f := masq6Fixture(t)
	for _, proto := range []uint8{6, 17} {
		a := pkt6{src: ipA6, dst: ipExt6, next: proto, sport: 40100, dport: 443, tcpFlags: 0x02}
		want6(t, f.pass6(progUplinkEgress, a.frame()), ipNode6, 40100, ipExt6, 443)
		b := a
		b.src = ipB6
		got := f.pass6(progUplinkEgress, b.frame())
		if got.src != ipNode6 || got.sport == 40100 || got.sport < 32768 || got.sport > 60999 {
			t.Fatalf("proto %d: B's flow left as [%v]:%d", proto, got.src, got.sport)
		}
		back := pkt6{src: ipExt6, dst: ipNode6, next: proto, sport: 443, dport: 40100, tcpFlags: 0x12}
		want6(t, f.pass6(progUplinkIngress, back.frame()), ipExt6, 443, ipA6, 40100)
		back.dport = got.sport
		want6(t, f.pass6(progUplinkIngress, back.frame()), ipExt6, 443, ipB6, 40100)
	}
}

// TestMasquerade6ICMPErrors is B5 over IPv6: an error about a masqueraded
// flow reaches the container with the quoted packet translated back (path
// MTU discovery: IPv6 routers never fragment), and the container's own
// errors about its flow's packets leave as the node's.
func TestMasquerade6ICMPErrors(t *testing.T) {
	f := masq6Fixture(t)
	router := netip.MustParseAddr("2001:db8:99::1")
	out := pkt6{src: ipA6, dst: ipExt6, next: 6, sport: 40200, dport: 443, tcpFlags: 0x10, payload: make([]byte, 64)}
	f.pass6(progUplinkEgress, out.frame())
	ping := pkt6{src: ipA6, dst: ipExt6, next: 58, icmpType: 128, sport: 62001} // an ephemeral id: it moves
	echoID := f.pass6(progUplinkEgress, ping.frame()).sport
	dns := pkt6{src: ipA6, dst: ipExt6, next: 17, sport: 40201, dport: 53}
	f.pass6(progUplinkEgress, dns.frame())

	t.Run("packet-too-big", func(t *testing.T) {
		sent := out
		sent.src = ipNode6
		ptb := pkt6{src: router, dst: ipNode6, next: 58, icmpType: 2, payload: sent.ip()}
		got := f.pass6(progUplinkIngress, ptb.frame()) // decode6 checks the ICMPv6 checksum
		if got.src != router || got.dst != ipA6 || got.icmpType != 2 || got.inner == nil {
			t.Fatalf("packet too big: %+v", got)
		}
		if in := got.inner; in.src != ipA6 || in.sport != 40200 || in.dst != ipExt6 || in.dport != 443 {
			t.Fatalf("quoted packet %+v, want [%v]:40200 -> [%v]:443", in, ipA6, ipExt6)
		}
	})
	t.Run("echo-unreachable", func(t *testing.T) {
		sent := pkt6{src: ipNode6, dst: ipExt6, next: 58, icmpType: 128, sport: echoID}
		unreach := pkt6{src: router, dst: ipNode6, next: 58, icmpType: 1, payload: sent.ip()}
		got := f.pass6(progUplinkIngress, unreach.frame())
		if got.dst != ipA6 || got.inner == nil || got.inner.src != ipA6 || got.inner.icmpType != 128 || got.inner.sport != 62001 {
			t.Fatalf("unreachable about the echo: %+v (quoted %+v), want to [%v] quoting id 62001", got, got.inner, ipA6)
		}
	})
	t.Run("from-the-container", func(t *testing.T) {
		// The peer's answer reaches A, which has closed its socket: its
		// port unreachable quotes the answer as A got it.
		got := pkt6{src: ipExt6, dst: ipA6, next: 17, sport: 53, dport: 40201}
		unreach := pkt6{src: ipA6, dst: ipExt6, next: 58, icmpType: 1, payload: got.ip()}
		left := f.pass6(progUplinkEgress, unreach.frame())
		if left.src != ipNode6 || left.dst != ipExt6 || left.inner == nil {
			t.Fatalf("unreachable from the container: %+v", left)
		}
		if in := left.inner; in.src != ipExt6 || in.sport != 53 || in.dst != ipNode6 || in.dport != 40201 {
			t.Fatalf("quoted packet %+v, want [%v]:53 -> [%v]:40201", in, ipExt6, ipNode6)
		}
	})
	t.Run("not-ours", func(t *testing.T) {
		// An error about no flow of ours is the node's business.
		other := out
		other.src, other.sport = ipNode6, 40299
		f.passUnchanged(progUplinkIngress, pkt6{src: router, dst: ipNode6, next: 58, icmpType: 2, payload: other.ip()}.frame())
	})
}

// TestMasquerade6Limits: an uplink without an IPv6 address to masquerade
// to drops (counted) rather than let the container's address out; a flow
// tracked untranslated before its network masqueraded (an agent that
// routed IPv6, before an upgrade) keeps its addresses.
func TestMasquerade6Limits(t *testing.T) {
	f := newFixture(t, fixtureOpts{icc: true, masquerade: true}) // the uplink has no IPv6 address
	f.dropped(progUplinkEgress, pkt6{src: ipA6, dst: ipExt6, next: 6, sport: 40300, dport: 443, tcpFlags: 0x02}.frame(), "no-snat-address")

	f.put(uplinkEntries(ifUplink, []netip.Addr{ipNode, ipNode6}))
	old := ct6Key(ipExt6, 443, ipA6, 40301, 6)
	if err := f.d.maps[mapTrack6].Put(old, bpfTrack6Entry{Expires: monoNow(t) + uint64(time.Hour), State: ctReplied}); err != nil {
		t.Fatal(err)
	}
	f.passUnchanged(progUplinkEgress, pkt6{src: ipA6, dst: ipExt6, next: 6, sport: 40301, dport: 443, tcpFlags: 0x10}.frame())
	f.passUnchanged(progUplinkIngress, pkt6{src: ipExt6, dst: ipA6, next: 6, sport: 443, dport: 40301, tcpFlags: 0x10}.frame())
	// Its control: a new flow is masqueraded.
	want6(t, f.pass6(progUplinkEgress, pkt6{src: ipA6, dst: ipExt6, next: 6, sport: 40302, dport: 443, tcpFlags: 0x02}.frame()),
		ipNode6, 40302, ipExt6, 443)
}

// TestMasquerade6GC: masquerade pairs are garbage-collected and flushed
// with pc_nat6's published-port pairs: when both halves expired, when
// their container goes, and not with a mapping of the same port.
func TestMasquerade6GC(t *testing.T) {
	f := masq6Fixture(t)
	f.pass6(progUplinkEgress, pkt6{src: ipA6, dst: ipExt6, next: 17, sport: 40400, dport: 53}.frame())
	f.pass6(progUplinkEgress, pkt6{src: ipB6, dst: ipExt6, next: 17, sport: 40401, dport: 53}.frame())
	if n, err := flushNAT6(f.d.maps[mapFlows6], []flushRule{{port: true, addr: ipA6, proto: 17, lo: 40400, hi: 40400}}); err != nil || n != 0 {
		t.Fatalf("a mapping's flush took %d halves (%v)", n, err)
	}
	if n, err := flushNAT6(f.d.maps[mapFlows6], []flushRule{{addr: ipA6}}); err != nil || n != 2 {
		t.Fatalf("flush of endpoint A: %d halves, %v", n, err)
	}
	if _, ok := f.nat6()[ct6Key(ipB6, 40401, ipExt6, 53, 17)]; !ok {
		t.Fatal("B's flow went with A's")
	}
	res, err := nat6Table(f.d.maps[mapFlows6]).collect(monoNow(t), nil)
	if err != nil || res.Deleted != 0 {
		t.Fatalf("gc of live pairs: %+v, %v", res, err)
	}
	res, err = nat6Table(f.d.maps[mapFlows6]).collect(monoNow(t)+uint64(2*time.Minute), nil)
	if err != nil || res.Deleted != 2 || res.Entries != 2 {
		t.Fatalf("gc after expiry: %+v, %v", res, err)
	}
}
