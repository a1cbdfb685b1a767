package netdev

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/portcullis/portcullis/dataplane/model"
)

// The checks here answer, for the reconciler, what only the kernel of the
// node knows about a change's input. They run before anything is created,
// so a wrong value is a 400 that names it, not a failure half-way.

// nsKinds names the namespace types NS_GET_NSTYPE returns.
var nsKinds = map[int]string{
	unix.CLONE_NEWNS: "mount", unix.CLONE_NEWPID: "pid", unix.CLONE_NEWUTS: "uts",
	unix.CLONE_NEWIPC: "ipc", unix.CLONE_NEWUSER: "user", unix.CLONE_NEWCGROUP: "cgroup",
	unix.CLONE_NEWTIME: "time",
}

// CheckNetns refuses an endpoint whose netns is not a network namespace.
func (m *Manager) CheckNetns(e *model.REndpoint) error {
	if e.Netns == "" {
		return nil
	}
	const hint = "give the path of a network namespace, such as /run/netns/NAME or /proc/PID/ns/net"
	kind, err := nsType(e.Netns)
	switch {
	case err != nil:
		return model.Invalid("netns", "netns %q of endpoint %s is not a network namespace: %v; %s", e.Netns, e.ID, err, hint)
	case kind != unix.CLONE_NEWNET:
		return model.Invalid("netns", "netns %q of endpoint %s is a %s namespace, not a network namespace; %s",
			e.Netns, e.ID, cmp.Or(nsKinds[kind], fmt.Sprintf("%#x", kind)), hint)
	}
	return nil
}

// nsType returns the CLONE_NEW* type of the namespace file at path. Statfs
// first: opening an arbitrary file (a FIFO, a device) could block or act.
func nsType(path string) (int, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return 0, err
	}
	if st.Type != unix.NSFS_MAGIC {
		return 0, errors.New("it is not a namespace file")
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	kind, err := unix.IoctlRetInt(fd, unix.NS_GET_NSTYPE)
	if err != nil {
		return 0, fmt.Errorf("namespace type: %w", err)
	}
	return kind, nil
}

// CheckHostIP refuses a port mapping whose host_ip is not an address of the
// node, listing those it has. An address of the node is one the kernel
// takes as local: the whole of 127.0.0.0/8 counts, as it does for bind.
func (m *Manager) CheckHostIP(p *model.RPort) error {
	if !p.HostIP.IsValid() {
		return nil
	}
	local, err := m.localPrefixes()
	if err != nil {
		return fmt.Errorf("port mapping %s: list the node's addresses: %w", p.ID, err)
	}
	for _, pf := range local {
		if pf.Contains(p.HostIP) {
			return nil
		}
	}
	names := make([]string, len(local))
	for i, pf := range local {
		names[i] = pf.String()
		if pf.IsSingleIP() {
			names[i] = pf.Addr().String()
		}
	}
	return model.Invalid("host_ip", "host_ip %s of port mapping %s is not an address of this node; its addresses are %s: use one of them, or leave host_ip out (or 0.0.0.0) for all of them",
		p.HostIP, p.ID, listSome(names))
}

// localPrefixes returns the local routes of the node (table local, type
// local), IPv4 first, leaving out IPv6 link-local ones: a host_ip cannot
// carry the zone they would need.
func (m *Manager) localPrefixes() ([]netip.Prefix, error) {
	filter := &netlink.Route{Table: unix.RT_TABLE_LOCAL, Type: unix.RTN_LOCAL}
	var routes []netlink.Route
	var err error
	for range 3 { // a dump interrupted by a concurrent change is retried
		routes, err = m.h.RouteListFiltered(netlink.FAMILY_ALL, filter, netlink.RT_FILTER_TABLE|netlink.RT_FILTER_TYPE)
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	var out []netip.Prefix
	for _, r := range routes {
		if r.Dst == nil {
			continue
		}
		a, ok := netip.AddrFromSlice(r.Dst.IP)
		a = a.Unmap()
		if !ok || a.Is6() && a.IsLinkLocalUnicast() {
			continue
		}
		ones, _ := r.Dst.Mask.Size()
		out = append(out, netip.PrefixFrom(a, ones))
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int {
		return cmp.Or(a.Addr().Compare(b.Addr()), cmp.Compare(a.Bits(), b.Bits()))
	})
	return slices.Compact(out), nil
}

// CheckUplinks refuses uplinks that are not interfaces of the node, listing
// the interfaces it has (other than the agent's own bridges and veths).
func (m *Manager) CheckUplinks(s model.Settings) error {
	for _, name := range s.Uplinks {
		_, err := m.linkByName(name)
		if err == nil {
			continue
		}
		if !errors.Is(err, ErrNotFound) {
			return fmt.Errorf("uplink %s: %w", name, err)
		}
		links, err := m.h.LinkList()
		if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
			return fmt.Errorf("list interfaces: %w", err)
		}
		var names []string
		for _, l := range links {
			if !Owned(l) {
				names = append(names, l.Attrs().Name)
			}
		}
		slices.Sort(names)
		return model.Invalid("uplinks", "uplink %q is not an interface of this node; its interfaces are %s: name those that face the outside, or leave uplinks out for the ones with a default route",
			name, listSome(names))
	}
	return nil
}

// listSome joins up to 16 names, saying how many more there are.
func listSome(names []string) string {
	const most = 16
	if len(names) == 0 {
		return "none"
	}
	if len(names) <= most {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:most], ", "), len(names)-most)
}
