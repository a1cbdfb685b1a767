package conformance

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/dataplane/api"
	"github.com/portcullis/portcullis/dataplane/model"
	"github.com/portcullis/portcullis/internal/nstest"
)

// Time budgets: a path that must work gets reachTimeout, a path that must
// not gets probeTimeout (every blocked check waits that long).
const (
	reachTimeout = 2 * time.Second
	probeTimeout = time.Second
	// bulkTimeout bounds bulkTCP: 8 MB each way take milliseconds on this
	// path, minutes when full-sized segments are lost.
	bulkTimeout = 10 * time.Second
	plugTimeout = 5 * time.Second
)

// Extra node addresses on the uplink, for host_ip and SNAT rows.
var (
	nodeAddr2 = netip.MustParseAddr("192.0.2.10")
	nodeAddr3 = netip.MustParseAddr("192.0.2.11")
)

// env is one row's world: a topology, an agent in its node namespace, an
// API client, and the networks and containers the row made.
type env struct {
	t     *testing.T
	ctx   context.Context
	topo  *nstest.Topology
	agent *nstest.Agent
	api   *api.Client
	nets  map[string]netInfo
}

// netInfo is how container addresses are derived on a network: host n gets
// <v4>.n and <v6>n.
type netInfo struct {
	v4, v6 string
}

// ctr is a container: a namespace the agent plugged as endpoint ID.
type ctr struct {
	ID  string
	NS  *nstest.NS
	IP  netip.Addr
	IP6 netip.Addr // invalid on an IPv4-only network
}

// at returns "ip:port" of the container's IPv4 address.
func (c *ctr) at(port int) string { return netip.AddrPortFrom(c.IP, uint16(port)).String() }

// at6 returns "[ip6]:port" of the container's IPv6 address.
func (c *ctr) at6(port int) string { return netip.AddrPortFrom(c.IP6, uint16(port)).String() }

// newEnv builds a topology (with extra node addresses) and starts the agent
// with the backend under test.
func newEnv(t *testing.T, nodeAddrs ...netip.Addr) *env {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	topo := nstest.NewTopology(t, nstest.Options{NodeAddrs: nodeAddrs})
	a := topo.StartAgent(nstest.AgentOptions{Backend: *backend, Binary: agentBinary})
	e := &env{t: t, ctx: ctx, topo: topo, agent: a, api: api.NewClient(a.Socket),
		nets: map[string]netInfo{}}
	e.checkBackend()
	return e
}

// checkBackend fails the row when the agent runs another backend than the
// one asked for: a silent fallback would test the wrong thing.
func (e *env) checkBackend() {
	st, err := e.api.Status(e.ctx)
	if err != nil {
		e.t.Fatalf("GET /v1/status: %v", err)
	}
	if got, ok := st["backend"].(string); ok && got != *backend {
		e.t.Fatalf("agent runs backend %q, asked for %q (status: %v)", got, *backend, st)
	}
}

// network PUTs a network and remembers how to address its containers.
func (e *env) network(n model.Network) {
	e.t.Helper()
	if _, err := e.api.PutNetwork(e.ctx, n); err != nil {
		e.t.Fatalf("PUT network %s: %v", n.Name, err)
	}
	ni := netInfo{v4: strings.TrimSuffix(n.Gateway, ".1")}
	if n.Gateway6 != "" {
		ni.v6 = strings.TrimSuffix(n.Gateway6, "1")
	}
	e.nets[n.Name] = ni
}

// pc0 is the default network, like docker0: bridge pc0, 172.17.0.0/16,
// gateway 172.17.0.1, and with v6 2001:db8:17::/64 too.
func pc0(v6 bool) model.Network {
	n := model.Network{Name: "pc0", Bridge: "pc0", Subnet: "172.17.0.0/16", Gateway: "172.17.0.1"}
	if v6 {
		n.Subnet6, n.Gateway6 = "2001:db8:17::/64", "2001:db8:17::1"
	}
	return n
}

