package nstest

import (
	"errors"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) {
	if os.Getenv(fakeAgentEnv) != "" {
		os.Exit(fakeAgent(os.Args[1:]))
	}
	code := m.Run()
	ReleaseAll()
	os.Exit(code)
}

func TestTopologyTraffic(t *testing.T) {
	topo := NewTopology(t, Options{NodeAddrs: []netip.Addr{netip.MustParseAddr("192.0.2.10")}})

	ListenTCP(t, topo.Ext, "ext", "[::]:7000")
	r := DialTCP(topo.Node, "192.0.2.2:7000", DialOptions{})
	if !r.OK() || r.Server != "ext" || r.Seen.Addr() != NodeAddr {
		t.Fatalf("node -> ext tcp: %v", r)
	}
	r = DialTCP(topo.Node, "192.0.2.2:7000", DialOptions{Local: netip.MustParseAddrPort("192.0.2.10:40000")})
	if !r.OK() || r.Seen != netip.MustParseAddrPort("192.0.2.10:40000") {
		t.Fatalf("node -> ext tcp from 192.0.2.10:40000: %v", r)
	}
	r = DialTCP(topo.Node, "[2001:db8:1::2]:7000", DialOptions{})
	if !r.OK() || r.Seen.Addr() != NodeAddr6 {
		t.Fatalf("node -> ext tcp6: %v", r)
	}
	if r := DialTCP(topo.Node, "192.0.2.2:7001", DialOptions{Timeout: time.Second}); r.OK() {
		t.Fatalf("dial to a closed port worked: %v", r)
	}

	ListenUDP(t, topo.Ext, "ext", "[::]:7000")
	u := ExchangeUDP(topo.Node, "192.0.2.2:7000", DialOptions{Local: Port(40001)})
	if !u.OK() || u.Seen != netip.MustParseAddrPort("192.0.2.1:40001") {
		t.Fatalf("node -> ext udp: %v", u)
	}
	u = ExchangeUDP(topo.Node, "192.0.2.2:7009", DialOptions{})
	if !errors.Is(u.Err, syscall.ECONNREFUSED) {
		t.Fatalf("udp to a closed port: want ECONNREFUSED, got %v", u)
	}

	for _, dst := range []string{"192.0.2.2", "2001:db8:1::2"} {
		if err := Ping(topo.Node, dst, time.Second); err != nil {
			t.Fatal(err)
		}
	}
	ll, err := topo.Ext.LinkLocal(ExtIfname)
	if err != nil {
		t.Fatal(err)
	}
	if err := Ping(topo.Node, ll.WithZone(UplinkName).String(), time.Second); err != nil {
		t.Fatalf("link-local ping: %v", err)
	}
	if err := Ping(topo.Node, "192.0.2.99", 300*time.Millisecond); err == nil {
		t.Fatal("ping to a missing host answered")
	}
	if v, err := topo.Node.Sysctl("net.ipv4.ip_forward"); err != nil || v != "1" {
		t.Fatalf("node ip_forward = %q, %v", v, err)
	}
}

// TestContainerRouting plugs a container by hand, the way the agent will,
// and routes it to the external host through the node (no NAT).
func TestContainerRouting(t *testing.T) {
	topo := NewTopology(t, Options{})
	c := topo.AddContainer("c1")
	topo.Node.MustIP(t, "link", "add", "vc1", "type", "veth", "peer", "name", "eth0", "netns", c.Name)
	topo.Node.MustIP(t, "addr", "add", "10.9.0.1/24", "dev", "vc1")
	topo.Node.MustIP(t, "link", "set", "vc1", "up")
	c.MustIP(t, "addr", "add", "10.9.0.2/24", "dev", "eth0")
	c.MustIP(t, "link", "set", "eth0", "up")
	c.MustIP(t, "route", "add", "default", "via", "10.9.0.1")
	if err := c.WaitInterface("eth0", netip.MustParseAddr("10.9.0.2"), 2*time.Second); err != nil {
		t.Fatal(err)
	}
	topo.ExtRoute("10.9.0.0/24", NodeAddr)
	ListenTCP(t, topo.Ext, "ext", ":7000")
	if r := DialTCP(c, "192.0.2.2:7000", DialOptions{}); !r.OK() || r.Seen.Addr() != netip.MustParseAddr("10.9.0.2") {
		t.Fatalf("container -> ext: %v", r)
	}
	if topo.Container("c1") != c {
		t.Fatal("Container(c1) lost")
	}
}

func TestCleanupRemovesNamespaces(t *testing.T) {
	var suffix string
	var names []string
	t.Run("build", func(t *testing.T) {
		topo := NewTopology(t, Options{})
		topo.AddContainer("c1")
		suffix = topo.Suffix
		names = []string{topo.Node.Name, topo.Ext.Name, topo.Container("c1").Name}
		if got := netnsWith(t, suffix); len(got) != 3 {
			t.Fatalf("namespaces with %s: %v, want 3", suffix, got)
		}
	})
	if got := netnsWith(t, suffix); len(got) != 0 {
		t.Fatalf("left behind: %v (made %v)", got, names)
	}
	ents, _ := os.ReadDir(registry.dir)
	if len(ents) != 0 {
		t.Fatalf("registry still lists %d resources", len(ents))
	}
}

