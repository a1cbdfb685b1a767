// Package netdev creates and removes the bridges and veths that networks and
// endpoints need. Every interface it creates carries the alias "portcullis",
// so removal never touches an interface someone else made.
package netdev

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/portcullis/portcullis/dataplane/model"
)

// OwnerAlias marks interfaces created by the agent.
const OwnerAlias = "portcullis"

// ErrNotFound is returned when an interface an endpoint needs does not exist.
var ErrNotFound = errors.New("interface not found")

// Manager works in the network namespace of its netlink handle.
type Manager struct {
	h *netlink.Handle
	// SysctlFile, when set, is where EnsureForwarding saves the values it
	// is about to change, for RestoreForwarding (sysctl.go).
	SysctlFile string
}

// New returns a Manager for the current network namespace.
func New() (*Manager, error) {
	h, err := netlink.NewHandle()
	if err != nil {
		return nil, fmt.Errorf("netlink handle: %w", err)
	}
	return &Manager{h: h}, nil
}

// Close releases the netlink handle.
func (m *Manager) Close() { m.h.Close() }

func (m *Manager) linkByName(name string) (netlink.Link, error) {
	l, err := m.h.LinkByName(name)
	var nf netlink.LinkNotFoundError
	if errors.As(err, &nf) {
		return nil, fmt.Errorf("%s: %w", name, ErrNotFound)
	}
	return l, err
}

// missing is a refusal (400) that is also ErrNotFound: the interface an
// endpoint names is not there.
type missing struct{ err *model.Error }

func (m missing) Error() string   { return m.err.Error() }
func (m missing) Unwrap() []error { return []error{m.err, ErrNotFound} }

// Owned reports whether the interface was created by the agent.
func Owned(l netlink.Link) bool { return l.Attrs().Alias == OwnerAlias }

// GatewayMAC is the MAC of a bridge the agent creates: 02:42 and the
// gateway's IPv4 address, as Docker derives its containers' MACs (no
// container has the gateway's address, and subnets do not overlap). Set at
// creation, it stays: a bridge whose MAC was never set takes the lowest
// MAC of its ports, so it would change as veths join and leave, and with it
// the gateway MAC the eBPF datapath keeps (pc_networks.gw_mac) and the
// containers' neighbour entries.
func GatewayMAC(gw netip.Addr) net.HardwareAddr {
	a := gw.As4()
	return net.HardwareAddr{0x02, 0x42, a[0], a[1], a[2], a[3]}
}

// EnsureBridge creates the network's bridge if absent and gives it the
// gateway addresses, MTU and up state. It reports whether it created it.
func (m *Manager) EnsureBridge(n *model.RNetwork) (bool, error) {
	if n.Spec.External {
		return false, m.checkExternalBridge(n)
	}
	created := false
	l, err := m.linkByName(n.Bridge)
	switch {
	case errors.Is(err, ErrNotFound) && n.Spec.Source != "":
		// A runtime's bridge (Docker's) is the runtime's to make: gone
		// means the runtime removed the network.
		return false, fmt.Errorf("bridge %s of %s network %s: %w", n.Bridge, n.Spec.Source, n.Name, ErrNotFound)
	case errors.Is(err, ErrNotFound):
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: n.Bridge, MTU: n.MTU, HardwareAddr: GatewayMAC(n.Gateway)}}
		if err := m.h.LinkAdd(br); err != nil {
			return false, fmt.Errorf("create bridge %s: %w", n.Bridge, err)
		}
		if l, err = m.h.LinkByName(n.Bridge); err != nil {
			return false, fmt.Errorf("find new bridge %s: %w", n.Bridge, err)
		}
		if err := m.h.LinkSetAlias(l, OwnerAlias); err != nil {
			return false, fmt.Errorf("mark bridge %s: %w", n.Bridge, err)
		}
		created = true
	case err != nil:
		return false, fmt.Errorf("find bridge %s: %w", n.Bridge, err)
	case l.Type() != "bridge":
		return false, fmt.Errorf("interface %s exists and is a %s, not a bridge: choose another bridge name", n.Bridge, l.Type())
	}
	if n.MTU != 0 && l.Attrs().MTU != n.MTU {
		if err := m.h.LinkSetMTU(l, n.MTU); err != nil {
			return created, fmt.Errorf("set mtu %d on %s: %w", n.MTU, n.Bridge, err)
		}
	}
	if err := m.ensureAddr(m.h, l, netip.PrefixFrom(n.Gateway, n.Subnet.Bits())); err != nil {
		return created, err
	}
	if n.Gateway6.IsValid() {
		if err := m.ensureAddr(m.h, l, netip.PrefixFrom(n.Gateway6, n.Subnet6.Bits())); err != nil {
			return created, err
		}
	}
	if err := m.h.LinkSetUp(l); err != nil {
		return created, fmt.Errorf("set %s up: %w", n.Bridge, err)
	}
	return created, nil
}

