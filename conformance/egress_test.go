package conformance

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/portcullis/portcullis/dataplane/model"
	"github.com/portcullis/portcullis/internal/nstest"
)

// B1: a container reaching an external host appears with the node's uplink
// address; replies come back to the right container. TCP, UDP, ICMP echo,
// and a bulk TCP transfer both ways, over IPv4 and, the network having an
// IPv6 subnet, over IPv6 from the uplink's IPv6 address (the external host
// has no route to the containers' IPv6 subnet: only masqueraded traffic
// gets answers).
func testMasquerade(t *testing.T) {
	e := newEnv(t)
	e.network(pc0(true))
	c1 := e.container("c1", "pc0", 2)
	c2 := e.container("c2", "pc0", 3)
	servers(t, e.ext(), "ext", 7000)
	echo := nstest.MustListenRaw(t, e.ext(), nstest.ProtoICMP)
	echo6 := nstest.MustCapture(t, e.ext(), nstest.CaptureICMP)
	ext6 := hostAt(nstest.ExtAddr6, 7000)

	for _, c := range []*ctr{c1, c2} {
		r := reachTCP(t, c.NS, "192.0.2.2:7000", "ext")
		seenAs(t, "tcp from "+c.ID, r.Seen, nstest.NodeAddr)
		u := reachUDP(t, c.NS, "192.0.2.2:7000", "ext")
		seenAs(t, "udp from "+c.ID, u.Seen, nstest.NodeAddr)
		reachPing(t, c.NS, "192.0.2.2")
		r = reachTCP(t, c.NS, ext6, "ext")
		seenAs(t, "tcp6 from "+c.ID, r.Seen, nstest.NodeAddr6)
		u = reachUDP(t, c.NS, ext6, "ext")
		seenAs(t, "udp6 from "+c.ID, u.Seen, nstest.NodeAddr6)
		reachPing(t, c.NS, nstest.ExtAddr6.String())
	}
	as, err := echo6.Arrivals(reachTimeout / 4)
	if err != nil {
		t.Fatal(err)
	}
	echoes6 := 0
	for _, a := range as {
		if a.IsEchoRequest() && a.Src.Is6() {
			echoes6++
			if a.Src != nstest.NodeAddr6 {
				t.Errorf("echo request reached ext from %s, want %s", a.Src, nstest.NodeAddr6)
			}
		}
	}
	if echoes6 == 0 {
		t.Errorf("ext saw no IPv6 echo request")
	}
	bulkTCP(t, c1.NS, "192.0.2.2:7000", "ext")
	p, err := echo.Next(reachTimeout, func(p nstest.IPv4Packet) bool {
		return len(p.Payload) > 0 && p.Payload[0] == nstest.ICMPEchoRequest
	})
	if err != nil {
		t.Errorf("ext saw no echo request: %v", err)
	} else if p.Src != nstest.NodeAddr {
		t.Errorf("echo request reached ext from %s, want %s", p.Src, nstest.NodeAddr)
	}
}

// B2: a network, or one endpoint, may have a fixed source address instead
// of masquerade; inbound published traffic to that address reaches the
// same endpoint.
func testSNATAddress(t *testing.T) {
	e := newEnv(t, nodeAddr2, nodeAddr3)
	n := pc0(false)
	n.SNATIP = nodeAddr2.String()
	e.network(n)
	c1 := e.container("c1", "pc0", 2)
	c2 := e.container("c2", "pc0", 3, func(ep *model.Endpoint) { ep.SNATIP = nodeAddr3.String() })
	servers(t, e.ext(), "ext", 7000)
	servers(t, c1.NS, "c1", 80)
	servers(t, c2.NS, "c2", 80)
	e.publish(tcpPort("p1", "c1", 8081, 80))
	e.publish(tcpPort("p2", "c2", 8080, 80))

	for _, tc := range []struct {
		c    *ctr
		snat netip.Addr
	}{{c1, nodeAddr2}, {c2, nodeAddr3}} {
		r := reachTCP(t, tc.c.NS, "192.0.2.2:7000", "ext")
		seenAs(t, "tcp from "+tc.c.ID, r.Seen, tc.snat)
		u := reachUDP(t, tc.c.NS, "192.0.2.2:7000", "ext")
		seenAs(t, "udp from "+tc.c.ID, u.Seen, tc.snat)
	}
	r := reachTCP(t, e.ext(), hostAt(nodeAddr3, 8080), "c2")
	seenAs(t, "published port of c2 on its SNAT address", r.Seen, nstest.ExtAddr)
	r = reachTCP(t, e.ext(), hostAt(nodeAddr2, 8081), "c1")
	seenAs(t, "published port of c1 on its network's SNAT address", r.Seen, nstest.ExtAddr)
}