// pc1 is a second network: bridge pc1, 172.18.0.0/16.
func pc1(v6 bool) model.Network {
	n := model.Network{Name: "pc1", Bridge: "pc1", Subnet: "172.18.0.0/16", Gateway: "172.18.0.1"}
	if v6 {
		n.Subnet6, n.Gateway6 = "2001:db8:18::/64", "2001:db8:18::1"
	}
	return n
}

func boolp(b bool) *bool { return &b }

// container makes a namespace and PUTs endpoint id for it on network as
// host number host (172.17.0.<host>), then waits until the agent has
// plugged eth0 with the address. mod may adjust the endpoint first.
func (e *env) container(id, network string, host int, mod ...func(*model.Endpoint)) *ctr {
	e.t.Helper()
	ni, ok := e.nets[network]
	if !ok {
		e.t.Fatalf("container %s: network %s not created by this row", id, network)
	}
	c := &ctr{ID: id, NS: e.topo.AddContainer(id), IP: netip.MustParseAddr(fmt.Sprintf("%s.%d", ni.v4, host))}
	ep := model.Endpoint{ID: id, Network: network, IP: c.IP.String(), Netns: c.NS.Path, Name: id, Hostname: id}
	if ni.v6 != "" {
		c.IP6 = netip.MustParseAddr(fmt.Sprintf("%s%x", ni.v6, host))
		ep.IP6 = c.IP6.String()
	}
	for _, m := range mod {
		m(&ep)
	}
	if _, err := e.api.PutEndpoint(e.ctx, ep); err != nil {
		e.t.Fatalf("PUT endpoint %s: %v", id, err)
	}
	ifname := ep.Ifname
	if ifname == "" {
		ifname = "eth0"
	}
	if err := c.NS.WaitInterface(ifname, c.IP, plugTimeout); err != nil {
		e.t.Fatalf("agent did not plug endpoint %s: %v", id, err)
	}
	if c.IP6.IsValid() {
		if err := c.NS.WaitInterface(ifname, c.IP6, plugTimeout); err != nil {
			e.t.Fatalf("agent did not give endpoint %s its IPv6 address: %v", id, err)
		}
	}
	return c
}

// publish PUTs a port mapping (docker -p) and fails the row on error.
func (e *env) publish(p model.PortMapping) {
	e.t.Helper()
	if _, err := e.api.PutPort(e.ctx, p); err != nil {
		e.t.Fatalf("PUT port %s: %v", p.ID, err)
	}
}

// tcpPort is the usual single-port mapping.
func tcpPort(id, ep string, hostPort, port int) model.PortMapping {
	return model.PortMapping{ID: id, Endpoint: ep, Proto: "tcp", HostPort: hostPort, Port: port}
}

func udpPort(id, ep string, hostPort, port int) model.PortMapping {
	return model.PortMapping{ID: id, Endpoint: ep, Proto: "udp", HostPort: hostPort, Port: port}
}

// link PUTs a link and returns the agent's answer. It takes the caller's t:
// subtests link too.
func (e *env) link(t *testing.T, parent, alias, child string) model.Link {
	t.Helper()
	l, err := e.api.PutLink(e.ctx, model.Link{Parent: parent, Alias: alias, Child: child})
	if err != nil {
		t.Fatalf("PUT link %s/%s -> %s: %v", parent, alias, child, err)
	}
	return l
}

// ext is the external host's namespace; node the node's.
func (e *env) ext() *nstest.NS  { return e.topo.Ext }
func (e *env) node() *nstest.NS { return e.topo.Node }

// servers starts a TCP and a UDP server named name on port (dual-stack).
func servers(t *testing.T, ns *nstest.NS, name string, port int) (*nstest.TCPServer, *nstest.UDPServer) {
	t.Helper()
	addr := fmt.Sprintf("[::]:%d", port)
	return nstest.ListenTCP(t, ns, name, addr), nstest.ListenUDP(t, ns, name, addr)
}

// --- expectations: each says what a user would check, and fails the row
// with what happened instead. They report with Errorf so a row shows every
// broken path, not just the first.

