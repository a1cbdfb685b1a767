package conformance

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/dataplane/model"
	"github.com/portcullis/portcullis/internal/nstest"
)

// IPv6 attacks from a container (B17, B17b): neighbour discovery claiming
// another's address, router messages, and fragments. The neighbour and
// router frames are made by hand and sent from the attacker's eth0 through
// a packet socket, as an attacker with CAP_NET_RAW in its container would;
// the fragments are the stack's own, of datagrams larger than the MTU.
func init() {
	rows = append(rows,
		row{"B17_IPv6NeighbourSpoofing", testNeighbourSpoofing},
		row{"B17_RouterMessages", testRouterMessages},
		row{"B17b_IPv6Fragments", testIPv6Fragments},
	)
}

// ICMPv6 types (RFC 4443, 4861, 2894).
const (
	icmp6EchoRequest    = 128
	icmp6RouterAdvert   = 134
	icmp6NeighSolicit   = 135
	icmp6NeighAdvert    = 136
	icmp6Redirect       = 137
	icmp6RouterRenumber = 138
)

var allNodes = netip.MustParseAddr("ff02::1")

// frame6 builds an Ethernet frame carrying an IPv6 packet of ICMPv6
// message msg (its checksum filled in here), hop limit 255 as neighbour
// discovery requires (RFC 4861 6.1.2, 7.1.2).
func frame6(dstMAC, srcMAC net.HardwareAddr, src, dst netip.Addr, msg []byte) []byte {
	s, d := src.As16(), dst.As16()
	pseudo := append(append(append([]byte(nil), s[:]...), d[:]...), 0, 0, 0, 0, 0, 0, 0, nstest.ProtoICMPv6)
	binary.BigEndian.PutUint16(pseudo[32:], uint16(len(msg)))
	msg[2], msg[3] = 0, 0
	binary.BigEndian.PutUint16(msg[2:], nstest.Checksum(append(pseudo, msg...)))
	ip := make([]byte, 40, 40+len(msg))
	ip[0] = 6 << 4
	binary.BigEndian.PutUint16(ip[4:], uint16(len(msg)))
	ip[6], ip[7] = nstest.ProtoICMPv6, 255
	copy(ip[8:], s[:])
	copy(ip[24:], d[:])
	return nstest.Ethernet(dstMAC, srcMAC, 0x86dd, append(ip, msg...))
}

// multicastMAC is the Ethernet group of an IPv6 multicast address (RFC 2464).
func multicastMAC(a netip.Addr) net.HardwareAddr {
	b := a.As16()
	return net.HardwareAddr{0x33, 0x33, b[12], b[13], b[14], b[15]}
}

// ndMsg is a neighbour solicitation or advertisement (flags: R, S, O in
// the first byte after the checksum) about target, with a link-layer
// address option (source for a solicitation, target for an advertisement).
func ndMsg(typ uint8, flags byte, target netip.Addr, mac net.HardwareAddr) []byte {
	t := target.As16()
	opt := byte(1)
	if typ == icmp6NeighAdvert {
		opt = 2
	}
	m := append([]byte{typ, 0, 0, 0, flags, 0, 0, 0}, t[:]...)
	return append(append(m, opt, 1), mac...)
}

// ndTarget returns the target of a captured neighbour message of type typ
// carrying mac in its link-layer option, or false.
func ndTarget(a nstest.Arrival, typ uint8, mac net.HardwareAddr) (netip.Addr, bool) {
	p := a.Payload
	if a.Proto != nstest.ProtoICMPv6 || len(p) < 32 || p[0] != typ || !bytes.Equal(p[26:32], mac) {
		return netip.Addr{}, false
	}
	return netip.AddrFrom16([16]byte(p[8:24])), true
}

// linkLocal returns the link-local address of ifname in ns, without zone.
func linkLocal(t *testing.T, ns *nstest.NS, ifname string) netip.Addr {
	t.Helper()
	a, err := ns.LinkLocal(ifname)
	if err != nil {
		t.Fatal(err)
	}
	return a.WithZone("")
}

// macOf returns the MAC of ifname in ns.
func macOf(t *testing.T, ns *nstest.NS, ifname string) net.HardwareAddr {
	t.Helper()
	ifi, err := ns.Interface(ifname)
	if err != nil {
		t.Fatal(err)
	}
	return ifi.HardwareAddr
}