// B3: with masquerade off (routed mode) the container's own address is
// kept.
func testRoutedMode(t *testing.T) {
	e := newEnv(t)
	n := pc0(false)
	n.Masquerade = boolp(false)
	e.network(n)
	c1 := e.container("c1", "pc0", 2)
	e.topo.ExtRoute("172.17.0.0/16", nstest.NodeAddr)
	servers(t, e.ext(), "ext", 7000)

	r := reachTCP(t, c1.NS, "192.0.2.2:7000", "ext")
	seenAs(t, "tcp in routed mode", r.Seen, c1.IP)
	u := reachUDP(t, c1.NS, "192.0.2.2:7000", "ext")
	seenAs(t, "udp in routed mode", u.Seen, c1.IP)
	reachPing(t, c1.NS, "192.0.2.2")
}

// B4: two containers opening flows from the same source port to the same
// external ip:port both work; the external host sees two source ports. The
// node's own connection from that port works alongside them.
func testSourcePortCollision(t *testing.T) {
	e := newEnv(t)
	e.network(pc0(false))
	c1 := e.container("c1", "pc0", 2)
	c2 := e.container("c2", "pc0", 3)
	servers(t, e.ext(), "ext", 7000)

	// TCP: both connections open at once, so the second must get another
	// port instead of clashing with the first.
	var seen []netip.AddrPort
	for _, c := range []*ctr{c1, c2} {
		conn, r := nstest.ConnectTCP(c.NS, "192.0.2.2:7000", fromPort(40000))
		if !r.OK() {
			t.Errorf("tcp from %s port 40000: %v", c.ID, r.Err)
			continue
		}
		defer conn.Close()
		seenAs(t, "tcp from "+c.ID, r.Seen, nstest.NodeAddr)
		seen = append(seen, r.Seen)
	}
	if len(seen) == 2 && seen[0] == seen[1] {
		t.Errorf("tcp: both containers seen as %s", seen[0])
	}

	// The node's own connection from that port to the same place: the
	// kernel picks node ports knowing nothing of translated flows, so a
	// container's flow must not have kept a node port it could pick (eBPF:
	// SNAT stays out of net.ipv4.ip_local_port_range; nftables: netfilter
	// moves whichever clashes). Both connections work, each reaching its
	// own socket.
	nodeConn, r := nstest.ConnectTCP(e.node(), "192.0.2.2:7000", fromPort(40000))
	if !r.OK() {
		t.Errorf("tcp from the node's port 40000 with containers' flows from port 40000 open: %v", r.Err)
	} else {
		defer nodeConn.Close()
		for i, s := range seen {
			if s == r.Seen {
				t.Errorf("the node's own connection and the container flow %d are both seen as %s", i+1, s)
			}
		}
	}

	// UDP: both flows live together; each answer reaches its own sender.
	u1 := udpClient(t, c1.NS, "192.0.2.2:7000", fromPort(40001))
	u2 := udpClient(t, c2.NS, "192.0.2.2:7000", fromPort(40001))
	r1, r2, r1again := u1.Exchange("c1"), u2.Exchange("c2"), u1.Exchange("c1")
	for i, r := range []nstest.UDPResult{r1, r2, r1again} {
		if !r.OK() {
			t.Errorf("udp exchange %d from port 40001: %v", i+1, r.Err)
		}
	}
	if r1.OK() && r2.OK() && r1again.OK() {
		if r1.Seen == r2.Seen {
			t.Errorf("udp: both containers seen as %s", r1.Seen)
		}
		if r1again.Seen != r1.Seen {
			t.Errorf("udp: c1's flow moved from %s to %s after c2's flow", r1.Seen, r1again.Seen)
		}
	}
}