func TestStandalone(t *testing.T) {
	RequireRoot(t)
	s := NewStandalone()
	topo := NewTopology(s, Options{})
	suffix := topo.Suffix
	if got := netnsWith(t, suffix); len(got) != 2 {
		t.Fatalf("namespaces: %v", got)
	}
	s.Close()
	if got := netnsWith(t, suffix); len(got) != 0 {
		t.Fatalf("left behind after Close: %v", got)
	}
}

// TestSweepDead checks that what a killed process left is removed.
func TestSweepDead(t *testing.T) {
	RequireRoot(t)
	dead := registryRoot + "/999999999-1"
	if err := os.MkdirAll(dead, 0o700); err != nil {
		t.Fatal(err)
	}
	name := Prefix + "sweep-" + RandomSuffix()
	if out, err := run("ip", "netns", "add", name); err != nil {
		t.Fatal(out, err)
	}
	os.WriteFile(dead+"/netns-1", []byte(name), 0o600)
	sweepDead()
	if got := netnsWith(t, name); len(got) != 0 {
		run("ip", "netns", "delete", name)
		t.Fatalf("sweep left %v", got)
	}
	if _, err := os.Stat(dead); err == nil {
		t.Fatal("sweep left the dead owner's directory")
	}
}

func netnsWith(t *testing.T, s string) []string {
	out, err := run("ip", "netns", "list")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) > 0 && strings.Contains(f[0], s) {
			got = append(got, f[0])
		}
	}
	return got
}

// TestRawSCTP sends a crafted SCTP INIT (this kernel has no SCTP sockets)
// and sees it with a raw socket.
func TestRawSCTP(t *testing.T) {
	topo := NewTopology(t, Options{})
	raw := MustListenRaw(t, topo.Node, ProtoSCTP)
	seg := SCTPInit(5000, 8082, 0xdecafbad)
	if !SCTPChecksumOK(seg) {
		t.Fatal("crafted SCTP checksum is wrong")
	}
	if err := SendIPv4(topo.Ext, IPv4(ExtAddr, NodeAddr, ProtoSCTP, 64, 1, seg)); err != nil {
		t.Fatal(err)
	}
	p, err := raw.Next(2*time.Second, func(p IPv4Packet) bool { _, d := p.Ports(); return d == 8082 })
	if err != nil {
		t.Fatalf("sctp not seen: %v", err)
	}
	if p.Src != ExtAddr || p.Dst != NodeAddr || !SCTPChecksumOK(p.Payload) {
		t.Fatalf("sctp seen as %v (checksum ok %v)", p, SCTPChecksumOK(p.Payload))
	}
}