func (m *Manager) ensureAddr(h *netlink.Handle, l netlink.Link, p netip.Prefix) error {
	a := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
	if p.Addr().Is6() {
		a.Flags = unix.IFA_F_NODAD
	}
	if err := h.AddrReplace(l, a); err != nil {
		return fmt.Errorf("add address %s to %s: %w", p, l.Attrs().Name, err)
	}
	return nil
}

// DeleteBridge removes the network's bridge if the agent created it.
func (m *Manager) DeleteBridge(name string) error {
	l, err := m.linkByName(name)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if !Owned(l) {
		return nil
	}
	if err := m.h.LinkDel(l); err != nil {
		return fmt.Errorf("delete bridge %s: %w", name, err)
	}
	return nil
}

// EnsureEndpoint plugs an endpoint into its bridge. For a netns endpoint it
// creates the veth pair, moves the peer into the namespace and configures
// name, MAC, addresses and default routes there; it is safe to repeat.
func (m *Manager) EnsureEndpoint(e *model.REndpoint) error {
	if e.Net.Spec.External {
		return m.checkExternalEndpoint(e)
	}
	if e.Netns != "" {
		// Gone with its container, even while the kernel has not yet
		// destroyed the namespace and the veth that dies with it.
		if _, err := os.Stat(e.Netns); errors.Is(err, os.ErrNotExist) {
			return missing{model.Invalid("netns", "netns %q of endpoint %s does not exist", e.Netns, e.ID)}
		}
	}
	l, err := m.linkByName(e.HostIfname)
	switch {
	case errors.Is(err, ErrNotFound) && e.Netns == "":
		return missing{model.Invalid("host_ifname", "host_ifname %q does not exist on the node: create the veth first, or give netns instead", e.HostIfname)}
	case errors.Is(err, ErrNotFound):
		if l, err = m.createVeth(e); err != nil {
			return err
		}
	case err != nil:
		return err
	}
	br, err := m.linkByName(e.Net.Bridge)
	if err != nil {
		return fmt.Errorf("bridge of endpoint %s: %w", e.ID, err)
	}
	if l.Attrs().MasterIndex != br.Attrs().Index {
		if err := m.h.LinkSetMaster(l, br); err != nil {
			return fmt.Errorf("attach %s to bridge %s: %w", e.HostIfname, e.Net.Bridge, err)
		}
	}
	// Hairpin lets a container reach its own published port through a node
	// address: with br_netfilter on, the DNATed packet is switched straight
	// back out of the port it came in on, which a bridge refuses by default.
	if err := m.h.LinkSetHairpin(l, true); err != nil {
		return fmt.Errorf("set hairpin on %s: %w", e.HostIfname, err)
	}
	if err := m.h.LinkSetUp(l); err != nil {
		return fmt.Errorf("set %s up: %w", e.HostIfname, err)
	}
	return nil
}

// peerName is the temporary name of the container end before it is moved.
func peerName(e *model.REndpoint) string { return "pct" + e.HostIfname[3:] }

func (m *Manager) createVeth(e *model.REndpoint) (netlink.Link, error) {
	ns, err := netns.GetFromPath(e.Netns)
	if errors.Is(err, os.ErrNotExist) {
		// The container is gone (its namespace with it).
		return nil, missing{model.Invalid("netns", "netns %q of endpoint %s does not exist", e.Netns, e.ID)}
	}
	if err != nil {
		return nil, model.Invalid("netns", "netns %q of endpoint %s cannot be opened: %v", e.Netns, e.ID, err)
	}
	defer ns.Close()
	attrs := netlink.NewLinkAttrs() // a zero LinkAttrs would mean a tx queue of 0
	attrs.Name, attrs.MTU = e.HostIfname, e.Net.MTU
	v := &netlink.Veth{LinkAttrs: attrs, PeerName: peerName(e), PeerTxQLen: -1}
	if err := m.h.LinkAdd(v); err != nil {
		return nil, fmt.Errorf("create veth %s: %w", e.HostIfname, err)
	}
	l, err := m.h.LinkByName(e.HostIfname)
	if err == nil {
		err = m.h.LinkSetAlias(l, OwnerAlias)
	}
	if err == nil {
		err = m.configurePeer(e, ns)
	}
	if err != nil {
		m.h.LinkDel(v) // the peer goes with it
		return nil, fmt.Errorf("endpoint %s: %w", e.ID, err)
	}
	return l, nil
}

