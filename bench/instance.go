package bench

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/portcullis/portcullis/internal/nstest"
)

// The network every mode builds: a bridge like docker0 with two containers.
// c1 runs the measured services; c2 is the target of the filler mappings and
// the client of the container-to-container throughput test.
const (
	bridgeName = "pc0"
	subnet     = "172.17.0.0/16"
	gateway    = "172.17.0.1"
)

var (
	defaultC1 = netip.MustParseAddr("172.17.0.2")
	defaultC2 = netip.MustParseAddr("172.17.0.3")
)

// clientAddr is the i-th extra source address of the external host: each
// connection-rate client binds its own, so no client runs out of source
// ports to the one published address.
func clientAddr(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{192, 0, 2, byte(100 + i)})
}

// instance is one mode at one N in one round: freshly created, uniquely
// named namespaces (nstest's pct-<role>-<suffix>), torn down when it ends.
type instance struct {
	tb   *scope
	env  *env
	mode string
	n    int
	topo *nstest.Topology
	c1   *nstest.NS
	c2   *nstest.NS
	// Container addresses: fixed for the modes that plumb the bridge
	// themselves, whatever IPAM gave for cni-bridge-portmap.
	c1IP, c2IP netip.Addr
	// echoDst and iperfDst are where the external host reaches c1's
	// services: a published port on the node, or c1 itself in mode none.
	echoDst  netip.AddrPort
	iperfDst netip.AddrPort
	notes    []string
	// modeState is the mode's own: a rule handle, an agent, CNI files.
	modeState any
}

// newInstance builds the node, the external host and two empty container
// namespaces, and tunes the external host as a load generator.
func newInstance(tb *scope, e *env, mode string, n int, clients int) *instance {
	in := &instance{tb: tb, env: e, mode: mode, n: n, c1IP: defaultC1, c2IP: defaultC2}
	in.topo = nstest.NewTopology(tb, nstest.Options{})
	in.c1 = in.topo.AddContainer("c1")
	in.c2 = in.topo.AddContainer("c2")
	in.echoDst = netip.AddrPortFrom(nstest.NodeAddr, echoHostPort)
	in.iperfDst = netip.AddrPortFrom(nstest.NodeAddr, iperfPort)
	in.must(in.tuneClient(clients))
	return in
}

// tuneClient avoids the artefacts of a connection-rate test on the client
// side: TIME_WAIT sockets are reused for new outgoing connections, the whole
// port range is used, and every client has a source address of its own.
func (in *instance) tuneClient(clients int) error {
	ext := in.topo.Ext
	sysctls := []struct{ key, val string }{
		{"net.ipv4.tcp_tw_reuse", "1"},
		{"net.ipv4.ip_local_port_range", "1024 65535"},
		// 6.13+: how long after the last segment a TIME_WAIT port may be
		// reused (1 s by default). Older kernels lack it and use 1 s.
		{"net.ipv4.tcp_tw_reuse_delay", "100"},
	}
	for _, s := range sysctls {
		if err := ext.SetSysctl(s.key, s.val); err != nil && s.key != "net.ipv4.tcp_tw_reuse_delay" {
			return err
		}
	}
	for i := range clients {
		if _, err := ext.IP("addr", "add", clientAddr(i).String()+"/24", "dev", nstest.ExtIfname); err != nil {
			return err
		}
	}
	for _, ns := range []*nstest.NS{in.c1, in.c2} {
		if err := ns.SetSysctl("net.core.somaxconn", "4096"); err != nil {
			return err
		}
	}
	return nil
}

// plumb builds the bridge and the containers' veths by hand, as Docker's
// bridge driver does, for the modes that have no agent or CNI plugin to do
// it: pc0 172.17.0.1/16, c1 172.17.0.2 and c2 172.17.0.3 with MACs
// 02:42:ac:11:00:0X and a default route via the bridge.
func (in *instance) plumb() {
	node := in.topo.Node
	steps := [][]string{
		{"link", "add", bridgeName, "type", "bridge"},
		{"addr", "add", gateway + "/16", "dev", bridgeName},
		{"link", "set", bridgeName, "up"},
	}
	for _, s := range steps {
		in.must2(node.IP(s...))
	}
	for i, c := range []struct {
		ns *nstest.NS
		ip netip.Addr
	}{{in.c1, in.c1IP}, {in.c2, in.c2IP}} {
		host := fmt.Sprintf("veth-c%d", i+1)
		a := c.ip.As4()
		mac := fmt.Sprintf("02:42:%02x:%02x:%02x:%02x", a[0], a[1], a[2], a[3])
		in.must2(node.IP("link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", c.ns.Name))
		in.must2(node.IP("link", "set", host, "master", bridgeName, "up"))
		for _, s := range [][]string{
			{"link", "set", "eth0", "address", mac},
			{"addr", "add", c.ip.String() + "/16", "dev", "eth0"},
			{"link", "set", "eth0", "up"},
			{"route", "add", "default", "via", gateway},
		} {
			in.must2(c.ns.IP(s...))
		}
	}
	in.waitContainers()
}

// waitContainers waits until both containers' eth0 are up with their
// addresses.
func (in *instance) waitContainers() {
	for _, c := range []struct {
		ns *nstest.NS
		ip netip.Addr
	}{{in.c1, in.c1IP}, {in.c2, in.c2IP}} {
		in.must(c.ns.WaitInterface("eth0", c.ip, 10*time.Second))
	}
}

func (in *instance) must(err error) {
	if err != nil {
		in.tb.Fatalf("%s N=%d: %v", in.mode, in.n, err)
	}
}

func (in *instance) must2(_ string, err error) { in.must(err) }

func (in *instance) note(format string, args ...any) {
	in.notes = append(in.notes, fmt.Sprintf(format, args...))
}

func nodeAddr() netip.Addr { return nstest.NodeAddr }

func addrPort(a netip.Addr, port int) netip.AddrPort { return netip.AddrPortFrom(a, uint16(port)) }
