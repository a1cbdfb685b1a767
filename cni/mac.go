package cni

import (
	"net"
	"strings"
)

// containerMAC is the MAC the runtime asks for the container interface, or
// nil for the kernel's choice: runtimeConfig.mac (the "mac" capability) or,
// as the bridge plugin reads it, MAC= in CNI_ARGS (what Podman passes for
// --mac-address). The plugin creates the interface with it, so the agent
// registers the address the container really has: a tuning plugin later
// in the chain reads the same inputs and finds nothing to change.
func containerMAC(rc RuntimeConfig, cniArgs string) (net.HardwareAddr, error) {
	if rc.MAC != "" {
		return parseMAC("runtimeConfig.mac", rc.MAC)
	}
	// CNI_ARGS is KEY=VALUE;... Other keys (IgnoreUnknown, IP for the
	// IPAM plugin, K8S_POD_NAME) are not ours and are left alone.
	for _, kv := range strings.Split(cniArgs, ";") {
		if k, v, ok := strings.Cut(kv, "="); ok && k == "MAC" && v != "" {
			return parseMAC("CNI_ARGS MAC", v)
		}
	}
	return nil, nil
}

func parseMAC(field, s string) (net.HardwareAddr, error) {
	mac, err := net.ParseMAC(s)
	if err != nil || len(mac) != 6 || mac[0]&1 != 0 || mac.String() == "00:00:00:00:00:00" {
		return nil, invalidConf("%s %q is not a unicast Ethernet address such as 02:42:0a:58:00:05", field, s)
	}
	return mac, nil
}
