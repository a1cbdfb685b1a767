package cni

import (
	"context"
	"fmt"
	"net"
	"slices"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/vishvananda/netlink"

	"github.com/portcullis/portcullis/dataplane/model"
)

// Check verifies that the attachment is as ADD left it: the allocation
// (IPAM CHECK), the endpoint in portcullisd with the same address and host
// interface, the host end on the network's bridge, the container end with
// the addresses and routes of the previous result, and the published ports.
func Check(args *skel.CmdArgs) error {
	a, err := newAttachment(args)
	if err != nil {
		return err
	}
	if a.conf.PrevResult == nil {
		return invalidConf("CHECK needs prevResult: the runtime passes the cached ADD result")
	}
	prev, err := types100.GetResult(a.conf.PrevResult)
	if err != nil {
		return invalidConf("prevResult: %v", err)
	}
	if handled, err := a.chainedCheck(prev); handled { // chained.go
		return err
	}
	ctx := context.Background()
	ip, err := newIPAM(args.StdinData, a.conf, args.Path)
	if err != nil {
		return err
	}
	if err := ip.check(ctx); err != nil {
		return err
	}
	ep, err := a.agent.c.Endpoint(ctx, a.epID)
	if isNotFound(err) {
		return fmt.Errorf("endpoint %s of container %s (%s) is not in portcullisd", a.epID, args.ContainerID, args.IfName)
	}
	if err != nil {
		return a.agent.wrap(err, "read endpoint %s", a.epID)
	}
	n, err := a.agent.c.Network(ctx, ep.Network)
	if err != nil {
		return a.agent.wrap(err, "read network %s", ep.Network)
	}
	ctrIf, ips, err := a.prevInterface(prev)
	if err != nil {
		return err
	}
	if err := a.checkEndpoint(ep, ips); err != nil {
		return err
	}
	if err := checkAgentMAC(ep, ctrIf); err != nil {
		return err
	}
	hostIdx, err := a.checkHostVeth(n.Bridge)
	if err != nil {
		return err
	}
	if err := a.checkContainer(hostIdx, ctrIf, ips, prev.Routes); err != nil {
		return err
	}
	return a.checkPorts(ctx, ep)
}

// prevInterface finds the container interface in the previous result and
// the addresses on it.
func (a *attachment) prevInterface(prev *types100.Result) (*types100.Interface, []*types100.IPConfig, error) {
	idx := slices.IndexFunc(prev.Interfaces, func(i *types100.Interface) bool {
		return i.Name == a.args.IfName && i.Sandbox != ""
	})
	if idx < 0 {
		return nil, nil, fmt.Errorf("prevResult has no interface %s in a container namespace", a.args.IfName)
	}
	var ips []*types100.IPConfig
	for _, ip := range prev.IPs {
		if ip.Interface == nil || *ip.Interface == idx {
			ips = append(ips, ip)
		}
	}
	return prev.Interfaces[idx], ips, nil
}

func (a *attachment) checkEndpoint(ep model.Endpoint, ips []*types100.IPConfig) error {
	if ep.Network != a.conf.Network {
		return fmt.Errorf("endpoint %s is on network %q in portcullisd, not %q", ep.ID, ep.Network, a.conf.Network)
	}
	if ep.HostIfname != a.host {
		return fmt.Errorf("endpoint %s has host_ifname %q in portcullisd, not %q", ep.ID, ep.HostIfname, a.host)
	}
	for _, ip := range ips {
		got := ep.IP
		if ip.Address.IP.To4() == nil {
			got = ep.IP6
		}
		if want := ip.Address.IP.String(); got != want {
			return fmt.Errorf("endpoint %s has address %q in portcullisd, the ADD result %s", ep.ID, got, want)
		}
	}
	return nil
}

// checkHostVeth checks that the host end exists, is up and is attached to
// bridge, and returns its index.
func (a *attachment) checkHostVeth(bridge string) (int, error) {
	l, err := netlink.LinkByName(a.host)
	if err != nil {
		return 0, fmt.Errorf("host veth %s: %w", a.host, err)
	}
	br, err := netlink.LinkByName(bridge)
	if err != nil {
		return 0, fmt.Errorf("bridge %s: %w", bridge, err)
	}
	if l.Attrs().MasterIndex != br.Attrs().Index {
		return 0, fmt.Errorf("host veth %s is not attached to bridge %s", a.host, bridge)
	}
	if l.Attrs().Flags&net.FlagUp == 0 {
		return 0, fmt.Errorf("host veth %s is down", a.host)
	}
	return l.Attrs().Index, nil
}