// TestICMPErrors crafts frag-needed and time-exceeded for a flow, as the
// external host does in B5, here without NAT in between.
func TestICMPErrors(t *testing.T) {
	topo := NewTopology(t, Options{})
	ListenUDP(t, topo.Ext, "ext", ":7000")
	dst := netip.MustParseAddrPort("192.0.2.2:7000")

	capture := func(p *UDPProbe) IPv4Packet {
		t.Helper()
		raw := MustListenRaw(t, topo.Ext, ProtoUDP)
		if err := p.Send([]byte("probe")); err != nil {
			t.Fatal(err)
		}
		pkt, err := raw.Next(2*time.Second, func(q IPv4Packet) bool { s, _ := q.Ports(); return s == p.Local().Port() })
		if err != nil {
			t.Fatalf("probe not captured: %v", err)
		}
		return pkt
	}

	p, err := NewUDPProbe(topo.Node, dst, ProbeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if mtu, _ := p.PathMTU(); mtu != 1500 {
		t.Fatalf("initial path MTU %d", mtu)
	}
	pkt := capture(p)
	if err := SendICMPv4(topo.Ext, pkt.Src, ICMPv4Error(ICMPDestUnreachable, ICMPCodeFragNeeded, 1300, pkt.Quote())); err != nil {
		t.Fatal(err)
	}
	if mtu, err := p.WaitPathMTU(1300, 2*time.Second); err != nil || mtu != 1300 {
		t.Fatalf("path MTU after frag-needed: %d %v", mtu, err)
	}

	q, err := NewUDPProbe(topo.Node, dst, ProbeOptions{RecvErr: true})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	pkt = capture(q)
	if err := SendICMPv4(topo.Ext, pkt.Src, ICMPv4Error(ICMPTimeExceeded, ICMPCodeTTLInTransit, 0, pkt.Quote())); err != nil {
		t.Fatal(err)
	}
	se, err := q.ReadError(2 * time.Second)
	if err != nil {
		t.Fatalf("time exceeded not queued: %v", err)
	}
	if se.Type != ICMPTimeExceeded || se.Origin != unix.SO_EE_ORIGIN_ICMP || se.Offender != ExtAddr {
		t.Fatalf("error queue: %v", se)
	}
}

// TestSendFrame sends frames at the node's MAC: one to its address reaches
// it, one to 127.0.0.1 is a martian the node drops by default.
func TestSendFrame(t *testing.T) {
	topo := NewTopology(t, Options{})
	raw := MustListenRaw(t, topo.Node, ProtoTCP)
	up, err := topo.Node.Interface(UplinkName)
	if err != nil {
		t.Fatal(err)
	}
	eth, err := topo.Ext.Interface(ExtIfname)
	if err != nil {
		t.Fatal(err)
	}
	send := func(dst netip.Addr, port uint16) {
		ip := IPv4(ExtAddr, dst, ProtoTCP, 64, 7, TCPSyn(ExtAddr, dst, 41000, port, 1))
		if err := SendFrame(topo.Ext, ExtIfname, Ethernet(up.HardwareAddr, eth.HardwareAddr, EthIPv4, ip)); err != nil {
			t.Fatal(err)
		}
	}
	match := func(port uint16) func(IPv4Packet) bool {
		return func(p IPv4Packet) bool { _, d := p.Ports(); return d == port }
	}
	send(NodeAddr, 9101)
	if _, err := raw.Next(2*time.Second, match(9101)); err != nil {
		t.Fatalf("frame to the node's address not seen: %v", err)
	}
	send(netip.MustParseAddr("127.0.0.1"), 9102)
	if p, err := raw.Next(500*time.Millisecond, match(9102)); err == nil {
		t.Fatalf("frame to 127.0.0.1 was accepted: %v", p)
	}
}

const fakeAgentEnv = "NSTEST_FAKE_AGENT"

// TestAgentLifecycle runs this test binary as a stand-in portcullisd to
// check StartAgent, Restart, Stop, Uninstall and the private bpffs.
func TestAgentLifecycle(t *testing.T) {
	topo := NewTopology(t, Options{})
	t.Setenv(fakeAgentEnv, "1")
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	a := topo.StartAgent(AgentOptions{Binary: bin, Backend: "nftables"})
	st, err := a.Status()
	if err != nil || st["backend"] != "nftables" || st["bpffs"] != true || st["netns"] != topo.Node.Name {
		t.Fatalf("status %v %v\nlog:\n%s", st, err, a.Logs())
	}
	fp, err := Inspect(topo.Node, a.BPFFSMount)
	if err != nil {
		t.Fatal(err)
	}
	if len(fp.Pinned) != 0 || len(fp.TCFilters) != 0 || len(fp.TCX) != 0 {
		t.Fatalf("footprint of a fake agent: %+v", fp)
	}
	if err := a.Restart(); err != nil {
		t.Fatal(err)
	}
	if !a.Running() {
		t.Fatal("not running after restart")
	}
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	if a.Running() {
		t.Fatal("running after stop")
	}
	if out, err := a.Uninstall(); err != nil || !strings.Contains(out, "uninstalled") {
		t.Fatalf("uninstall: %q %v", out, err)
	}
	if logs := a.Logs(); strings.Count(logs, "=== nstest: start") != 2 || !strings.Contains(logs, "fake agent serving") {
		t.Fatalf("log:\n%s", logs)
	}
}

// TestLinkLocalZones dials link-local addresses with the same zone name
// (eth0) from two namespaces where eth0 has different indices: Go's
// process-wide zone cache must not leak one namespace's index into the
// other.
func TestLinkLocalZones(t *testing.T) {
	topo := NewTopology(t, Options{})
	ListenTCP(t, topo.Node, "node", "[::]:7000")
	ListenUDP(t, topo.Node, "node", "[::]:7000")
	// Each veth pair takes new indices in the node, and eth0 keeps its
	// index when moved: every container's eth0 has a different one.
	for _, name := range []string{"c1", "c2", "c3"} {
		c := topo.AddContainer(name)
		host := "v" + name
		topo.Node.MustIP(t, "link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", c.Name)
		topo.Node.MustIP(t, "link", "set", host, "up")
		c.MustIP(t, "link", "set", "eth0", "up")
		if err := c.WaitInterface("eth0", netip.Addr{}, 3*time.Second); err != nil {
			t.Fatal(err)
		}
		if err := topo.Node.WaitInterface(host, netip.Addr{}, 3*time.Second); err != nil {
			t.Fatal(err)
		}
		ll, err := topo.Node.LinkLocal(host)
		if err != nil {
			t.Fatal(err)
		}
		dst := netip.AddrPortFrom(ll.WithZone("eth0"), 7000).String()
		if r := DialTCP(c, dst, DialOptions{}); !r.OK() || r.Server != "node" || r.Seen.Addr().Zone() != "" {
			t.Fatalf("tcp %s -> %s: %v", name, dst, r)
		}
		if r := ExchangeUDP(c, dst, DialOptions{}); !r.OK() {
			t.Fatalf("udp %s -> %s: %v", name, dst, r)
		}
		if err := Ping(c, ll.WithZone("eth0").String(), time.Second); err != nil {
			t.Fatal(err)
		}
	}
}
