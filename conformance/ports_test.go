package conformance

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/portcullis/portcullis/dataplane/model"
	"github.com/portcullis/portcullis/internal/nstest"
)

// B6: -p HOSTPORT:PORT for tcp, udp and sctp: external hosts reach the
// container at any node address and the container sees the client's real
// address; bulk TCP gets through both ways (the container's answers, from a
// node address once translated, must not take the stack's input path). This kernel may have no SCTP sockets, so sctp is a crafted INIT
// whose translation a raw socket in the container sees.
func testPublishedPorts(t *testing.T) {
	e := newEnv(t, nodeAddr2)
	e.network(pc0(true))
	c1 := e.container("c1", "pc0", 2)
	servers(t, c1.NS, "c1", 80)
	sctp := nstest.MustListenRaw(t, c1.NS, nstest.ProtoSCTP)
	e.publish(tcpPort("tcp", "c1", 8080, 80))
	e.publish(udpPort("udp", "c1", 8080, 80))
	e.publish(model.PortMapping{ID: "sctp", Endpoint: "c1", Proto: "sctp", HostPort: 8082, Port: 82})

	for _, node := range []netip.Addr{nstest.NodeAddr, nodeAddr2, nstest.NodeAddr6} {
		client := nstest.ExtAddr
		if node.Is6() {
			client = nstest.ExtAddr6
		}
		r := reachTCP(t, e.ext(), hostAt(node, 8080), "c1")
		seenAs(t, "tcp to "+node.String(), r.Seen, client)
		bulkTCP(t, e.ext(), hostAt(node, 8080), "c1")
		if node.Is4() {
			u := reachUDP(t, e.ext(), hostAt(node, 8080), "c1")
			seenAs(t, "udp to "+node.String(), u.Seen, client)
		}
	}

	const tag = 0x5c7b0001
	pkt := nstest.IPv4(nstest.ExtAddr, nstest.NodeAddr, nstest.ProtoSCTP, 64, 4242, nstest.SCTPInit(5000, 8082, tag))
	if err := nstest.SendIPv4(e.ext(), pkt); err != nil {
		t.Fatal(err)
	}
	got, err := sctp.Next(reachTimeout, func(p nstest.IPv4Packet) bool {
		return len(p.Payload) >= 20 && binary.BigEndian.Uint32(p.Payload[16:20]) == tag
	})
	if err != nil {
		t.Errorf("sctp INIT to %s:8082 never reached c1: %v", nstest.NodeAddr, err)
		return
	}
	if _, dport := got.Ports(); got.Dst != c1.IP || dport != 82 || got.Src != nstest.ExtAddr {
		t.Errorf("sctp INIT reached c1 as %v, want %s -> %s:82", got, nstest.ExtAddr, c1.IP)
	}
	if !nstest.SCTPChecksumOK(got.Payload) {
		t.Errorf("sctp INIT reached c1 with a wrong CRC32c (not recomputed after NAT): %v", got)
	}
}

// B7: -p HOSTIP:HOSTPORT:PORT answers on that node address only.
func testHostIP(t *testing.T) {
	e := newEnv(t, nodeAddr2)
	e.network(pc0(false))
	c1 := e.container("c1", "pc0", 2)
	tcp, udp := servers(t, c1.NS, "c1", 80)
	for _, proto := range []string{"tcp", "udp"} {
		e.publish(model.PortMapping{ID: proto, Endpoint: "c1", Proto: proto, HostIP: nodeAddr2.String(), HostPort: 8080, Port: 80})
	}
	other := hostAt(nstest.NodeAddr, 8080)
	nodeServers(t, e, other)

	reachTCP(t, e.ext(), hostAt(nodeAddr2, 8080), "c1")
	reachUDP(t, e.ext(), hostAt(nodeAddr2, 8080), "c1")
	nodeAnswersTCP(t, e.ext(), other, tcp)
	nodeAnswersUDP(t, e.ext(), other, udp)
}

// nodeServers starts the node's own TCP and UDP servers, named "node", on
// addr: a node address and port no mapping covers, where they, not a
// container, must answer.
func nodeServers(t *testing.T, e *env, addr string) {
	t.Helper()
	nstest.ListenTCP(t, e.node(), "node", addr)
	nstest.ListenUDP(t, e.node(), "node", addr)
}

