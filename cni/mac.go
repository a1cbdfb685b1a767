package cni

import (
	"fmt"
	"net"
	"strings"

	types100 "github.com/containernetworking/cni/pkg/types/100"

	"github.com/portcullis/portcullis/dataplane/model"
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

// checkAgentMAC (CHECK) compares the MAC the agent registered with the
// container interface's in the result, which a later plugin that changed
// it (tuning with a "mac" of its own) updated: the agent drops what the
// container sends from any other MAC as spoofed.
func checkAgentMAC(ep model.Endpoint, ctrIf *types100.Interface) error {
	if ctrIf.Mac == "" || sameMAC(ep.MAC, ctrIf.Mac) {
		return nil
	}
	return fmt.Errorf("endpoint %s has MAC %s in portcullisd, but the result gives %s its MAC %s: a plugin after portcullis-cni changed it, and the agent drops what the container sends from it; give the MAC to portcullis-cni instead (CNI_ARGS MAC=, or the mac capability) and remove the other plugin's \"mac\"",
		ep.ID, ep.MAC, ctrIf.Name, ctrIf.Mac)
}

func sameMAC(a, b string) bool {
	ma, err1 := net.ParseMAC(a)
	mb, err2 := net.ParseMAC(b)
	return err1 == nil && err2 == nil && ma.String() == mb.String()
}