// checkContainer checks the container end: the peer of the host end, with
// the MAC, addresses and routes of the previous result.
func (a *attachment) checkContainer(hostIdx int, want *types100.Interface, ips []*types100.IPConfig, routes []*types.Route) error {
	ctr, err := openContainer(a.args.Netns)
	if err != nil {
		return types.NewError(types.ErrInvalidNetNS, err.Error(), "")
	}
	defer ctr.Close()
	name := a.args.IfName
	l, err := ctr.h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("%s in %s: %w", name, ctr.path, err)
	}
	if l.Type() != "veth" || l.Attrs().ParentIndex != hostIdx {
		return fmt.Errorf("%s in %s is not the peer of host veth %s", name, ctr.path, a.host)
	}
	if want.Mac != "" && want.Mac != l.Attrs().HardwareAddr.String() {
		return fmt.Errorf("%s in %s has MAC %s, the ADD result %s", name, ctr.path, l.Attrs().HardwareAddr, want.Mac)
	}
	have, err := listRetry(func() ([]netlink.Addr, error) { return ctr.h.AddrList(l, netlink.FAMILY_ALL) })
	if err != nil {
		return fmt.Errorf("addresses of %s in %s: %w", name, ctr.path, err)
	}
	for _, ip := range ips {
		if !slices.ContainsFunc(have, func(h netlink.Addr) bool { return h.IPNet.String() == ip.Address.String() }) {
			return fmt.Errorf("%s in %s lacks address %s", name, ctr.path, ip.Address.String())
		}
	}
	rs, err := listRetry(func() ([]netlink.Route, error) {
		return ctr.h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{LinkIndex: l.Attrs().Index}, netlink.RT_FILTER_OIF)
	})
	if err != nil {
		return fmt.Errorf("routes in %s: %w", ctr.path, err)
	}
	for _, r := range routes {
		want := ctr.route(l, r, ips)
		if !slices.ContainsFunc(rs, func(h netlink.Route) bool { return sameRoute(h, *want) }) {
			return fmt.Errorf("%s lacks route %s via %s on %s", ctr.path, r.Dst.String(), want.Gw, name)
		}
	}
	return nil
}

func sameRoute(have, want netlink.Route) bool {
	dst := func(r netlink.Route) string {
		if r.Dst == nil {
			if r.Family == netlink.FAMILY_V6 {
				return "::/0"
			}
			return "0.0.0.0/0"
		}
		return r.Dst.String()
	}
	return dst(have) == dst(want) && have.Gw.Equal(want.Gw)
}

// checkPorts checks that the endpoint's port mappings are exactly those of
// the portMappings capability.
func (a *attachment) checkPorts(ctx context.Context, ep model.Endpoint) error {
	want, err := portMappings(a.epID, ep.IP6 != "", a.conf.RuntimeConfig.PortMappings)
	if err != nil {
		return err
	}
	have, err := a.agent.c.Ports(ctx)
	if err != nil {
		return a.agent.wrap(err, "list port mappings")
	}
	have = slices.DeleteFunc(have, func(p model.PortMapping) bool { return p.Endpoint != a.epID })
	for _, w := range want {
		i := slices.IndexFunc(have, func(p model.PortMapping) bool { return p.ID == w.ID })
		if i < 0 {
			return fmt.Errorf("port mapping %s (%s %d -> %d) is not in portcullisd", w.ID, w.Proto, w.HostPort, w.Port)
		}
		if h := have[i]; h.Proto != w.Proto || h.HostIP != w.HostIP || h.HostPort != w.HostPort || h.Port != w.Port {
			return fmt.Errorf("port mapping %s is %s %s:%d -> %d in portcullisd, the runtime asks for %s %s:%d -> %d",
				w.ID, h.Proto, h.HostIP, h.HostPort, h.Port, w.Proto, w.HostIP, w.HostPort, w.Port)
		}
		have = slices.Delete(have, i, i+1)
	}
	if len(have) > 0 {
		return fmt.Errorf("endpoint %s has port mappings the runtime did not ask for: %s", a.epID, have[0].ID)
	}
	return nil
}
