package ebpf

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"

	"github.com/vishvananda/netlink"
)

// device is what the backend needs to know about an interface.
type device struct {
	name  string
	index int
	mac   net.HardwareAddr
	addrs []netip.Addr
}

// devices finds interfaces in the calling thread's network namespace. The
// agent runs inside the node's namespace; tests call Apply from a thread
// that entered theirs.
type devices interface {
	byName(name string) (device, error)
	// defaultRouteLinks names the interfaces that carry a default route.
	defaultRouteLinks() ([]string, error)
}

type netlinkDevices struct{}

// dumpRetries bounds retries of netlink dumps interrupted by a concurrent
// change (NLM_F_DUMP_INTR), as containernetworking's netlinksafe does.
const dumpRetries = 5

func retryDump[T any](f func() (T, error)) (T, error) {
	var (
		v   T
		err error
	)
	for i := 0; i < dumpRetries; i++ {
		v, err = f()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return v, err
		}
	}
	return v, err
}

func (netlinkDevices) byName(name string) (device, error) {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return device{}, fmt.Errorf("interface %s: %w", name, err)
	}
	d := device{name: name, index: l.Attrs().Index, mac: l.Attrs().HardwareAddr}
	addrs, err := retryDump(func() ([]netlink.Addr, error) { return netlink.AddrList(l, netlink.FAMILY_ALL) })
	if err != nil {
		return device{}, fmt.Errorf("addresses of %s: %w", name, err)
	}
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok && !ip.IsLinkLocalUnicast() {
			d.addrs = append(d.addrs, ip.Unmap())
		}
	}
	return d, nil
}

func (netlinkDevices) defaultRouteLinks() ([]string, error) {
	seen := map[int]bool{}
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		routes, err := retryDump(func() ([]netlink.Route, error) {
			return netlink.RouteListFiltered(fam, &netlink.Route{}, netlink.RT_FILTER_TABLE)
		})
		if err != nil {
			return nil, fmt.Errorf("list routes: %w", err)
		}
		for _, r := range routes {
			if r.Dst != nil {
				if ones, _ := r.Dst.Mask.Size(); ones != 0 {
					continue
				}
			}
			if r.LinkIndex > 0 {
				seen[r.LinkIndex] = true
			}
			for _, nh := range r.MultiPath {
				seen[nh.LinkIndex] = true
			}
		}
	}
	var names []string
	for idx := range seen {
		l, err := netlink.LinkByIndex(idx)
		if err != nil {
			continue // gone meanwhile
		}
		names = append(names, l.Attrs().Name)
	}
	sort.Strings(names)
	return names, nil
}