// B5: ICMP errors caused by a translated flow reach the right container
// with the inner headers translated back: port unreachable becomes
// ECONNREFUSED, frag-needed lowers the socket's path MTU, time-exceeded
// lands on the error queue.
func testICMPErrors(t *testing.T) {
	e := newEnv(t)
	e.network(pc0(true))
	c1 := e.container("c1", "pc0", 2)
	servers(t, e.ext(), "ext", 7000)
	ext := netip.MustParseAddrPort("192.0.2.2:7000")

	t.Run("port_unreachable", func(t *testing.T) {
		r := nstest.ExchangeUDP(c1.NS, "192.0.2.2:7999", nstest.DialOptions{Timeout: reachTimeout})
		if !errors.Is(r.Err, syscall.ECONNREFUSED) {
			t.Errorf("udp to a closed external port: want ECONNREFUSED, got %v", r)
		}
	})

	// capture sends one datagram from the probe and returns it as the
	// external host received it (after SNAT).
	capture := func(t *testing.T, p *nstest.UDPProbe, tag string) (nstest.IPv4Packet, bool) {
		t.Helper()
		raw := nstest.MustListenRaw(t, e.ext(), nstest.ProtoUDP)
		if err := p.Send([]byte(tag)); err != nil {
			t.Fatalf("send probe: %v", err)
		}
		pkt, err := raw.Next(reachTimeout, func(q nstest.IPv4Packet) bool {
			return len(q.Payload) >= 8 && string(q.Payload[8:]) == tag
		})
		if err != nil {
			t.Errorf("probe from %s never reached ext: %v", c1.ID, err)
			return pkt, false
		}
		if pkt.Src != nstest.NodeAddr {
			t.Errorf("probe reached ext from %s, want %s", pkt.Src, nstest.NodeAddr)
		}
		return pkt, true
	}

	t.Run("frag_needed", func(t *testing.T) {
		p, err := nstest.NewUDPProbe(c1.NS, ext, nstest.ProbeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		before, _ := p.PathMTU()
		pkt, ok := capture(t, p, "pmtu-probe")
		if !ok {
			return
		}
		const mtu = 1300
		msg := nstest.ICMPv4Error(nstest.ICMPDestUnreachable, nstest.ICMPCodeFragNeeded, mtu, pkt.Quote())
		if err := nstest.SendICMPv4(e.ext(), pkt.Src, msg); err != nil {
			t.Fatal(err)
		}
		if got, err := p.WaitPathMTU(mtu, reachTimeout); err != nil || got != mtu {
			t.Errorf("path MTU of the container's socket: %d (was %d), want %d after frag-needed (%v)", got, before, mtu, err)
		}
	})

	t.Run("time_exceeded", func(t *testing.T) {
		p, err := nstest.NewUDPProbe(c1.NS, ext, nstest.ProbeOptions{RecvErr: true})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		pkt, ok := capture(t, p, "ttl-probe")
		if !ok {
			return
		}
		msg := nstest.ICMPv4Error(nstest.ICMPTimeExceeded, nstest.ICMPCodeTTLInTransit, 0, pkt.Quote())
		if err := nstest.SendICMPv4(e.ext(), pkt.Src, msg); err != nil {
			t.Fatal(err)
		}
		se, err := p.ReadError(reachTimeout)
		if err != nil {
			t.Errorf("time exceeded did not reach the container's error queue: %v", err)
			return
		}
		if se.Type != nstest.ICMPTimeExceeded || se.Code != nstest.ICMPCodeTTLInTransit || se.Offender != nstest.ExtAddr {
			t.Errorf("error queue holds %v, want icmp type %d code 0 from %s", se, nstest.ICMPTimeExceeded, nstest.ExtAddr)
		}
	})

	// IPv6 routers never fragment: path MTU discovery needs "packet too
	// big" to reach the container. Here about a published port's answer,
	// which left as the node's: the error comes to the node's address.
	t.Run("packet_too_big_v6_published", func(t *testing.T) {
		nstest.ListenUDP(t, c1.NS, "c1", "[::]:90")
		e.publish(udpPort("udp6", "c1", 9090, 90))
		client := udpClient(t, e.ext(), hostAt(nstest.NodeAddr6, 9090), fromPort(5656))
		if r := client.Exchange("hello"); !r.OK() || r.Server != "c1" {
			t.Fatalf("udp over IPv6 to the published port: %v", r)
		}
		const mtu = 1280
		answer := nstest.IPv6UDP(nstest.NodeAddr6, nstest.ExtAddr6, 9090, 5656, make([]byte, 64))
		msg := nstest.ICMPv6Error(nstest.ICMPv6PacketTooBig, 0, mtu, answer)
		if err := nstest.SendICMPv6(e.ext(), nstest.NodeAddr6, msg); err != nil {
			t.Fatal(err)
		}
		// The container's kernel keeps the learned MTU for the client.
		want := fmt.Sprintf("mtu %d", mtu)
		var (
			route string
			err   error
		)
		for deadline := time.Now().Add(reachTimeout); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if route, err = c1.NS.IP("-6", "route", "get", nstest.ExtAddr6.String()); err == nil && strings.Contains(route, want) {
				return
			}
		}
		t.Errorf("packet too big did not reach the container: its route to %s is %q (%v), want %s", nstest.ExtAddr6, strings.TrimSpace(route), err, want)
	})
}

// unique returns a tag for one-way datagrams.
func unique(what string) string { return fmt.Sprintf("%s-%d", what, time.Now().UnixNano()) }