func (m *Manager) configurePeer(e *model.REndpoint, ns netns.NsHandle) error {
	peer, err := m.h.LinkByName(peerName(e))
	if err != nil {
		return fmt.Errorf("find veth peer: %w", err)
	}
	if err := m.h.LinkSetNsFd(peer, int(ns)); err != nil {
		return fmt.Errorf("move veth peer into %s: %w", e.Netns, err)
	}
	in, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("netlink in %s: %w", e.Netns, err)
	}
	defer in.Close()
	if peer, err = in.LinkByName(peerName(e)); err != nil {
		return fmt.Errorf("find moved veth peer: %w", err)
	}
	if old, err := in.LinkByName(e.Ifname); err == nil {
		return fmt.Errorf("interface %s already exists in %s (index %d): choose another ifname", e.Ifname, e.Netns, old.Attrs().Index)
	}
	steps := []struct {
		what string
		do   func() error
	}{
		{"rename to " + e.Ifname, func() error { return in.LinkSetName(peer, e.Ifname) }},
		{"set mac " + e.MAC.String(), func() error { return in.LinkSetHardwareAddr(peer, e.MAC) }},
		{"add ip", func() error { return m.ensureAddr(in, peer, netip.PrefixFrom(e.IP, e.Net.Subnet.Bits())) }},
		{"add ip6", func() error {
			if !e.IP6.IsValid() {
				return nil
			}
			return m.ensureAddr(in, peer, netip.PrefixFrom(e.IP6, e.Net.Subnet6.Bits()))
		}},
		{"set up", func() error { return in.LinkSetUp(peer) }},
		{"set lo up", func() error {
			lo, err := in.LinkByName("lo")
			if err != nil {
				return err
			}
			return in.LinkSetUp(lo)
		}},
		{"add default route", func() error { return defaultRoute(in, peer, e.Net.Gateway) }},
		{"add default IPv6 route", func() error {
			if !e.IP6.IsValid() {
				return nil
			}
			return defaultRoute(in, peer, e.Net.Gateway6)
		}},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			return fmt.Errorf("in %s: %s: %w", e.Netns, s.what, err)
		}
	}
	return nil
}

func defaultRoute(h *netlink.Handle, l netlink.Link, gw netip.Addr) error {
	r := &netlink.Route{LinkIndex: l.Attrs().Index, Gw: gw.AsSlice()}
	if gw.Is6() {
		r.Family = netlink.FAMILY_V6
	}
	return h.RouteReplace(r)
}

// DeleteEndpoint unplugs an endpoint: a veth the agent created is deleted
// (its peer in the container goes with it); an existing one is detached.
func (m *Manager) DeleteEndpoint(e *model.REndpoint) error {
	l, err := m.linkByName(e.HostIfname)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if Owned(l) {
		if err := m.h.LinkDel(l); err != nil {
			return fmt.Errorf("delete veth %s: %w", e.HostIfname, err)
		}
		return nil
	}
	if e.Spec.Source != "" || e.Net.Spec.External {
		// A runtime's veth (Docker's), or another plugin's, stays where
		// its maker put it: the endpoint goes because the container went,
		// or is going.
		return nil
	}
	if err := m.h.LinkSetNoMaster(l); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("detach %s: %w", e.HostIfname, err)
	}
	return nil
}

// DeleteOwned removes every interface the agent created (for uninstall),
// veths first, then bridges, and returns their names.
func (m *Manager) DeleteOwned() ([]string, error) {
	links, err := m.h.LinkList()
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return nil, fmt.Errorf("list interfaces: %w", err)
	}
	var gone []string
	for _, pass := range []string{"veth", "bridge"} {
		for _, l := range links {
			if !Owned(l) || l.Type() != pass {
				continue
			}
			if err := m.h.LinkDel(l); err != nil {
				return gone, fmt.Errorf("delete %s: %w", l.Attrs().Name, err)
			}
			gone = append(gone, l.Attrs().Name)
		}
	}
	return gone, nil
}

// EnsureForwarding turns on IP forwarding in the current namespace, having
// saved the values it changes in SysctlFile the first time.
func (m *Manager) EnsureForwarding(ipv6 bool) error {
	if err := m.saveForwarding(ipv6); err != nil {
		return err
	}
	if _, err := Sysctl("net/ipv4/ip_forward", "1"); err != nil || !ipv6 {
		return err
	}
	_, err := Sysctl("net/ipv6/conf/all/forwarding", "1")
	return err
}

// Sysctl sets a sysctl of the current network namespace and returns the
// previous value. It writes only when the value differs: a write is not
// free (the IPv6 forwarding switch takes the RTNL lock and walks every
// interface even when it stays on).
func Sysctl(path, value string) (string, error) {
	full := "/proc/sys/" + path
	b, err := os.ReadFile(full)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", full, err)
	}
	old := strings.TrimSuffix(string(b), "\n")
	if old == value {
		return old, nil
	}
	if err := os.WriteFile(full, []byte(value), 0o644); err != nil {
		return "", fmt.Errorf("write %s=%s: %w", full, value, err)
	}
	return old, nil
}
