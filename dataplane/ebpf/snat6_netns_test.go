package ebpf

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/portcullis/portcullis/dataplane"
	"github.com/portcullis/portcullis/dataplane/model"
	"github.com/portcullis/portcullis/internal/nstest"
)

// TestTrafficMasquerade6 is B1 and B4 over IPv6 with real packets: two
// containers of a network with an IPv6 subnet and masquerade reach an
// external host over TCP, UDP and ping6; the host, which has no route to
// the containers' subnet, sees the node's IPv6 address and its replies
// come back. The flows list as translated.
func TestTrafficMasquerade6(t *testing.T) {
	requireBPF(t)
	nstest.RequireRoot(t)
	sfx := nstest.RandomSuffix()
	node, ext := nstest.NewNS(t, "node", sfx), nstest.NewNS(t, "ext", sfx)
	ca, cb := nstest.NewNS(t, "ca", sfx), nstest.NewNS(t, "cb", sfx)
	node6, ext6 := netip.MustParseAddr("2001:db8:1::1"), netip.MustParseAddr("2001:db8:1::2")
	gw6 := netip.MustParseAddr("2001:db8:17::1")
	a6, b6 := netip.MustParseAddr("2001:db8:17::2"), netip.MustParseAddr("2001:db8:17::3")

	node.MustIP(t, "link", "add", "pc0", "type", "bridge")
	node.MustIP(t, "addr", "add", "172.17.0.1/16", "dev", "pc0")
	node.MustIP(t, "-6", "addr", "add", gw6.String()+"/64", "dev", "pc0", "nodad")
	node.MustIP(t, "link", "set", "pc0", "up")
	for _, c := range []struct {
		ns       *nstest.NS
		veth, ip string
		ip6      netip.Addr
		mac      string
	}{{ca, "veth-a", "172.17.0.2/16", a6, macA.String()}, {cb, "veth-b", "172.17.0.3/16", b6, macB.String()}} {
		node.MustIP(t, "link", "add", c.veth, "type", "veth", "peer", "name", "eth0", "netns", c.ns.Name)
		node.MustIP(t, "link", "set", c.veth, "master", "pc0", "up")
		c.ns.MustIP(t, "link", "set", "eth0", "address", c.mac)
		c.ns.MustIP(t, "addr", "add", c.ip, "dev", "eth0")
		c.ns.MustIP(t, "-6", "addr", "add", c.ip6.String()+"/64", "dev", "eth0", "nodad")
		c.ns.MustIP(t, "link", "set", "eth0", "up")
		c.ns.MustIP(t, "route", "add", "default", "via", "172.17.0.1")
		c.ns.MustIP(t, "-6", "route", "add", "default", "via", gw6.String())
	}
	node.MustIP(t, "link", "add", "up0", "type", "veth", "peer", "name", "eth0", "netns", ext.Name)
	node.MustIP(t, "addr", "add", "192.0.2.1/24", "dev", "up0")
	node.MustIP(t, "-6", "addr", "add", node6.String()+"/64", "dev", "up0", "nodad")
	node.MustIP(t, "link", "set", "up0", "up")
	node.MustIP(t, "route", "add", "default", "via", "192.0.2.2")
	node.MustIP(t, "-6", "route", "add", "default", "via", ext6.String())
	ext.MustIP(t, "addr", "add", "192.0.2.2/24", "dev", "eth0")
	ext.MustIP(t, "-6", "addr", "add", ext6.String()+"/64", "dev", "eth0", "nodad")
	ext.MustIP(t, "link", "set", "eth0", "up")
	for _, k := range []string{"net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"} {
		if err := node.SetSysctl(k, "1"); err != nil {
			t.Fatal(err)
		}
	}

	n := &model.RNetwork{Name: "pc0", Bridge: "pc0", Subnet: netip.MustParsePrefix("172.17.0.0/16"), Gateway: ipGW,
		Subnet6: netip.MustParsePrefix("2001:db8:17::/64"), Gateway6: gw6, ICC: true, Masquerade: true}
	a := &model.REndpoint{ID: "a", Net: n, IP: ipA, IP6: a6, MAC: macA, HostIfname: "veth-a"}
	b := &model.REndpoint{ID: "b", Net: n, IP: ipB, IP6: b6, MAC: macB, HostIfname: "veth-b"}
	want := &model.Resolved{
		Networks:  map[string]*model.RNetwork{"pc0": n},
		Endpoints: map[string]*model.REndpoint{"a": a, "b": b},
		Ports:     map[string]*model.RPort{},
		Links:     map[string]*model.RLink{},
	}
	cfg := DefaultConfig()
	be, err := New(Options{Attach: AttachAuto, Config: &cfg, GCInterval: -1, PinDir: testPinDir(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { node.Do(func() error { return be.Uninstall(context.Background()) }) })
	if err := node.Do(func() error { return be.Apply(context.Background(), want, nil, true) }); err != nil {
		t.Fatal(err)
	}

	extAt := netip.AddrPortFrom(ext6, 7000).String()
	nstest.ListenTCP(t, ext, "ext", extAt)
	nstest.ListenUDP(t, ext, "ext", extAt)
	pings := nstest.MustCapture(t, ext, nstest.CaptureICMP)
	// The same source port from both containers at once (B4): the second
	// flow must leave from another port.
	var seen []netip.AddrPort
	for _, c := range []*nstest.NS{ca, cb} {
		conn, r := nstest.ConnectTCP(c, extAt, nstest.DialOptions{Timeout: 2 * time.Second, Local: nstest.Port(40000)})
		if !r.OK() || r.Seen.Addr() != node6 {
			t.Fatalf("tcp from %s: %v, seen as %v, want %v", c.Name, r.Err, r.Seen, node6)
		}
		defer conn.Close()
		seen = append(seen, r.Seen)
		u := nstest.ExchangeUDP(c, extAt, nstest.DialOptions{Timeout: 2 * time.Second})
		if !u.OK() || u.Seen.Addr() != node6 {
			t.Fatalf("udp from %s: %v, seen as %v, want %v", c.Name, u.Err, u.Seen, node6)
		}
		if err := nstest.Ping(c, ext6.String(), 2*time.Second); err != nil {
			t.Fatalf("ping6 from %s: %v", c.Name, err)
		}
	}
	if seen[0] == seen[1] {
		t.Fatalf("both containers' connections seen as %v", seen[0])
	}
	as, err := pings.Arrivals(200 * time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	echoes := 0
	for _, p := range as {
		if p.IsEchoRequest() {
			echoes++
			if p.Src != node6 {
				t.Errorf("echo request reached ext from %v, want %v", p.Src, node6)
			}
		}
	}
	if echoes < 2 {
		t.Errorf("ext saw %d echo requests, want 2: %v", echoes, as)
	}
	flows, err := be.Flows(context.Background(), dataplane.FlowFilter{Addr: a6, Proto: "tcp"})
	if err != nil || len(flows) != 1 || flows[0].Reply[1] != seen[0] || len(flows[0].NAT) != 1 || flows[0].NAT[0] != "snat" {
		t.Fatalf("a's tcp flow: %+v, %v; want one, snat, replies to %v", flows, err, seen[0])
	}
	requireNoDrops(t, be)
}
