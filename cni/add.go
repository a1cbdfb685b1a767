package cni

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/vishvananda/netlink"

	"github.com/portcullis/portcullis/dataplane/model"
)

// Funcs are the plugin's CNI commands, for skel.PluginMainFuncs.
func Funcs() skel.CNIFuncs {
	return skel.CNIFuncs{Add: Add, Del: Del, Check: Check, Status: Status, GC: GC}
}

// attachment is one (container, interface) pair being worked on.
type attachment struct {
	args  *skel.CmdArgs
	conf  *NetConf
	agent *agent
	epID  string
	host  string // host end of the veth
	// undo takes back, in reverse order, what a failing ADD made so far.
	undo []func() error
}

func newAttachment(args *skel.CmdArgs) (*attachment, error) {
	c, err := parseConf(args.StdinData)
	if err != nil {
		return nil, err
	}
	id := EndpointID(args.ContainerID, args.IfName)
	return &attachment{args: args, conf: c, agent: newAgent(c.Socket), epID: id, host: HostVethName(id)}, nil
}

// Add plugs the container: IPAM allocates, the plugin creates the veth into
// the container's namespace and configures it from the IPAM result,
// portcullisd attaches the host end to the network's bridge and programs
// the dataplane, and the port mappings are published.
//
// The plugin creates the veth, not the agent (which could, given the
// namespace path): CNI_NETNS is a path in the runtime's mount and PID
// namespaces, which the plugin shares and a sandboxed agent may not
// (/proc/PID/ns/net of another PID namespace, a /run/netns bind mount
// made after the agent's mount namespace was set up); the plugin applies
// the IPAM result whole (prefix lengths, routes, several addresses); and
// the interface exists when ADD returns, for the next plugin in the chain.
func Add(args *skel.CmdArgs) error {
	a, err := newAttachment(args)
	if err != nil {
		return err
	}
	if handled, err := a.chainedAdd(); handled { // after another plugin: chained.go
		return err
	}
	res, err := a.add(context.Background())
	if err != nil {
		return a.rollback(err)
	}
	return types.PrintResult(res, a.conf.CNIVersion)
}

// add does the ADD, recording in a.undo how to take back each step that
// changed something: the network (when this ADD created it), the address,
// the veth, the endpoint with its port mappings.
func (a *attachment) add(ctx context.Context) (*types100.Result, error) {
	n, err := a.network(ctx, a.conf)
	if err != nil {
		return nil, err
	}
	ip, err := newIPAM(a.args.StdinData, a.conf, a.args.Path)
	if err != nil {
		return nil, err
	}
	// The namespace is checked before anything is allocated: a repeated
	// ADD (which the spec forbids) then fails with nothing changed.
	ctr, err := openContainer(a.args.Netns)
	if err != nil {
		return nil, types.NewError(types.ErrInvalidNetNS, err.Error(), "")
	}
	defer ctr.Close()
	if err := ctr.absent(a.args.IfName); err != nil {
		return nil, err
	}
	alloc, err := ip.add(ctx)
	if err != nil {
		return nil, err
	}
	a.undo = append(a.undo, func() error { return ip.del(ctx) })
	return a.plug(ctx, ctr, n, alloc)
}

// network returns the agent network conf names, creating it if absent, and
// records how to take it back when this ADD created it.
func (a *attachment) network(ctx context.Context, conf *NetConf) (model.Network, error) {
	n, created, err := a.agent.ensureNetwork(ctx, conf)
	if err == nil && created {
		a.undo = append(a.undo, func() error { return a.agent.deleteCreatedNetwork(ctx, n.Name) })
	}
	return n, err
}

// rollback takes back, newest first, what a failed ADD changed, so that it
// changes nothing (the runtime also calls DEL afterwards), and returns the
// ADD's error, with the undo's failures when there are any.
func (a *attachment) rollback(err error) error {
	var undos []error
	for i := len(a.undo) - 1; i >= 0; i-- {
		undos = append(undos, a.undo[i]())
	}
	undo := errors.Join(undos...)
	if undo == nil {
		return err
	}
	var te *types.Error
	if errors.As(err, &te) {
		return types.NewError(te.Code, te.Msg+"; undoing the ADD failed too: "+undo.Error(), te.Details)
	}
	return fmt.Errorf("%w; undoing the ADD failed too: %v", err, undo)
}

