package netdev

import (
	"errors"
	"fmt"

	"github.com/portcullis/portcullis/dataplane/model"
)

// External networks (model.Network.External) are plugged by another
// program, a CNI main plugin that portcullis-cni chains after: the agent
// only looks. It does not create or address their bridge (its gateway
// address is the other plugin's), does not attach, re-attach, bring up or
// set hairpin on their veths, and never deletes any of them.

// checkExternalBridge checks an external network's bridge. A routed
// network has none. A missing bridge is not an error: the bridge plugin
// makes it at its first ADD, possibly after the agent started; the
// network's endpoints, which need it, come after that.
func (m *Manager) checkExternalBridge(n *model.RNetwork) error {
	if n.Routed() {
		return nil
	}
	l, err := m.linkByName(n.Bridge)
	switch {
	case errors.Is(err, ErrNotFound):
		return nil
	case err != nil:
		return fmt.Errorf("find bridge %s: %w", n.Bridge, err)
	case l.Type() != "bridge":
		return fmt.Errorf("interface %s of external network %s is a %s, not a bridge: set the network's bridge to the bridge your CNI plugin makes, or leave it out for a routed plugin such as ptp", n.Bridge, n.Name, l.Type())
	}
	return nil
}

// checkExternalEndpoint checks that an external endpoint's host veth is
// there and, on a bridged network, a port of the network's bridge.
// Missing is ErrNotFound (the container went); anything else is refused
// without changing it: the plugin that made the veth attaches it.
func (m *Manager) checkExternalEndpoint(e *model.REndpoint) error {
	l, err := m.linkByName(e.HostIfname)
	switch {
	case errors.Is(err, ErrNotFound):
		return missing{model.Invalid("host_ifname", "host_ifname %q of endpoint %s does not exist on the node: the plugin before portcullis-cni makes it; give the host end of the container's veth", e.HostIfname, e.ID)}
	case err != nil:
		return err
	case e.Net.Routed():
		if l.Attrs().MasterIndex != 0 {
			return model.Invalid("host_ifname", "host_ifname %q of endpoint %s is a port of a bridge, but network %s is routed (no bridge): set the network's bridge", e.HostIfname, e.ID, e.Net.Name)
		}
		return nil
	}
	br, err := m.linkByName(e.Net.Bridge)
	if err != nil {
		return model.Invalid("host_ifname", "bridge %s of network %s, where host_ifname %q should be a port, is not there: %v", e.Net.Bridge, e.Net.Name, e.HostIfname, err)
	}
	if l.Attrs().MasterIndex != br.Attrs().Index {
		return model.Invalid("host_ifname", "host_ifname %q of endpoint %s is not a port of bridge %s of network %s: the plugin before portcullis-cni attaches it; check that its bridge is %s", e.HostIfname, e.ID, e.Net.Bridge, e.Net.Name, e.Net.Bridge)
	}
	return nil
}