// neighMAC is what ns's neighbour cache on dev holds for addr ("" when
// there is no entry or no address in it).
func neighMAC(t *testing.T, ns *nstest.NS, dev string, addr netip.Addr) string {
	t.Helper()
	out := ns.MustIP(t, "-6", "neigh", "show", addr.String(), "dev", dev)
	f := strings.Fields(out)
	for i := range f {
		if f[i] == "lladdr" && i+1 < len(f) {
			return f[i+1]
		}
	}
	return ""
}

// sendFrames sends frame three times from ns's eth0 (a lost one is no drop).
func sendFrames(t *testing.T, ns *nstest.NS, frame []byte) {
	t.Helper()
	for range 3 {
		if err := nstest.SendFrame(ns, "eth0", frame); err != nil {
			t.Fatal(err)
		}
	}
}

// waitNeigh waits until ns's cache on dev has mac for addr.
func waitNeigh(t *testing.T, ns *nstest.NS, dev string, addr netip.Addr, mac net.HardwareAddr) bool {
	t.Helper()
	for end := time.Now().Add(reachTimeout); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if neighMAC(t, ns, dev, addr) == mac.String() {
			return true
		}
	}
	return false
}

// linkedAndAttacker builds the world of the attacks: on an icc=false,
// dual-stack network, db exposes UDP port and its parent web links to it;
// mallory is linked to no one.
func linkedAndAttacker(t *testing.T, port int) (e *env, db, web, mallory *ctr) {
	t.Helper()
	e = newEnv(t)
	n := pc0(true)
	n.ICC = boolp(false)
	e.network(n)
	db = e.container("db", "pc0", 2, func(ep *model.Endpoint) {
		ep.Exposed = []model.PortProto{{Port: port, Proto: "udp"}}
	})
	web = e.container("web", "pc0", 3)
	mallory = e.container("mallory", "pc0", 4)
	e.link(t, "web", "db", "db")
	return e, db, web, mallory
}

