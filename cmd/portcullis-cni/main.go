// Command portcullis-cni is the Portcullis CNI plugin: it plugs containers
// into portcullisd networks, with addressing from a standard IPAM plugin and
// published ports from the portMappings capability. Install it next to the
// other CNI plugins (/opt/cni/bin or /usr/lib/cni); see docs/cni.md.
package main

import (
	"github.com/containernetworking/cni/pkg/skel"

	"github.com/portcullis/portcullis/cni"
)

func main() {
	skel.PluginMainFuncs(cni.Funcs(), cni.Supported, "portcullis-cni: plugs containers into portcullisd networks (docs/cni.md)")
}