// B8: a port range is one mapping; every port in it works, shifted ranges
// too, and the port after it does not.
func testPortRange(t *testing.T) {
	e := newEnv(t)
	e.network(pc0(false))
	c1 := e.container("c1", "pc0", 2)
	for _, p := range []string{"[::]:8000", "[::]:8057", "[::]:8099"} {
		nstest.ListenTCP(t, c1.NS, "c1", p)
	}
	after := nstest.ListenTCP(t, c1.NS, "c1", "[::]:8100")
	nodeServers(t, e, hostAt(nstest.NodeAddr, 8100))
	nstest.ListenUDP(t, c1.NS, "c1", "[::]:7005")
	e.publish(model.PortMapping{ID: "tcp-range", Endpoint: "c1", Proto: "tcp", HostPortRange: "8000-8099", PortRange: "8000-8099"})
	e.publish(model.PortMapping{ID: "udp-range", Endpoint: "c1", Proto: "udp", HostPortRange: "9000-9009", PortRange: "7000-7009"})

	for _, port := range []int{8000, 8057, 8099} {
		reachTCP(t, e.ext(), hostAt(nstest.NodeAddr, port), "c1")
	}
	nodeAnswersTCP(t, e.ext(), hostAt(nstest.NodeAddr, 8100), after)
	reachUDP(t, e.ext(), hostAt(nstest.NodeAddr, 9005), "c1")
}

// B9: hairpin: a container reaches its own and another container's
// published port through a node address, IPv4 and IPv6, with ICC on and
// off (the translated flow is not inter-container communication).
func testHairpin(t *testing.T) {
	for _, icc := range []bool{true, false} {
		t.Run(fmt.Sprintf("icc=%v", icc), func(t *testing.T) { hairpin(t, icc) })
	}
}

func hairpin(t *testing.T, icc bool) {
	e := newEnv(t)
	n := pc0(true)
	n.ICC = boolp(icc)
	e.network(n)
	c1 := e.container("c1", "pc0", 2)
	c2 := e.container("c2", "pc0", 3)
	servers(t, c1.NS, "c1", 80)
	servers(t, c2.NS, "c2", 80)
	e.publish(tcpPort("c1-tcp", "c1", 8080, 80))
	e.publish(udpPort("c1-udp", "c1", 8080, 80))
	e.publish(tcpPort("c2-tcp", "c2", 8081, 80))

	reachTCP(t, c1.NS, "192.0.2.1:8080", "c1")
	reachUDP(t, c1.NS, "192.0.2.1:8080", "c1")
	reachTCP(t, c1.NS, "192.0.2.1:8081", "c2")
	reachTCP(t, c2.NS, "192.0.2.1:8080", "c1")
	reachUDP(t, c2.NS, "192.0.2.1:8080", "c1")
	bulkTCP(t, c1.NS, "192.0.2.1:8080", "c1")
	bulkTCP(t, c2.NS, "192.0.2.1:8080", "c1")

	// The same through the node's IPv6 address.
	node6 := nstest.NodeAddr6
	reachTCP(t, c1.NS, hostAt(node6, 8080), "c1")
	reachUDP(t, c1.NS, hostAt(node6, 8080), "c1")
	reachTCP(t, c1.NS, hostAt(node6, 8081), "c2")
	reachTCP(t, c2.NS, hostAt(node6, 8080), "c1")
	reachUDP(t, c2.NS, hostAt(node6, 8080), "c1")
	bulkTCP(t, c2.NS, hostAt(node6, 8080), "c1")
}

// B10: a process on the node reaching 127.0.0.1:HOSTPORT or
// NODEIP:HOSTPORT gets the container.
func testFromNode(t *testing.T) {
	e := newEnv(t)
	e.network(pc0(false))
	c1 := e.container("c1", "pc0", 2)
	servers(t, c1.NS, "c1", 80)
	e.publish(tcpPort("tcp", "c1", 8080, 80))
	e.publish(udpPort("udp", "c1", 8080, 80))

	for _, dst := range []string{"127.0.0.1:8080", "192.0.2.1:8080"} {
		reachTCP(t, e.node(), dst, "c1")
		reachUDP(t, e.node(), dst, "c1")
	}
}