// plug does everything after IPAM and returns the result.
func (a *attachment) plug(ctx context.Context, ctr *container, n model.Network, alloc *types100.Result) (*types100.Result, error) {
	addrs, err := endpointAddrs(n, alloc)
	if err != nil {
		return nil, err
	}
	addDefaultRoutes(alloc, addrs)
	mac, err := containerMAC(a.conf.RuntimeConfig, a.args.Args)
	if err != nil {
		return nil, err
	}
	pair, err := ctr.createVeth(a.host, a.args.IfName, vethAlias(a.conf.Name), n.MTU, mac)
	if err != nil {
		return nil, err
	}
	a.undo = append(a.undo, func() error { return deleteHostVeth(a.host) })
	if err := ctr.configure(pair.peer, alloc); err != nil {
		return nil, err
	}
	ep := model.Endpoint{ID: a.epID, Network: n.Name, IP: addrs.ip4.String(),
		MAC: pair.peer.Attrs().HardwareAddr.String(), HostIfname: a.host}
	if addrs.ip6.IsValid() {
		ep.IP6 = addrs.ip6.String()
	}
	// Undone even when the PUT fails: an agent that timed out may still
	// have applied it.
	a.undo = append(a.undo, func() error { return a.agent.deleteEndpoint(ctx, a.epID) })
	if _, err := a.agent.c.PutEndpoint(ctx, ep); err != nil {
		return nil, a.agent.wrap(err, "add endpoint %s (%s on %s)", ep.ID, ep.IP, n.Name)
	}
	ports, err := portMappings(a.epID, addrs.ip6.IsValid(), a.conf.RuntimeConfig.PortMappings)
	if err != nil {
		return nil, err
	}
	if err := a.agent.syncPorts(ctx, a.epID, ports); err != nil {
		return nil, err
	}
	return a.result(n, pair, alloc), nil
}

// addrs are an endpoint's addresses as the agent takes them.
type addrs struct {
	ip4, ip6 netip.Addr
	gw4, gw6 netip.Addr // the network's gateways
}

// endpointAddrs picks the endpoint's IPv4 (required) and IPv6 address from
// the IPAM result, checks them against the network, and fills in the
// network's gateways, which are the bridge's addresses.
func endpointAddrs(n model.Network, alloc *types100.Result) (addrs, error) {
	var out addrs
	for _, ipc := range alloc.IPs {
		a, _ := netip.AddrFromSlice(ipc.Address.IP)
		a = a.Unmap()
		gwText, field, at, gwAt := n.Gateway, "subnet", &out.ip4, &out.gw4
		if a.Is6() {
			gwText, field, at, gwAt = n.Gateway6, "subnet6", &out.ip6, &out.gw6
			if n.Subnet6 == "" {
				return out, invalidConf("IPAM gave IPv6 address %s but network %q has no subnet6: give the network a subnet6, or remove the IPv6 range from ipam", a, n.Name)
			}
		}
		if at.IsValid() {
			return out, invalidConf("IPAM gave two addresses of one family (%s and %s): portcullis endpoints have one IPv4 and at most one IPv6 address", *at, a)
		}
		gw, err := netip.ParseAddr(gwText)
		if err != nil {
			return out, fmt.Errorf("network %q has no valid gateway for %s (%q)", n.Name, field, gwText)
		}
		if ipc.Gateway != nil {
			if g, _ := netip.AddrFromSlice(ipc.Gateway); g.Unmap() != gw {
				return out, invalidConf("IPAM gateway %s differs from network %q's gateway %s (the bridge's address): set the range's gateway to %s or leave it out", ipc.Gateway, n.Name, gw, gw)
			}
		}
		ipc.Gateway = gw.AsSlice()
		*at, *gwAt = a, gw
	}
	if !out.ip4.IsValid() {
		return out, invalidConf("IPAM gave no IPv4 address: portcullis endpoints need one; add an IPv4 range to ipam")
	}
	return out, nil
}

// addDefaultRoutes adds a default route via the gateway for each family
// that has an address and no default route from IPAM, as Docker does and
// the bridge plugin's isDefaultGateway does.
func addDefaultRoutes(alloc *types100.Result, a addrs) {
	has := func(v4 bool) bool {
		for _, r := range alloc.Routes {
			ones, _ := r.Dst.Mask.Size()
			if ones == 0 && (r.Dst.IP.To4() != nil) == v4 {
				return true
			}
		}
		return false
	}
	if !has(true) {
		alloc.Routes = append(alloc.Routes, &types.Route{Dst: net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}, GW: a.gw4.AsSlice()})
	}
	if a.ip6.IsValid() && !has(false) {
		alloc.Routes = append(alloc.Routes, &types.Route{Dst: net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}, GW: a.gw6.AsSlice()})
	}
}

// result is the ADD result: the bridge, the host end and the container end
// (as the bridge plugin reports them: the bandwidth plugin finds the host
// end there), the addresses on the container end, routes and DNS.
func (a *attachment) result(n model.Network, pair *veth, alloc *types100.Result) *types100.Result {
	r := &types100.Result{CNIVersion: types100.ImplementedSpecVersion, Routes: alloc.Routes, DNS: alloc.DNS}
	if br, err := netlink.LinkByName(n.Bridge); err == nil {
		r.Interfaces = append(r.Interfaces, &types100.Interface{Name: n.Bridge, Mac: br.Attrs().HardwareAddr.String()})
	}
	r.Interfaces = append(r.Interfaces,
		&types100.Interface{Name: a.host, Mac: pair.host.Attrs().HardwareAddr.String()},
		&types100.Interface{Name: a.args.IfName, Mac: pair.peer.Attrs().HardwareAddr.String(), Sandbox: a.args.Netns},
	)
	idx := len(r.Interfaces) - 1
	for _, ipc := range alloc.IPs {
		ipc.Interface = types100.Int(idx)
		r.IPs = append(r.IPs, ipc)
	}
	if r.DNS.IsEmpty() {
		r.DNS = a.conf.DNS
	}
	return r
}
