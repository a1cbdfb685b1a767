package cni

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/vishvananda/netlink"

	"github.com/portcullis/portcullis/dataplane/model"
)

// Chained mode: portcullis-cni after another main plugin (bridge, ptp,
// flannel, Calico ...), in place of portmap, firewall and the main
// plugin's ipMasq. The other plugin made the interface and its addresses
// (prevResult); the plugin registers the container with the agent on the
// host veth that plugin made, in an external agent network
// (model.Network.External), publishes the runtime's ports, and passes the
// result on. It creates, moves, renames or deletes no interface and no
// address, and calls no IPAM plugin.

// Modes of the "mode" key.
const (
	modeMain    = "main"
	modeChained = "chained"
)

// modeConf holds the keys that decide the mode, read apart from NetConf.
type modeConf struct {
	Mode string `json:"mode,omitempty"`
}

// chainedByConf says what the configuration alone says about the mode:
// "mode", else, for ADD, a prevResult (only a plugin after another gets
// one at ADD; at CHECK and DEL every plugin of the list gets the list's
// result). known is false when neither says.
func chainedByConf(stdin []byte, c *NetConf, add bool) (chained, known bool, err error) {
	var m modeConf
	if err := json.Unmarshal(stdin, &m); err != nil {
		return false, false, invalidConf("parse network configuration: %v", err)
	}
	switch m.Mode {
	case modeChained:
		return true, true, nil
	case modeMain:
		if add && c.PrevResult != nil {
			return false, true, invalidConf(`mode %q is set, but portcullis-cni is not first in the list (there is a prevResult): put it first, or remove "mode" (or set %q) to chain after the main plugin`, modeMain, modeChained)
		}
		return false, true, nil
	case "":
		return add && c.PrevResult != nil, add, nil
	}
	return false, false, invalidConf("mode %q is not known: use %q (portcullis-cni makes the interface), %q (after a main plugin such as bridge or ptp), or leave it out to decide by prevResult", m.Mode, modeMain, modeChained)
}

// chainedMode decides the mode of CHECK, DEL, STATUS and GC. Without
// "mode" the agent network decides: an external one is a chained
// configuration's; so is one that does not exist (or an agent that does
// not answer) when the configuration gives neither ipam nor subnet (main
// mode needs one of them).
func chainedMode(ctx context.Context, stdin []byte, c *NetConf, ag *agent) (bool, error) {
	chained, known, err := chainedByConf(stdin, c, false)
	if err != nil || known {
		return chained, err
	}
	n, err := ag.c.Network(ctx, c.Network)
	var me *model.Error
	switch {
	case err == nil:
		return n.External, nil
	case isNotFound(err) || !errors.As(err, &me):
		// Absent, or the agent does not answer (the command's own call
		// to it then says so, and DEL in main mode still unplugs).
		return c.IPAM.Type == "" && c.Subnet == "", nil
	}
	return false, ag.wrap(err, "read network %s", c.Network)
}

// The dispatch of each command: handled says the command was chained (or
// failed deciding), and err is then its outcome.

func (a *attachment) chainedAdd() (handled bool, err error) {
	chained, _, err := chainedByConf(a.args.StdinData, a.conf, true)
	if err != nil || !chained {
		return err != nil, err
	}
	res, err := a.addChained(context.Background())
	if err != nil {
		return true, a.rollback(err)
	}
	return true, types.PrintResult(res, a.conf.CNIVersion)
}

// chainedDel removes the endpoint with its port mappings, and nothing
// else: the interfaces and the address are the main plugin's to release.
func (a *attachment) chainedDel() (handled bool, err error) {
	ctx := context.Background()
	chained, err := chainedMode(ctx, a.args.StdinData, a.conf, a.agent)
	if err != nil || !chained {
		return err != nil, err
	}
	return true, a.agent.deleteEndpoint(ctx, a.epID)
}

func (a *attachment) chainedCheck(prev *types100.Result) (handled bool, err error) {
	ctx := context.Background()
	chained, err := chainedMode(ctx, a.args.StdinData, a.conf, a.agent)
	if err != nil || !chained {
		return err != nil, err
	}
	return true, a.checkChained(ctx, prev)
}