// B11: a port published on 127.0.0.1 is reachable from the node only, even
// when another host sends frames for 127.0.0.1 to the node's MAC.
func testLoopbackOnly(t *testing.T) {
	e := newEnv(t)
	e.network(pc0(false))
	c1 := e.container("c1", "pc0", 2)
	srv, _ := servers(t, c1.NS, "c1", 80)
	e.publish(model.PortMapping{ID: "lo", Endpoint: "c1", Proto: "tcp", HostIP: "127.0.0.1", HostPort: 8088, Port: 80})
	e.publish(tcpPort("any", "c1", 8080, 80))
	nodeServers(t, e, "192.0.2.1:8088")

	reachTCP(t, e.node(), "127.0.0.1:8088", "c1")
	reachTCP(t, e.ext(), "192.0.2.1:8080", "c1") // control
	nodeAnswersTCP(t, e.ext(), "192.0.2.1:8088", srv)

	up, err := e.node().Interface(nstest.UplinkName)
	if err != nil {
		t.Fatal(err)
	}
	eth, err := e.ext().Interface(nstest.ExtIfname)
	if err != nil {
		t.Fatal(err)
	}
	raw := nstest.MustListenRaw(t, c1.NS, nstest.ProtoTCP)
	syn := func(dst netip.Addr, sport, dport uint16) {
		t.Helper()
		ip := nstest.IPv4(nstest.ExtAddr, dst, nstest.ProtoTCP, 64, sport, nstest.TCPSyn(nstest.ExtAddr, dst, sport, dport, 1))
		if err := nstest.SendFrame(e.ext(), nstest.ExtIfname, nstest.Ethernet(up.HardwareAddr, eth.HardwareAddr, nstest.EthIPv4, ip)); err != nil {
			t.Fatal(err)
		}
	}
	fromSport := func(sport uint16) func(nstest.IPv4Packet) bool {
		return func(p nstest.IPv4Packet) bool { s, _ := p.Ports(); return s == sport && p.Src == nstest.ExtAddr }
	}
	// Control: the same crafted frame to the wildcard mapping arrives, so
	// the check below cannot pass because the frames are broken.
	syn(nstest.NodeAddr, 41001, 8080)
	if p, err := raw.Next(reachTimeout, fromSport(41001)); err != nil {
		t.Errorf("control: crafted SYN to %s:8080 never reached c1: %v", nstest.NodeAddr, err)
	} else if _, d := p.Ports(); p.Dst != c1.IP || d != 80 {
		t.Errorf("control: crafted SYN reached c1 as %v", p)
	}
	syn(netip.MustParseAddr("127.0.0.1"), 41002, 8088)
	if p, err := raw.Next(probeTimeout, fromSport(41002)); err == nil {
		t.Errorf("a frame from ext for 127.0.0.1:8088 reached c1 as %v", p)
	}
}

// B12: nothing unpublished is reachable from outside, even from a host
// that routes the container subnets to the node: no unpublished port, and
// not the container address itself, over IPv4 or IPv6.
func testNothingUnpublished(t *testing.T) {
	e := newEnv(t)
	e.network(pc0(true))
	c1 := e.container("c1", "pc0", 2)
	tcp80, udp := servers(t, c1.NS, "c1", 80)
	tcp81 := nstest.ListenTCP(t, c1.NS, "c1", "[::]:81")
	e.publish(tcpPort("tcp", "c1", 8080, 80))
	e.publish(udpPort("udp", "c1", 8080, 80))
	e.topo.ExtRoute("172.17.0.0/16", nstest.NodeAddr)
	e.topo.ExtRoute("2001:db8:17::/64", nstest.NodeAddr6)
	for _, node := range []netip.Addr{nstest.NodeAddr, nstest.NodeAddr6} {
		nodeServers(t, e, hostAt(node, 81))
	}

	// Controls: the published ports answer over both families, and the
	// node answers pings.
	reachTCP(t, e.ext(), "192.0.2.1:8080", "c1")
	reachTCP(t, e.ext(), "[2001:db8:1::1]:8080", "c1")
	reachUDP(t, e.ext(), "192.0.2.1:8080", "c1")
	reachPing(t, e.ext(), "192.0.2.1")
	reachPing(t, e.ext(), "2001:db8:1::1")

	nodeAnswersTCP(t, e.ext(), "192.0.2.1:81", tcp81)
	nodeAnswersTCP(t, e.ext(), "[2001:db8:1::1]:81", tcp81)
	for _, d := range []struct {
		dst string
		srv *nstest.TCPServer
	}{{c1.at(80), tcp80}, {c1.at(81), tcp81}, {c1.at6(80), tcp80}, {c1.at6(81), tcp81}} {
		blockedTCP(t, e.ext(), d.dst, d.srv)
	}
	blockedUDP(t, e.ext(), c1.at(80), udp)
	blockedUDP(t, e.ext(), c1.at6(80), udp)
	blockedPing(t, e.ext(), c1.IP.String(), c1.NS)
	blockedPing(t, e.ext(), c1.IP6.String(), c1.NS)
}

