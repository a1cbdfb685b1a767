package cni

import (
	"errors"
	"fmt"
	"net"
	"os"

	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// The plugin runs in the node's network namespace (the runtime's), so the
// host end of a veth is made with the package-level netlink functions and
// the container end through a handle bound to the container's namespace:
// no thread ever switches namespace.

// container is an open handle on the container's network namespace.
type container struct {
	path string
	ns   netns.NsHandle
	h    *netlink.Handle
}

// openContainer opens the namespace at path (CNI_NETNS). A namespace that
// is gone is reported with errors.Is(err, os.ErrNotExist).
func openContainer(path string) (*container, error) {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return nil, fmt.Errorf("open container namespace %s: %w", path, err)
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		ns.Close()
		return nil, fmt.Errorf("netlink in container namespace %s: %w", path, err)
	}
	return &container{path: path, ns: ns, h: h}, nil
}

func (c *container) Close() {
	c.h.Close()
	c.ns.Close()
}

// absent fails when the container already has an interface ifname.
func (c *container) absent(ifname string) error {
	if l, err := c.h.LinkByName(ifname); err == nil {
		return fmt.Errorf("interface %s already exists in %s (index %d, %s): is the container already attached? run DEL first", ifname, c.path, l.Attrs().Index, l.Type())
	}
	return nil
}

// veth is an attachment's pair as created.
type veth struct {
	host, peer netlink.Link
}

// createVeth creates the pair hostName (in the node) and ifname (in the
// container), both up, the host end marked with alias. A host end left by
// an ADD that died half-way (same name, our alias) is removed first, so a
// retried ADD works.
func (c *container) createVeth(hostName, ifname, alias string, mtu int, mac net.HardwareAddr) (*veth, error) {
	if err := c.absent(ifname); err != nil {
		return nil, err
	}
	if old, err := netlink.LinkByName(hostName); err == nil {
		if !ownedVeth(old.Attrs().Alias) {
			return nil, fmt.Errorf("host interface %s exists and was not made by portcullis-cni (alias %q): remove it", hostName, old.Attrs().Alias)
		}
		if err := netlink.LinkDel(old); err != nil {
			return nil, fmt.Errorf("remove stale host veth %s: %w", hostName, err)
		}
	}
	attrs := netlink.NewLinkAttrs()
	attrs.Name, attrs.MTU = hostName, mtu
	v := &netlink.Veth{LinkAttrs: attrs, PeerName: ifname, PeerHardwareAddr: mac,
		PeerNamespace: netlink.NsFd(int(c.ns)), PeerTxQLen: -1}
	if err := netlink.LinkAdd(v); err != nil {
		return nil, fmt.Errorf("create veth %s with peer %s in %s: %w", hostName, ifname, c.path, err)
	}
	pair, err := c.finishVeth(hostName, ifname, alias)
	if err != nil {
		if l, lerr := netlink.LinkByName(hostName); lerr == nil {
			netlink.LinkDel(l) // the peer goes with it
		}
		return nil, err
	}
	return pair, nil
}

func (c *container) finishVeth(hostName, ifname, alias string) (*veth, error) {
	host, err := netlink.LinkByName(hostName)
	if err != nil {
		return nil, fmt.Errorf("find new veth %s: %w", hostName, err)
	}
	if err := netlink.LinkSetAlias(host, alias); err != nil {
		return nil, fmt.Errorf("mark veth %s: %w", hostName, err)
	}
	if err := netlink.LinkSetUp(host); err != nil {
		return nil, fmt.Errorf("set %s up: %w", hostName, err)
	}
	peer, err := c.h.LinkByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("find %s in %s: %w", ifname, c.path, err)
	}
	// Read both again: the MACs are what the kernel chose.
	if host, err = netlink.LinkByIndex(host.Attrs().Index); err != nil {
		return nil, err
	}
	return &veth{host: host, peer: peer}, nil
}

// configure gives the container end its addresses and routes (IPs and
// Routes of r, whose Interface indexes are ignored: everything goes on
// link) and sets it up. Routes without a gateway use the gateway of
// their family.
func (c *container) configure(link netlink.Link, r *types100.Result) error {
	name := link.Attrs().Name
	// Up first: the kernel refuses a route via a gateway on a link whose
	// prefix route is not usable yet.
	if err := c.h.LinkSetUp(link); err != nil {
		return fmt.Errorf("set %s up in %s: %w", name, c.path, err)
	}
	for _, ip := range r.IPs {
		a := &netlink.Addr{IPNet: &net.IPNet{IP: ip.Address.IP, Mask: ip.Address.Mask}}
		if ip.Address.IP.To4() == nil {
			// Usable at once, as the agent does for its own addresses;
			// the address comes from IPAM, so it is unique by construction.
			a.Flags = unix.IFA_F_NODAD
		}
		if err := c.h.AddrReplace(link, a); err != nil {
			return fmt.Errorf("add address %s to %s in %s: %w", ip.Address.String(), name, c.path, err)
		}
	}
	for _, rt := range r.Routes {
		nr := c.route(link, rt, r.IPs)
		if err := c.h.RouteReplace(nr); err != nil {
			return fmt.Errorf("add route %s in %s: %w", rt, c.path, err)
		}
	}
	return nil
}

// route converts a CNI route to a netlink route on link.
func (c *container) route(link netlink.Link, rt *types.Route, ips []*types100.IPConfig) *netlink.Route {
	dst := rt.Dst
	gw := rt.GW
	if gw == nil {
		gw = gatewayFor(dst.IP, ips)
	}
	nr := &netlink.Route{LinkIndex: link.Attrs().Index, Dst: &dst, Gw: gw,
		MTU: rt.MTU, AdvMSS: rt.AdvMSS, Priority: rt.Priority}
	if rt.Table != nil {
		nr.Table = *rt.Table
	}
	if rt.Scope != nil {
		nr.Scope = netlink.Scope(*rt.Scope)
	}
	if gw == nil {
		nr.Scope = netlink.SCOPE_LINK
	}
	return nr
}

// gatewayFor returns the gateway of the first IP of dst's family.
func gatewayFor(dst net.IP, ips []*types100.IPConfig) net.IP {
	v4 := dst.To4() != nil
	for _, ip := range ips {
		if (ip.Address.IP.To4() != nil) == v4 && ip.Gateway != nil {
			return ip.Gateway
		}
	}
	return nil
}

// deleteHostVeth removes the host end (the container end goes with it).
// Absent, or not made by portcullis-cni, is not an error: DEL is idempotent
// and never removes what it did not make.
func deleteHostVeth(name string) error {
	l, err := netlink.LinkByName(name)
	var nf netlink.LinkNotFoundError
	if errors.As(err, &nf) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("find host veth %s: %w", name, err)
	}
	if !ownedVeth(l.Attrs().Alias) {
		return nil
	}
	if err := netlink.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("delete host veth %s: %w", name, err)
	}
	return nil
}

// listRetry runs a netlink dump again when a concurrent change interrupted
// it (NLM_F_DUMP_INTR), as containernetworking's netlinksafe does.
func listRetry[T any](list func() ([]T, error)) ([]T, error) {
	var (
		out []T
		err error
	)
	for range 5 {
		out, err = list()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return out, err
		}
	}
	return nil, fmt.Errorf("netlink dump interrupted 5 times: %w", err)
}

// isNotExist reports whether err says a namespace or link is gone.
func isNotExist(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.Is(err, os.ErrNotExist) || errors.As(err, &nf) || errors.Is(err, unix.ENOENT)
}