// checkChainedConf refuses the keys that only main mode uses.
func checkChainedConf(c *NetConf) error {
	switch {
	case c.IPAM.Type != "":
		return invalidConf("ipam (type %q) is set, but portcullis-cni runs chained after another plugin (prevResult is set), which did the addressing: remove ipam, or put portcullis-cni first in the list (main mode)", c.IPAM.Type)
	case c.MTU != 0:
		return invalidConf("mtu %d is set, but portcullis-cni runs chained and makes no interface: set the MTU on the main plugin", c.MTU)
	}
	return nil
}

// hostSide is what the main plugin made on the node for the attachment.
type hostSide struct {
	veth   string // host end of the container's veth
	bridge string // its bridge, "" when routed (ptp)
	mac    net.HardwareAddr
}

// hostSide reads the attachment's hostSide from the container's namespace.
func (a *attachment) hostSide() (hostSide, error) {
	ctr, err := openContainer(a.args.Netns)
	if err != nil {
		return hostSide{}, types.NewError(types.ErrInvalidNetNS, err.Error(), "")
	}
	defer ctr.Close()
	return findHostSide(ctr, a.args.IfName)
}

// findHostSide finds the host end of the container interface (its veth
// peer) and the bridge it is a port of, and the container interface's MAC.
func findHostSide(ctr *container, ifname string) (hostSide, error) {
	var hs hostSide
	l, err := ctr.h.LinkByName(ifname)
	if err != nil {
		return hs, fmt.Errorf("interface %s in %s, which the plugin before portcullis-cni should have made: %w", ifname, ctr.path, err)
	}
	if l.Type() != "veth" {
		return hs, fmt.Errorf("interface %s in %s is a %s: portcullis-cni chains only after plugins that make a veth pair (bridge, ptp, flannel, Calico)", ifname, ctr.path, l.Type())
	}
	hs.mac = l.Attrs().HardwareAddr
	host, err := netlink.LinkByIndex(l.Attrs().ParentIndex)
	if err != nil {
		return hs, fmt.Errorf("host end of %s in %s (ifindex %d) is not in the node's namespace: %w", ifname, ctr.path, l.Attrs().ParentIndex, err)
	}
	hs.veth = host.Attrs().Name
	if host.Attrs().MasterIndex == 0 {
		return hs, nil
	}
	br, err := netlink.LinkByIndex(host.Attrs().MasterIndex)
	if err != nil {
		return hs, fmt.Errorf("bridge of host veth %s: %w", hs.veth, err)
	}
	if br.Type() != "bridge" {
		return hs, fmt.Errorf("host veth %s is a port of %s, a %s: portcullis-cni chains after Linux bridges or routed veths only", hs.veth, br.Attrs().Name, br.Type())
	}
	hs.bridge = br.Attrs().Name
	return hs, nil
}

// prevAddrs are the container interface's addresses in prevResult, with
// the gateway of each family when the main plugin gave one.
type prevAddrs struct {
	ip4, ip6 netip.Prefix
	gw4, gw6 netip.Addr
}

func readPrevAddrs(ips []*types100.IPConfig, ifname string) (prevAddrs, error) {
	var out prevAddrs
	for _, ipc := range ips {
		a, _ := netip.AddrFromSlice(ipc.Address.IP)
		ones, _ := ipc.Address.Mask.Size()
		p := netip.PrefixFrom(a.Unmap(), ones)
		at, gwAt := &out.ip4, &out.gw4
		if p.Addr().Is6() {
			at, gwAt = &out.ip6, &out.gw6
		}
		if at.IsValid() {
			return out, invalidConf("prevResult gives %s two addresses of one family (%s and %s): portcullis endpoints have one IPv4 and at most one IPv6 address", ifname, *at, p)
		}
		*at = p
		if g, ok := netip.AddrFromSlice(ipc.Gateway); ok {
			*gwAt = g.Unmap()
		}
	}
	if !out.ip4.IsValid() {
		return out, invalidConf("prevResult gives %s no IPv4 address: portcullis endpoints need one; give the main plugin's IPAM an IPv4 range", ifname)
	}
	return out, nil
}