// B13: removing a mapping stops new flows at once, and its stale
// conntrack/NAT state is cleared, so a client that kept sending from the
// same port reaches the restarted service once the mapping is back.
func testRemoveMapping(t *testing.T) {
	e := newEnv(t)
	e.network(pc0(false))
	c1 := e.container("c1", "pc0", 2)
	old := nstest.ListenUDP(t, c1.NS, "c1", "[::]:90")
	srv := nstest.ListenTCP(t, c1.NS, "c1", "[::]:90")
	e.publish(udpPort("udp", "c1", 9090, 90))
	e.publish(tcpPort("tcp", "c1", 9090, 90))

	client := udpClient(t, e.ext(), "192.0.2.1:9090", fromPort(5555))
	if r := client.Exchange("before"); !r.OK() || r.Server != "c1" {
		t.Fatalf("udp through the mapping before removal: %v", r)
	}
	reachTCP(t, e.ext(), "192.0.2.1:9090", "c1")

	for _, id := range []string{"udp", "tcp"} {
		if err := e.api.DeletePort(e.ctx, id); err != nil {
			t.Fatalf("DELETE port %s: %v", id, err)
		}
	}
	// New flows stop: the node's own servers get them now, c1 nothing.
	// They stop before the client below sends again, so that its
	// datagrams find no node socket (the stale state the agent must clear
	// is then the one Docker's users hit).
	node := nstest.ListenUDP(t, e.node(), "node", "192.0.2.1:9090")
	nodeTCP := nstest.ListenTCP(t, e.node(), "node", "192.0.2.1:9090")
	nodeAnswersUDP(t, e.ext(), "192.0.2.1:9090", old)
	nodeAnswersTCP(t, e.ext(), "192.0.2.1:9090", srv)
	node.Close()
	nodeTCP.Close()

	// The client's own flow stops too: its NAT state went with the
	// mapping. c1's server, which would answer, must get none of its
	// datagrams (the node, with no socket there, may refuse them).
	client.Timeout = probeTimeout
	gap := unique("gap")
	quiet := watchUDP(t, old, gap)
	for i := range 3 {
		if r := client.Exchange(gap); r.OK() {
			t.Errorf("udp from the same client %d after DELETE: still answered by %s", i, r.Server)
		}
	}
	quiet("udp from the same client after DELETE")

	// The service restarts (a new socket) and the mapping comes back.
	old.Close()
	nstest.ListenUDP(t, c1.NS, "c1-restarted", "[::]:90")
	e.publish(udpPort("udp", "c1", 9090, 90))
	client.Timeout = reachTimeout
	deadline := time.Now().Add(2 * reachTimeout)
	var last nstest.UDPResult
	for time.Now().Before(deadline) {
		if last = client.Exchange("after"); last.OK() {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !last.OK() || last.Server != "c1-restarted" {
		t.Errorf("udp from the client that kept sending, after the mapping came back: %v (stale conntrack?)", last)
	}
	if r := nstest.ExchangeUDP(e.ext(), "192.0.2.1:9090", nstest.DialOptions{Timeout: reachTimeout}); !r.OK() {
		t.Errorf("udp from a new client after the mapping came back: %v", r)
	}
}