// testNeighbourSpoofing (B17): on an icc=false network, mallory (unlinked)
// claims db's addresses in neighbour advertisements and solicitations. The
// node's and web's (db's linked parent) caches must keep db's MAC, and
// neither sees the lies; the same messages about mallory's own address are
// heard (the positive controls).
func testNeighbourSpoofing(t *testing.T) {
	e, db, web, mallory := linkedAndAttacker(t, 5432)
	nstest.ListenUDP(t, db.NS, "db", "[::]:5432")
	dbMAC, mMAC := macOf(t, db.NS, "eth0"), macOf(t, mallory.NS, "eth0")
	mLL, dbLL := linkLocal(t, mallory.NS, "eth0"), linkLocal(t, db.NS, "eth0")
	gw6 := netip.MustParseAddr("2001:db8:17::1")
	gwMAC := macOf(t, e.node(), "pc0")

	// The caches under attack: the node's and web's entries for db.
	reachPing(t, e.node(), db.IP6.String())
	reachUDP(t, web.NS, db.at6(5432), "db")
	dbEntries := func(t *testing.T, when string) {
		t.Helper()
		for _, c := range []struct {
			ns  *nstest.NS
			dev string
		}{{e.node(), "pc0"}, {web.NS, "eth0"}} {
			if got := neighMAC(t, c.ns, c.dev, db.IP6); got != dbMAC.String() {
				t.Errorf("%s's neighbour entry for db %s is %q %s, want %s", c.ns, db.IP6, got, when, dbMAC)
			}
		}
	}
	if dbEntries(t, "before the attack"); t.Failed() {
		t.FailNow()
	}

	capWeb := nstest.MustCapture(t, web.NS, nstest.CaptureICMP)
	capNode := nstest.MustCapture(t, e.node(), nstest.CaptureICMP)
	const override = 0x20
	allMAC := multicastMAC(allNodes)

	t.Run("control", func(t *testing.T) {
		// mallory advertises its own address: web hears it.
		sendFrames(t, mallory.NS, frame6(allMAC, mMAC, mLL, allNodes, ndMsg(icmp6NeighAdvert, override, mallory.IP6, mMAC)))
		got, err := capWeb.Arrivals(captureGrace)
		if err != nil {
			t.Fatal(err)
		}
		heard := false
		for _, a := range got {
			if tg, ok := ndTarget(a, icmp6NeighAdvert, mMAC); ok && tg == mallory.IP6 {
				heard = true
			}
		}
		if !heard {
			t.Errorf("mallory's advertisement of its own %s did not reach web", mallory.IP6)
		}
		// mallory asks the node about its gateway from its own
		// link-local address: the node learns mallory's MAC from it.
		e.node().MustIP(t, "-6", "neigh", "flush", "dev", "pc0", "to", mLL.String())
		sendFrames(t, mallory.NS, frame6(gwMAC, mMAC, mLL, gw6, ndMsg(icmp6NeighSolicit, 0, gw6, mMAC)))
		if !waitNeigh(t, e.node(), "pc0", mLL, mMAC) {
			t.Errorf("mallory's solicitation from its own %s did not reach the node: entry %q", mLL, neighMAC(t, e.node(), "pc0", mLL))
		}
	})

	t.Run("advertisements", func(t *testing.T) {
		capWeb.Arrivals(0)
		capNode.Arrivals(0)
		for _, target := range []netip.Addr{db.IP6, dbLL} {
			for _, src := range []netip.Addr{mallory.IP6, mLL} {
				sendFrames(t, mallory.NS, frame6(allMAC, mMAC, src, allNodes, ndMsg(icmp6NeighAdvert, override, target, mMAC)))
			}
		}
		lie := func(a nstest.Arrival) bool {
			tg, ok := ndTarget(a, icmp6NeighAdvert, mMAC)
			return ok && (tg == db.IP6 || tg == dbLL)
		}
		noArrival(t, "mallory's advertisements of db's addresses", capWeb, web.NS, "an advertisement", lie)
		noArrival(t, "mallory's advertisements of db's addresses", capNode, e.node(), "an advertisement", lie)
		dbEntries(t, "after the attack")
	})

	t.Run("solicitations", func(t *testing.T) {
		capNode.Arrivals(0)
		capDB := nstest.MustCapture(t, db.NS, nstest.CaptureICMP)
		e.node().MustIP(t, "-6", "neigh", "flush", "dev", "pc0", "to", dbLL.String())
		// From db's link-local address: the node would take mallory's MAC
		// for it. With db's MAC in the option, but mallory's source.
		sendFrames(t, mallory.NS, frame6(gwMAC, mMAC, dbLL, gw6, ndMsg(icmp6NeighSolicit, 0, gw6, mMAC)))
		sendFrames(t, mallory.NS, frame6(gwMAC, mMAC, mLL, gw6, ndMsg(icmp6NeighSolicit, 0, gw6, dbMAC)))
		// Duplicate address detection of db's address.
		sendFrames(t, mallory.NS, frame6(multicastMAC(solicitedNode(db.IP6)), mMAC, netip.IPv6Unspecified(),
			solicitedNode(db.IP6), ndMsg(icmp6NeighSolicit, 0, db.IP6, mMAC)[:24]))
		// Each lie pairs a source with an option MAC that db's and
		// mallory's own solicitations never pair.
		noArrival(t, "mallory's solicitations as db", capNode, e.node(), "a solicitation", func(a nstest.Arrival) bool {
			if a.Proto != nstest.ProtoICMPv6 || len(a.Payload) < 32 || a.Payload[0] != icmp6NeighSolicit {
				return false
			}
			opt := net.HardwareAddr(a.Payload[26:32])
			return a.Src == dbLL && bytes.Equal(opt, mMAC) || a.Src == mLL && bytes.Equal(opt, dbMAC)
		})
		noArrival(t, "mallory's duplicate address detection of db's address", capDB, db.NS, "a solicitation",
			func(a nstest.Arrival) bool {
				return a.Src == netip.IPv6Unspecified() && len(a.Payload) >= 24 && a.Payload[0] == icmp6NeighSolicit &&
					netip.AddrFrom16([16]byte(a.Payload[8:24])) == db.IP6
			})
		if got := neighMAC(t, e.node(), "pc0", dbLL); got == mMAC.String() {
			t.Errorf("the node's neighbour entry for db's %s points at mallory (%s)", dbLL, got)
		}
	})
}

// solicitedNode is the solicited-node multicast group of a (RFC 4291 2.7.1).
func solicitedNode(a netip.Addr) netip.Addr {
	b := a.As16()
	return netip.AddrFrom16([16]byte{0xff, 0x02, 11: 1, 12: 0xff, 13: b[13], 14: b[14], 15: b[15]})
}

