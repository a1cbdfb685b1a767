package nstest

import (
	"fmt"
	"net/netip"
	"sync"
	"time"
)

// Addresses of the default topology. The uplink is a veth: up0 in the node,
// eth0 in the external host, on 192.0.2.0/24 and 2001:db8:1::/64.
const (
	UplinkName = "up0"
	ExtIfname  = "eth0"
)

var (
	NodeAddr  = netip.MustParseAddr("192.0.2.1")
	ExtAddr   = netip.MustParseAddr("192.0.2.2")
	NodeAddr6 = netip.MustParseAddr("2001:db8:1::1")
	ExtAddr6  = netip.MustParseAddr("2001:db8:1::2")
)

// Options shape a topology.
type Options struct {
	// NodeAddrs are extra IPv4 addresses of the node on the uplink's /24,
	// e.g. 192.0.2.10 for host_ip and SNAT cases.
	NodeAddrs []netip.Addr
}

// Topology is a node namespace, an external host on its uplink, and the
// container namespaces added with AddContainer. The node has no bridge: the
// agent creates bridges and veths.
type Topology struct {
	tb     TB
	Suffix string
	Node   *NS
	Ext    *NS

	mu         sync.Mutex
	containers map[string]*NS
}

// NewTopology builds the node and the external host and removes both at
// cleanup:
//
//	node: lo, up0 192.0.2.1/24 (+ opts.NodeAddrs) 2001:db8:1::1/64,
//	      default routes via 192.0.2.2 and 2001:db8:1::2, forwarding on
//	ext:  lo, eth0 192.0.2.2/24 2001:db8:1::2/64
//
// IPv6 duplicate address detection is off in every namespace of the
// topology, so addresses (the agent's too) are usable at once.
func NewTopology(tb TB, opts Options) *Topology {
	tb.Helper()
	RequireRoot(tb)
	t := &Topology{tb: tb, Suffix: RandomSuffix(), containers: map[string]*NS{}}
	t.Node = NewNS(tb, "node", t.Suffix)
	t.Ext = NewNS(tb, "ext", t.Suffix)
	// Containers go before the node and after everything registered later
	// (the agent, servers): the agent's uninstall at cleanup then sees every
	// veth it made still in place.
	tb.Cleanup(t.deleteContainers)
	if err := t.build(opts); err != nil {
		tb.Fatalf("nstest: build topology %s: %v", t.Suffix, err)
	}
	return t
}

func (t *Topology) build(opts Options) error {
	sysctls := []struct {
		ns       *NS
		key, val string
	}{
		{t.Node, "net.ipv4.ip_forward", "1"},
		{t.Node, "net.ipv6.conf.all.forwarding", "1"},
		{t.Node, "net.ipv6.conf.all.accept_dad", "0"},
		{t.Node, "net.ipv6.conf.default.accept_dad", "0"},
		{t.Ext, "net.ipv6.conf.all.accept_dad", "0"},
		{t.Ext, "net.ipv6.conf.default.accept_dad", "0"},
	}
	for _, s := range sysctls {
		if err := s.ns.SetSysctl(s.key, s.val); err != nil {
			return err
		}
	}
	// Created inside the node namespace with its peer placed straight into
	// the external one: no interface ever exists in the root namespace.
	cmds := []struct {
		ns   *NS
		args []string
	}{
		{t.Node, []string{"link", "add", UplinkName, "type", "veth", "peer", "name", ExtIfname, "netns", t.Ext.Name}},
		{t.Node, []string{"addr", "add", NodeAddr.String() + "/24", "dev", UplinkName}},
		{t.Node, []string{"-6", "addr", "add", NodeAddr6.String() + "/64", "dev", UplinkName, "nodad"}},
		{t.Node, []string{"link", "set", UplinkName, "up"}},
		{t.Ext, []string{"addr", "add", ExtAddr.String() + "/24", "dev", ExtIfname}},
		{t.Ext, []string{"-6", "addr", "add", ExtAddr6.String() + "/64", "dev", ExtIfname, "nodad"}},
		{t.Ext, []string{"link", "set", ExtIfname, "up"}},
		{t.Node, []string{"route", "add", "default", "via", ExtAddr.String()}},
		{t.Node, []string{"-6", "route", "add", "default", "via", ExtAddr6.String()}},
	}
	for _, a := range opts.NodeAddrs {
		cmds = append(cmds, struct {
			ns   *NS
			args []string
		}{t.Node, []string{"addr", "add", a.String() + "/24", "dev", UplinkName}})
	}
	for _, c := range cmds {
		if _, err := c.ns.IP(c.args...); err != nil {
			return err
		}
	}
	if err := t.Node.WaitInterface(UplinkName, NodeAddr, 5*time.Second); err != nil {
		return err
	}
	return t.Ext.WaitInterface(ExtIfname, ExtAddr, 5*time.Second)
}

// AddContainer creates the namespace pct-<name>-<suffix> for the agent to
// plug (pass its Path as the endpoint's netns). It has only lo, up.
func (t *Topology) AddContainer(name string) *NS {
	t.tb.Helper()
	ns, err := CreateNS(Prefix + name + "-" + t.Suffix)
	if err != nil {
		t.tb.Fatalf("%v", err)
	}
	t.mu.Lock()
	t.containers[name] = ns
	t.mu.Unlock()
	for _, k := range []string{"net.ipv6.conf.all.accept_dad", "net.ipv6.conf.default.accept_dad"} {
		if err := ns.SetSysctl(k, "0"); err != nil {
			t.tb.Fatalf("%v", err)
		}
	}
	return ns
}

func (t *Topology) deleteContainers() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for name, ns := range t.containers {
		ns.Delete()
		delete(t.containers, name)
	}
}

// Container returns a namespace made by AddContainer.
func (t *Topology) Container(name string) *NS {
	t.mu.Lock()
	defer t.mu.Unlock()
	ns, ok := t.containers[name]
	if !ok {
		panic(fmt.Sprintf("nstest: no container %q in topology %s", name, t.Suffix))
	}
	return ns
}

// ExtRoute gives the external host a route, e.g. to the container subnet
// via the node (ExtRoute("172.17.0.0/16", NodeAddr)).
func (t *Topology) ExtRoute(prefix string, via netip.Addr) {
	t.tb.Helper()
	args := []string{"route", "add", prefix, "via", via.String()}
	if via.Is6() {
		args = append([]string{"-6"}, args...)
	}
	t.Ext.MustIP(t.tb, args...)
}

// StartAgent runs portcullisd in the node namespace (see StartAgent).
func (t *Topology) StartAgent(opts AgentOptions) *Agent {
	t.tb.Helper()
	return StartAgent(t.tb, t.Node, opts)
}
