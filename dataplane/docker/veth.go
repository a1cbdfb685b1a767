package docker

import (
	"bytes"
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// hostVeths finds, for each network a container is on, the host end of its
// veth: the interface with the endpoint's MAC in the container's namespace
// names its peer's index (IFLA_LINK), which lives in the node's namespace,
// where dockerd and this agent run.
func hostVeths(node *netlink.Handle, sandboxKey string, pid int, macs map[string]net.HardwareAddr) (map[string]string, error) {
	// The process's own namespace first: the sandbox file is a bind mount
	// that an agent in another mount namespace (ip netns exec, systemd's
	// private mounts) may see as an empty file.
	ns, err := netns.GetFromPid(pid)
	if err != nil || pid <= 0 {
		ns, err = netns.GetFromPath(sandboxKey)
	}
	if err != nil {
		return nil, fmt.Errorf("open network namespace %s (pid %d): %w", sandboxKey, pid, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, fmt.Errorf("netlink in %s: %w", sandboxKey, err)
	}
	defer h.Close()
	links, err := h.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list interfaces in %s: %w", sandboxKey, err)
	}
	out := map[string]string{}
	for netName, mac := range macs {
		for _, l := range links {
			a := l.Attrs()
			if l.Type() != "veth" || !bytes.Equal(a.HardwareAddr, mac) || a.ParentIndex == 0 {
				continue
			}
			peer, err := node.LinkByIndex(a.ParentIndex)
			if err != nil {
				return nil, fmt.Errorf("peer of %s (index %d) in the node: %w", a.Name, a.ParentIndex, err)
			}
			out[netName] = peer.Attrs().Name
		}
	}
	return out, nil
}
