package ebpf

import (
	"errors"
	"fmt"
	"net"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"

	"github.com/portcullis/portcullis/dataplane/model"
)

// deviceCache answers each interface lookup once per Apply.
type deviceCache struct {
	devs  devices
	cache map[string]device
	// applied, when set, holds the owners in force: an endpoint already
	// programmed has its host veth's ifindex there, which spares the
	// netlink lookup (about 80 µs) for mappings and links on it.
	applied *state
}

func newDeviceCache(d devices) *deviceCache {
	return &deviceCache{devs: d, cache: map[string]device{}}
}

// hostVeth returns the ifindex of e's host veth: from its applied owner
// when there is one (an endpoint whose veth changes is re-applied, with its
// new owner, before the mappings and links of the same change), else from
// the kernel.
func (c *deviceCache) hostVeth(e *model.REndpoint) (uint32, error) {
	if c.applied != nil {
		if ix, ok := c.applied.owners["ep/"+e.ID].endpointIfindex(); ok && ix != 0 {
			return ix, nil
		}
	}
	d, err := c.byName(e.HostIfname)
	return uint32(d.index), err
}

func (c *deviceCache) byName(name string) (device, error) {
	if d, ok := c.cache[name]; ok {
		return d, nil
	}
	d, err := c.devs.byName(name)
	if err != nil {
		return device{}, err
	}
	c.cache[name] = d
	return d, nil
}

func netOwner(devs *deviceCache, n *model.RNetwork) (owner, error) {
	id, mac, err := networkID(devs, n)
	if err != nil || id == 0 {
		return owner{}, err
	}
	return owner{entries: netEntries(n, id, mac)}, nil
}

// networkID is the id that names network n in the maps, with the MAC its
// fast path writes as source: its bridge's ifindex and MAC. An external
// network whose bridge is not there yet (the other plugin makes it at its
// first ADD) has id 0 and nothing in the maps: its first endpoint
// programs it (refreshGatewayMAC). Routed networks (ptp, no bridge) are
// refused: in tests with the ptp plugin the replies of published ports
// never left the node, while egress and icc worked.
func networkID(devs *deviceCache, n *model.RNetwork) (uint32, net.HardwareAddr, error) {
	if n.Routed() {
		return 0, nil, fmt.Errorf("network %s is routed (external, without a bridge, as after the ptp plugin), which the eBPF backend does not handle yet: run portcullisd with --backend=nftables, or chain portcullis-cni after the bridge plugin", n.Name)
	}
	br, err := devs.byName(n.Bridge)
	var nf netlink.LinkNotFoundError
	switch {
	case err != nil && n.Spec.External && errors.As(err, &nf):
		return 0, nil, nil
	case err != nil:
		return 0, nil, fmt.Errorf("network %s: bridge: %w", n.Name, err)
	}
	return uint32(br.index), br.mac, nil
}

func epOwner(devs *deviceCache, e *model.REndpoint) (owner, error) {
	if e.Net == nil {
		return owner{}, fmt.Errorf("endpoint %s has no network", e.ID)
	}
	veth, err := devs.byName(e.HostIfname)
	if err != nil {
		return owner{}, fmt.Errorf("endpoint %s: host veth: %w", e.ID, err)
	}
	nid, _, err := networkID(devs, e.Net)
	if err == nil && nid == 0 {
		err = fmt.Errorf("bridge %s of external network %s: not there", e.Net.Bridge, e.Net.Name)
	}
	if err != nil {
		return owner{}, fmt.Errorf("endpoint %s: %w", e.ID, err)
	}
	return owner{
		entries: epEntries(e, uint32(veth.index), nid),
		hooks:   []hook{{ifname: e.HostIfname, ifindex: veth.index, dir: dirIngress, prog: progEndpointIngress}},
	}, nil
}

func portOwner(devs *deviceCache, p *model.RPort) (owner, error) {
	if p.EP == nil {
		return owner{}, fmt.Errorf("port mapping %s has no endpoint", p.ID)
	}
	veth, err := devs.hostVeth(p.EP)
	if err != nil {
		return owner{}, fmt.Errorf("port mapping %s: endpoint veth: %w", p.ID, err)
	}
	return owner{entries: portEntries(p, veth)}, nil
}

func linkID(l *model.RLink) string {
	if l.Parent != nil {
		return l.Parent.ID + "/" + l.Alias
	}
	return l.Spec.Key()
}

func linkOwner(devs *deviceCache, l *model.RLink) (owner, error) {
	if l.Parent == nil || l.Child == nil {
		return owner{}, fmt.Errorf("link %s: parent or child missing", linkID(l))
	}
	p, err := devs.hostVeth(l.Parent)
	if err != nil {
		return owner{}, fmt.Errorf("link %s: parent veth: %w", linkID(l), err)
	}
	c, err := devs.hostVeth(l.Child)
	if err != nil {
		return owner{}, fmt.Errorf("link %s: child veth: %w", linkID(l), err)
	}
	return owner{entries: linkEntries(l, p, c)}, nil
}