// chainedNetConf is the configuration with the agent network's shape
// filled in from what the main plugin made, where the configuration does
// not say: the bridge, the subnets (the prefixes of the container's
// addresses) and the gateways.
func chainedNetConf(c *NetConf, hs hostSide, pa prevAddrs) (*NetConf, error) {
	if c.Bridge != "" && c.Bridge != hs.bridge {
		return nil, invalidConf("bridge %q is set, but the plugin before portcullis-cni attached the container to %s: remove bridge (chained mode takes it from the main plugin) or make them agree", c.Bridge, orNone(hs.bridge))
	}
	n := *c
	n.External, n.Bridge = true, hs.bridge
	if n.Subnet == "" {
		n.Subnet = pa.ip4.Masked().String()
	}
	if n.Gateway == "" && pa.gw4.IsValid() {
		n.Gateway = pa.gw4.String()
	}
	if n.Subnet6 == "" && pa.ip6.IsValid() {
		n.Subnet6 = pa.ip6.Masked().String()
	}
	if n.Gateway6 == "" && pa.gw6.IsValid() {
		n.Gateway6 = pa.gw6.String()
	}
	return &n, nil
}

// addChained is ADD in chained mode: the agent network (created, external,
// when absent), the endpoint on the main plugin's host veth, the published
// ports; the result is prevResult, unchanged.
func (a *attachment) addChained(ctx context.Context) (types.Result, error) {
	if err := checkChainedConf(a.conf); err != nil {
		return nil, err
	}
	if a.conf.PrevResult == nil {
		return nil, invalidConf(`mode %q needs a main plugin before portcullis-cni in the list (bridge, ptp ...): there is no prevResult`, modeChained)
	}
	prev, err := types100.GetResult(a.conf.PrevResult)
	if err != nil {
		return nil, invalidConf("prevResult: %v", err)
	}
	_, ips, err := a.prevInterface(prev)
	if err != nil {
		return nil, invalidConf("%v: the main plugin before portcullis-cni must report the container interface", err)
	}
	pa, err := readPrevAddrs(ips, a.args.IfName)
	if err != nil {
		return nil, err
	}
	hs, err := a.hostSide()
	if err != nil {
		return nil, err
	}
	a.host = hs.veth
	conf, err := chainedNetConf(a.conf, hs, pa)
	if err != nil {
		return nil, err
	}
	if err := a.ensureExternal(ctx, conf); err != nil {
		return nil, err
	}
	// The MAC the runtime asks for (a tuning plugin later in the chain
	// sets it) is the one the container will send from.
	mac, err := containerMAC(a.conf.RuntimeConfig, a.args.Args)
	if err != nil || mac == nil {
		mac = hs.mac
	}
	if err := a.plugChained(ctx, pa, mac); err != nil {
		return nil, err
	}
	return a.conf.PrevResult, nil
}

// ensureExternal makes sure the agent network exists and is external.
func (a *attachment) ensureExternal(ctx context.Context, conf *NetConf) error {
	n, err := a.network(ctx, conf)
	if err != nil {
		return err
	}
	if !n.External {
		return invalidConf("network %q exists in portcullisd as a network the agent plugs itself (not external), and portcullis-cni runs chained after another plugin: set \"network\" to a name of its own for the chained configuration", n.Name)
	}
	if n.Bridge != conf.Bridge {
		return invalidConf("network %q exists in portcullisd with bridge %s, but the plugin before portcullis-cni attached the container to %s: give each main plugin configuration its own \"network\"", n.Name, orNone(n.Bridge), orNone(conf.Bridge))
	}
	return nil
}