// reachTCP expects a TCP exchange from ns to dst answered by server.
func reachTCP(t *testing.T, from *nstest.NS, dst, server string, opts ...nstest.DialOptions) nstest.TCPResult {
	t.Helper()
	o := dialOpts(reachTimeout, opts)
	r := nstest.DialTCP(from, dst, o)
	switch {
	case !r.OK():
		t.Errorf("tcp %s -> %s: want answer from %s, %v", from, dst, server, r.Err)
	case r.Server != server:
		t.Errorf("tcp %s -> %s: answered by %s, want %s", from, dst, r.Server, server)
	}
	return r
}

// bulkBytes is how much bulkTCP streams each way: enough for TCP to send
// full-sized (GSO) segments for most of it, a few milliseconds here.
const bulkBytes = 8 << 20

// bulkTCP expects a TCP connection from ns to dst, answered by server, to
// carry bulkBytes each way at once, in at most bulkTimeout: bulk data, not
// just the handshake and a byte, gets through in both directions.
func bulkTCP(t *testing.T, from *nstest.NS, dst, server string) {
	t.Helper()
	r, err := nstest.StreamTCP(from, dst, bulkBytes, bulkTimeout)
	if !r.OK() {
		t.Errorf("tcp %s -> %s: want answer from %s, %v", from, dst, server, r.Err)
		return
	}
	if r.Server != server {
		t.Errorf("tcp %s -> %s: answered by %s, want %s", from, dst, r.Server, server)
	}
	if err != nil {
		t.Errorf("tcp %s -> %s: %d bytes each way: %v", from, dst, bulkBytes, err)
	}
}

// udpClient opens a UDP socket from ns to dst (reachTimeout per exchange
// unless opts say otherwise), closed when the test ends.
func udpClient(t *testing.T, from *nstest.NS, dst string, opts ...nstest.DialOptions) *nstest.UDPClient {
	t.Helper()
	c, err := nstest.NewUDPClient(from, dst, dialOpts(reachTimeout, opts))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// reachUDP expects a UDP exchange from ns to dst answered by server.
func reachUDP(t *testing.T, from *nstest.NS, dst, server string, opts ...nstest.DialOptions) nstest.UDPResult {
	t.Helper()
	r := nstest.ExchangeUDP(from, dst, dialOpts(reachTimeout, opts))
	switch {
	case !r.OK():
		t.Errorf("udp %s -> %s: want answer from %s, %v", from, dst, server, r.Err)
	case r.Server != server:
		t.Errorf("udp %s -> %s: answered by %s, want %s", from, dst, r.Server, server)
	}
	return r
}

// reachPing expects an ICMP echo reply from dst.
func reachPing(t *testing.T, from *nstest.NS, dst string) {
	t.Helper()
	if err := nstest.Ping(from, dst, reachTimeout); err != nil {
		t.Errorf("ping %s -> %s: %v", from, dst, err)
	}
}

// seenAs expects a peer address seen by a server.
func seenAs(t *testing.T, what string, got netip.AddrPort, want netip.Addr) {
	t.Helper()
	if got.IsValid() && got.Addr() != want {
		t.Errorf("%s: server saw %s, want %s", what, got.Addr(), want)
	}
}

func dialOpts(def time.Duration, opts []nstest.DialOptions) nstest.DialOptions {
	var o nstest.DialOptions
	if len(opts) > 0 {
		o = opts[0]
	}
	if o.Timeout == 0 {
		o.Timeout = def
	}
	return o
}

// from binds a client's source.
func from(ap string) nstest.DialOptions {
	return nstest.DialOptions{Local: netip.MustParseAddrPort(ap)}
}

// fromPort binds a client's source port.
func fromPort(p uint16) nstest.DialOptions { return nstest.DialOptions{Local: nstest.Port(p)} }

// hostAt returns "addr:port" for a node or external address.
func hostAt(a netip.Addr, port int) string { return netip.AddrPortFrom(a, uint16(port)).String() }

// apiStatus returns the HTTP status of a refused request (0 when it was
// not refused with a *model.Error).
func apiStatus(err error) int {
	var me *model.Error
	if errors.As(err, &me) {
		return me.Status
	}
	return 0
}