// uplinkOwner: the configured uplinks, or the interfaces with a default
// route. Their addresses are read now; an address that changes later is
// picked up by the next full resync.
func uplinkOwner(devs *deviceCache, s model.Settings) (owner, error) {
	names := s.Uplinks
	if len(names) == 0 {
		var err error
		if names, err = devs.devs.defaultRouteLinks(); err != nil {
			return owner{}, fmt.Errorf("find uplinks: %w", err)
		}
	}
	var o owner
	seen := map[string]bool{}
	for _, n := range names {
		if seen[n] {
			continue
		}
		seen[n] = true
		d, err := devs.byName(n)
		if err != nil {
			return owner{}, fmt.Errorf("uplink: %w", err)
		}
		o.entries = append(o.entries, uplinkEntries(uint32(d.index), d.addrs)...)
		o.hooks = append(o.hooks,
			hook{ifname: n, ifindex: d.index, dir: dirIngress, prog: progUplinkIngress},
			hook{ifname: n, ifindex: d.index, dir: dirEgress, prog: progUplinkEgress})
	}
	return o, nil
}

// wantOwners computes every owner of want.
func wantOwners(devs *deviceCache, want *model.Resolved) (map[string]owner, error) {
	out := map[string]owner{}
	var errs []error
	add := func(id string, o owner, err error) {
		if err != nil {
			errs = append(errs, err)
			return
		}
		out[id] = o
	}
	for _, n := range want.Networks {
		o, err := netOwner(devs, n)
		add("net/"+n.Name, o, err)
	}
	for _, e := range want.Endpoints {
		o, err := epOwner(devs, e)
		add("ep/"+e.ID, o, err)
	}
	for _, p := range want.Ports {
		o, err := portOwner(devs, p)
		add("port/"+p.ID, o, err)
	}
	for _, l := range want.Links {
		o, err := linkOwner(devs, l)
		add("link/"+linkID(l), o, err)
	}
	o, err := uplinkOwner(devs, want.Settings)
	add("uplinks", o, err)
	return out, errors.Join(errs...)
}

// staleKeys lists the keys of a configuration map that ns does not want.
func staleKeys(m *ebpf.Map, name string, ns *state) ([]any, error) {
	switch name {
	case mapEndpoints, mapNetworks, mapUplinks:
		return stale[uint32](m, name, ns)
	case mapEpAddrs:
		return stale[bpfAddrKey](m, name, ns)
	case mapEpMACs:
		return stale[bpfMacKey](m, name, ns)
	case mapSubnets:
		return stale[bpfSubnetKey](m, name, ns)
	case mapLinks:
		return stale[bpfLinkKey](m, name, ns)
	case mapPorts:
		return stale[bpfPortKey](m, name, ns)
	case mapPorts6:
		return stale[bpfPort6Key](m, name, ns)
	case mapLocalAddrs:
		return stale[uint32](m, name, ns)
	case mapLocalAddrs6:
		return stale[bpfAddr6](m, name, ns)
	}
	return nil, fmt.Errorf("no key type for map %s", name)
}

func stale[K comparable](m *ebpf.Map, name string, ns *state) ([]any, error) {
	var (
		out  []any
		k    K
		prev any // nil: first key
	)
	for i := uint32(0); i <= m.MaxEntries(); i++ {
		if err := m.NextKey(prev, &k); err != nil {
			if errors.Is(err, ebpf.ErrKeyNotExist) {
				return out, nil
			}
			return nil, fmt.Errorf("list %s: %w", name, err)
		}
		if _, ok := ns.slots[slotKey{name, k}]; !ok {
			out = append(out, k)
		}
		kk := k
		prev = kk
	}
	return out, nil
}

// refreshGatewayMAC re-reads the MAC of e's bridge into its network's
// pc_networks entry (gw_mac), writing only when it changed. A bridge the
// agent did not create (docker0) and whose MAC nobody set takes the lowest
// MAC of its ports, so it may change whenever a veth joins: the reconciler
// plugs the endpoint's veth before this runs, and a change it made shows
// here. (A veth leaving is unplugged after; the next endpoint change or
// resync catches that.) Bridges the agent creates have a fixed MAC
// (netdev.GatewayMAC) and cost one comparison.
func refreshGatewayMAC(want *model.Resolved, e *model.REndpoint, set func(string, owner) error, devs *deviceCache) error {
	if e.Net == nil {
		return nil
	}
	n := want.Networks[e.Net.Name]
	if n == nil {
		return nil // the network goes in the same change
	}
	o, err := netOwner(devs, n)
	if err != nil {
		return err
	}
	return set("net/"+n.Name, o)
}