// raMsg is a router advertisement: default router for lifetime seconds,
// with prefix pfx to configure addresses from (autonomous flag) and the
// router's MAC.
func raMsg(pfx netip.Prefix, mac net.HardwareAddr) []byte {
	m := []byte{icmp6RouterAdvert, 0, 0, 0, 64, 0, 0x07, 0x08, 0, 0, 0, 0, 0, 0, 0, 0}
	p := make([]byte, 32)
	p[0], p[1], p[2], p[3] = 3, 4, byte(pfx.Bits()), 0xc0 // prefix information, on-link and autonomous
	binary.BigEndian.PutUint32(p[4:], 3600)
	binary.BigEndian.PutUint32(p[8:], 1800)
	a := pfx.Addr().As16()
	copy(p[16:], a[:])
	m = append(m, p...)
	return append(append(m, 1, 1), mac...)
}

// testRouterMessages (B17): a container is never a router. Its router
// advertisements give its neighbours neither a default route nor an
// address, and its redirects and router renumbering reach no one; the
// same advertisement from the node's bridge is taken (the control: the
// victim does listen to routers), as is an echo request built like them.
func testRouterMessages(t *testing.T) {
	e := newEnv(t)
	e.network(pc0(true)) // icc=true: nothing but B17 stands in the way
	victim := e.container("victim", "pc0", 2)
	mallory := e.container("mallory", "pc0", 3)
	for _, k := range []string{"accept_ra", "accept_ra_defrtr", "accept_ra_pinfo", "autoconf"} {
		if err := victim.NS.SetSysctl("net.ipv6.conf.eth0."+k, "1"); err != nil {
			t.Fatal(err)
		}
	}
	if err := victim.NS.SetSysctl("net.ipv6.conf.eth0.forwarding", "0"); err != nil {
		t.Fatal(err)
	}
	mMAC, vMAC, gwMAC := macOf(t, mallory.NS, "eth0"), macOf(t, victim.NS, "eth0"), macOf(t, e.node(), "pc0")
	mLL, gwLL := linkLocal(t, mallory.NS, "eth0"), linkLocal(t, e.node(), "pc0")
	allMAC := multicastMAC(allNodes)
	capV := nstest.MustCapture(t, victim.NS, nstest.CaptureICMP)

	t.Run("control", func(t *testing.T) {
		echo := []byte{icmp6EchoRequest, 0, 0, 0, 0x12, 0x34, 0, 1}
		sendFrames(t, mallory.NS, frame6(allMAC, mMAC, mLL, allNodes, echo))
		got, err := capV.Arrivals(captureGrace)
		if err != nil {
			t.Fatal(err)
		}
		heard := false
		for _, a := range got {
			heard = heard || a.Src == mLL && len(a.Payload) > 0 && a.Payload[0] == icmp6EchoRequest
		}
		if !heard {
			t.Errorf("mallory's echo request to %s did not reach the victim", allNodes)
		}
		good := netip.MustParsePrefix("2001:db8:c0::/64")
		if err := nstest.SendFrame(e.node(), "pc0", frame6(allMAC, gwMAC, gwLL, allNodes, raMsg(good, gwMAC))); err != nil {
			t.Fatal(err)
		}
		if !waitRA(t, victim.NS, gwLL, good) {
			t.Errorf("the victim did not take the node's router advertisement (no default via %s, no address in %s): "+
				"it does not listen to routers, so the check below proves nothing", gwLL, good)
		}
	})

	t.Run("advertisement", func(t *testing.T) {
		capV.Arrivals(0)
		bad := netip.MustParsePrefix("2001:db8:bad::/64")
		sendFrames(t, mallory.NS, frame6(allMAC, mMAC, mLL, allNodes, raMsg(bad, mMAC)))
		noArrival(t, "mallory's router advertisement", capV, victim.NS, "a router advertisement",
			func(a nstest.Arrival) bool {
				return len(a.Payload) > 0 && a.Payload[0] == icmp6RouterAdvert && a.Src == mLL
			})
		if waitRA(t, victim.NS, mLL, bad) {
			t.Errorf("the victim took mallory's router advertisement: %s", victim.NS.MustIP(t, "-6", "route"))
		}
	})

	t.Run("redirect and renumbering", func(t *testing.T) {
		capV.Arrivals(0)
		// A redirect of the outside's address to mallory, and a
		// renumbering command; both to the victim's own addresses.
		dst := netip.MustParseAddr("2001:db8:2::2").As16()
		m := mLL.As16()
		redirect := append(append([]byte{icmp6Redirect, 0, 0, 0, 0, 0, 0, 0}, m[:]...), dst[:]...)
		renumber := append([]byte{icmp6RouterRenumber, 0, 0, 0, 0, 0, 0, 1}, make([]byte, 8)...)
		sendFrames(t, mallory.NS, frame6(vMAC, mMAC, mLL, victim.IP6, redirect))
		sendFrames(t, mallory.NS, frame6(vMAC, mMAC, mallory.IP6, victim.IP6, renumber))
		noArrival(t, "mallory's redirect and renumbering", capV, victim.NS, "a router message", func(a nstest.Arrival) bool {
			return len(a.Payload) > 0 && (a.Payload[0] == icmp6Redirect || a.Payload[0] == icmp6RouterRenumber)
		})
	})
}