// plugChained registers the endpoint and publishes its ports.
func (a *attachment) plugChained(ctx context.Context, pa prevAddrs, mac net.HardwareAddr) error {
	ep := model.Endpoint{ID: a.epID, Network: a.conf.Network, IP: pa.ip4.Addr().String(),
		MAC: mac.String(), HostIfname: a.host}
	if pa.ip6.IsValid() {
		ep.IP6 = pa.ip6.Addr().String()
	}
	// Undone even when the PUT fails: an agent that timed out may still
	// have applied it.
	a.undo = append(a.undo, func() error { return a.agent.deleteEndpoint(ctx, a.epID) })
	if _, err := a.agent.c.PutEndpoint(ctx, ep); err != nil {
		return a.agent.wrap(err, "add endpoint %s (%s on %s, host veth %s)", ep.ID, ep.IP, ep.Network, ep.HostIfname)
	}
	ports, err := portMappings(a.epID, pa.ip6.IsValid(), a.conf.RuntimeConfig.PortMappings)
	if err != nil {
		return err
	}
	return a.agent.syncPorts(ctx, a.epID, ports)
}

// checkChained is CHECK in chained mode: the endpoint is in the agent, on
// the configuration's external network, with prevResult's addresses and
// the host veth that is now the container interface's peer, and its port
// mappings are the runtime's.
func (a *attachment) checkChained(ctx context.Context, prev *types100.Result) error {
	_, ips, err := a.prevInterface(prev)
	if err != nil {
		return err
	}
	hs, err := a.hostSide()
	if err != nil {
		return err
	}
	a.host = hs.veth
	ep, err := a.agent.c.Endpoint(ctx, a.epID)
	if isNotFound(err) {
		return fmt.Errorf("endpoint %s of container %s (%s) is not in portcullisd", a.epID, a.args.ContainerID, a.args.IfName)
	}
	if err != nil {
		return a.agent.wrap(err, "read endpoint %s", a.epID)
	}
	if err := a.checkEndpoint(ep, ips); err != nil {
		return err
	}
	n, err := a.agent.c.Network(ctx, ep.Network)
	if err != nil {
		return a.agent.wrap(err, "read network %s", ep.Network)
	}
	if !n.External || n.Bridge != hs.bridge {
		return fmt.Errorf("network %q in portcullisd is not the external network of bridge %s (external %v, bridge %s)", n.Name, orNone(hs.bridge), n.External, orNone(n.Bridge))
	}
	return a.checkPorts(ctx, ep)
}

// gcChained is GC in chained mode: endpoints of the configuration's
// network that no valid attachment has go, with their port mappings. The
// interfaces are the main plugin's to collect, and so are the addresses.
func gcChained(ctx context.Context, c *NetConf, ag *agent) error {
	valid := map[string]bool{}
	for _, at := range c.ValidAttachments {
		valid[EndpointID(at.ContainerID, at.IfName)] = true
	}
	eps, err := ag.c.Endpoints(ctx)
	if err != nil {
		return ag.wrap(err, "list endpoints")
	}
	var errs []error
	for _, ep := range eps {
		if ep.Network == c.Network && ep.Source == "" && len(ep.ID) > 4 && ep.ID[:4] == "cni-" && !valid[ep.ID] {
			errs = append(errs, ag.deleteEndpoint(ctx, ep.ID))
		}
	}
	return errors.Join(errs...)
}

func chainedGC(ctx context.Context, stdin []byte, c *NetConf, ag *agent) (handled bool, err error) {
	chained, err := chainedMode(ctx, stdin, c, ag)
	if err != nil || !chained {
		return err != nil, err
	}
	return true, gcChained(ctx, c, ag)
}

// chainedStatus is STATUS in chained mode, once the agent answered: ADD
// can work unless the network exists and is not external. There is no
// IPAM plugin to ask.
func chainedStatus(ctx context.Context, stdin []byte, c *NetConf, ag *agent) (handled bool, err error) {
	chained, err := chainedMode(ctx, stdin, c, ag)
	if err == nil && !chained {
		return false, nil
	}
	var te *types.Error
	if errors.As(err, &te) {
		return true, types.NewError(types.ErrPluginNotAvailable, te.Msg, te.Details)
	}
	if err != nil {
		return true, types.NewError(types.ErrPluginNotAvailable, err.Error(), "")
	}
	if n, err := ag.c.Network(ctx, c.Network); err == nil && !n.External {
		return true, types.NewError(types.ErrPluginNotAvailable,
			fmt.Sprintf("network %q exists in portcullisd and is not external: a chained configuration needs a network of its own", c.Network), "")
	}
	return true, nil
}