// waitRA waits until ns has a default route via router and an address in
// pfx, as taking a router advertisement gives it.
func waitRA(t *testing.T, ns *nstest.NS, router netip.Addr, pfx netip.Prefix) bool {
	t.Helper()
	for end := time.Now().Add(reachTimeout); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		routes := ns.MustIP(t, "-6", "route", "show", "default")
		as, err := ns.Addrs("eth0")
		if err != nil {
			t.Fatal(err)
		}
		inPfx := false
		for _, a := range as {
			inPfx = inPfx || pfx.Contains(a.Addr())
		}
		if strings.Contains(routes, "via "+router.String()+" ") && inPfx {
			return true
		}
	}
	return false
}

// bigDatagram is a 4,000-byte payload starting with tag: over a 1,500-byte
// MTU the sender's stack sends it in three fragments.
func bigDatagram(tag string) string {
	return tag + " " + strings.Repeat("f", 4000-len(tag)-1)
}

// arrivesWhole sends the datagram of tag from ns to dst (three times: a
// lost one is not a drop) and expects srv to receive all of it, from src.
func arrivesWhole(t *testing.T, from *nstest.NS, dst string, srv *nstest.UDPServer, tag string, src netip.Addr) {
	t.Helper()
	payload := bigDatagram(tag)
	for range 3 {
		if err := nstest.SendUDP(from, dst, payload, nstest.DialOptions{}); err != nil {
			t.Fatalf("send %d bytes from %s to %s: %v", len(payload), from, dst, err)
		}
	}
	d, ok := srv.Wait(payload, reachTimeout)
	switch {
	case !ok:
		t.Errorf("udp %s -> %s: the %d-byte datagram did not arrive whole in %s", from, dst, len(payload), srv.NS)
	case d.From.Addr() != src:
		t.Errorf("udp %s -> %s: %s saw the datagram from %s, want %s", from, dst, srv.NS, d.From.Addr(), src)
	}
}

// neverArrives sends the datagram of tag from ns to dst and expects that
// nothing of it reaches srv or the stack of its namespace.
func neverArrives(t *testing.T, from *nstest.NS, dst string, srv *nstest.UDPServer, tag string) {
	t.Helper()
	quiet := watchUDP(t, srv, tag)
	for range 3 {
		if err := nstest.SendUDP(from, dst, bigDatagram(tag), nstest.DialOptions{}); err != nil {
			t.Fatalf("send from %s to %s: %v", from, dst, err)
		}
	}
	time.Sleep(probeTimeout)
	quiet("fragmented udp " + from.String() + " -> " + dst)
}

// testIPv6Fragments (B17b): fragmented IPv6 datagrams are held to the
// rules of whole ones. web's (linked) 4,000-byte datagram to db's exposed
// UDP port and one from outside to a published UDP port arrive whole, the
// latter translated; mallory's (not linked) never reach db, and neither do
// web's to a port db does not expose.
func testIPv6Fragments(t *testing.T) {
	e, db, web, mallory := linkedAndAttacker(t, 5353)
	srv := nstest.ListenUDP(t, db.NS, "db", "[::]:5353")
	other := nstest.ListenUDP(t, db.NS, "db", "[::]:5354")
	e.publish(udpPort("dns", "db", 5353, 5353))

	arrivesWhole(t, web.NS, db.at6(5353), srv, unique("link"), web.IP6)
	arrivesWhole(t, e.ext(), hostAt(nstest.NodeAddr6, 5353), srv, unique("published"), nstest.ExtAddr6)
	neverArrives(t, mallory.NS, db.at6(5353), srv, unique("unlinked"))
	neverArrives(t, web.NS, db.at6(5354), other, unique("unexposed"))
	// The controls again: the blocked datagrams did not break the paths.
	arrivesWhole(t, web.NS, db.at6(5353), srv, unique("link-after"), web.IP6)
}
