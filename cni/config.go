// Package cni is portcullis-cni, the CNI plugin (github.com/containernetworking/cni,
// spec versions 0.3.0 to 1.1.0) that plugs containers into a portcullisd
// network. It replaces the reference bridge + portmap + firewall chain:
// addressing is delegated to a standard IPAM plugin (host-local), the plugin
// creates the veth pair, and portcullisd attaches the host end to the
// network's bridge and does the filtering, NAT and published ports.
//
// See docs/cni.md for the configuration and why the plugin, not the agent,
// creates the veth.
package cni

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"regexp"
	"strings"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/portcullis/portcullis/dataplane/api"
	"github.com/portcullis/portcullis/dataplane/model"
)

// NetConf is the plugin's configuration: the standard fields, where to find
// the agent, which agent network to plug into and, to create that network
// when the agent does not have it yet, its shape.
type NetConf struct {
	types.PluginConf

	// Socket is portcullisd's API socket; default api.DefaultSocket.
	Socket string `json:"socket,omitempty"`
	// Network is the agent network's name; default: the CNI network name.
	Network string `json:"network,omitempty"`

	// The fields below describe the agent network. When it does not exist,
	// the plugin creates it from them (subnet is then required); when it
	// exists, every field given must match it.
	Bridge     string `json:"bridge,omitempty"`
	Subnet     string `json:"subnet,omitempty"`
	Gateway    string `json:"gateway,omitempty"`
	Subnet6    string `json:"subnet6,omitempty"`
	Gateway6   string `json:"gateway6,omitempty"`
	ICC        *bool  `json:"icc,omitempty"`
	Masquerade *bool  `json:"masquerade,omitempty"`
	MTU        int    `json:"mtu,omitempty"`
	// External is set in chained mode (chained.go), never read from the
	// configuration: the network's interfaces are the main plugin's.
	External bool `json:"-"`

	RuntimeConfig RuntimeConfig `json:"runtimeConfig,omitempty"`
}

// RuntimeConfig holds the capabilities the runtime passes (only those the
// configuration enables under "capabilities" arrive).
type RuntimeConfig struct {
	PortMappings []PortMapEntry `json:"portMappings,omitempty"`
	// MAC is the "mac" capability: the container interface's address.
	MAC string `json:"mac,omitempty"`
}

// PortMapEntry is one entry of the portMappings capability, as runtimes
// (containerd, CRI-O, nerdctl, Podman) send it.
type PortMapEntry struct {
	HostPort      int    `json:"hostPort"`
	ContainerPort int    `json:"containerPort"`
	Protocol      string `json:"protocol,omitempty"`
	HostIP        string `json:"hostIP,omitempty"`
}

// Supported are the CNI spec versions the plugin speaks. 0.1.0 and 0.2.0
// are left out: their results cannot name interfaces.
var Supported = version.VersionsStartingFrom("0.3.0")

// parseConf decodes stdin and fills in the defaults.
func parseConf(stdin []byte) (*NetConf, error) {
	c := &NetConf{}
	if err := json.Unmarshal(stdin, c); err != nil {
		return nil, invalidConf("parse network configuration: %v", err)
	}
	if err := version.ParsePrevResult(&c.PluginConf); err != nil {
		return nil, invalidConf("%v", err)
	}
	if c.Socket == "" {
		c.Socket = api.DefaultSocket
	}
	if c.Network == "" {
		c.Network = c.Name
	}
	if c.Network == "" {
		return nil, invalidConf(`neither "network" nor "name" is set: name the portcullisd network to plug into`)
	}
	return c, nil
}

func invalidConf(format string, args ...any) *types.Error {
	return types.NewError(types.ErrInvalidNetworkConfig, fmt.Sprintf(format, args...), "")
}

// wantNetwork is the agent network the configuration asks for, used when
// the agent does not have it yet.
func (c *NetConf) wantNetwork() model.Network {
	return model.Network{
		Name: c.Network, Bridge: c.Bridge,
		Subnet: c.Subnet, Gateway: c.Gateway,
		Subnet6: c.Subnet6, Gateway6: c.Gateway6,
		ICC: c.ICC, Masquerade: c.Masquerade, MTU: c.MTU, External: c.External,
	}
}

// mismatch reports the first field that the configuration sets and that
// the existing network n (a view, defaults filled in) has otherwise.
func (c *NetConf) mismatch(n model.Network) error {
	diff := func(field, conf, have string) error {
		return invalidConf("network %q exists in portcullisd with %s %s, but the CNI configuration says %s: change one to match the other (portcullis-cni never changes an existing network)", n.Name, field, have, conf)
	}
	strs := []struct{ field, conf, have string }{
		{"bridge", c.Bridge, n.Bridge},
		{"subnet", c.Subnet, n.Subnet},
		{"gateway", c.Gateway, n.Gateway},
		{"subnet6", c.Subnet6, n.Subnet6},
		{"gateway6", c.Gateway6, n.Gateway6},
	}
	for _, s := range strs {
		if s.conf != "" && !sameText(s.conf, s.have) {
			return diff(s.field, s.conf, orNone(s.have))
		}
	}
	bools := []struct {
		field      string
		conf, have *bool
	}{{"icc", c.ICC, n.ICC}, {"masquerade", c.Masquerade, n.Masquerade}}
	for _, b := range bools {
		if b.conf != nil && b.have != nil && *b.conf != *b.have {
			return diff(b.field, fmt.Sprint(*b.conf), fmt.Sprint(*b.have))
		}
	}
	if c.MTU != 0 && c.MTU != n.MTU {
		return diff("mtu", fmt.Sprint(c.MTU), orNone(fmt.Sprint(n.MTU)))
	}
	return nil
}

// sameText compares addresses and prefixes by value ("fd00::0/64" is
// "fd00::/64"), anything else as text.
func sameText(a, b string) bool {
	if pa, err := netip.ParsePrefix(a); err == nil {
		pb, err := netip.ParsePrefix(b)
		return err == nil && pa == pb
	}
	if aa, err := netip.ParseAddr(a); err == nil {
		ab, err := netip.ParseAddr(b)
		return err == nil && aa == ab
	}
	return a == b
}

func orNone(s string) string {
	if s == "" || s == "0" {
		return "(none)"
	}
	return s
}

// Endpoint and port mapping ids must be model names: 1-64 of [A-Za-z0-9_.-].
var unsafeRE = regexp.MustCompile(`[^A-Za-z0-9_.-]`)

// EndpointID derives the agent endpoint id of one attachment. CNI keys an
// attachment by container id and interface name; ids are up to 64 characters
// (Docker and containerd use 64 hex digits), so the id keeps 12 readable
// characters of the container id, like `docker ps`, and a hash of both:
// "cni-<container id[:12]>-<hash>".
func EndpointID(containerID, ifname string) string {
	short := unsafeRE.ReplaceAllString(containerID, "_")
	if len(short) > 12 {
		short = short[:12]
	}
	return "cni-" + short + "-" + hash(containerID + "/" + ifname)[:10]
}

// HostVethName is the host end of an attachment's veth: "pcc" and 8 hex
// digits of a hash of the endpoint id (interface names are at most 15).
func HostVethName(endpointID string) string { return "pcc" + hash(endpointID)[:8] }

func hash(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// vethAlias marks the host ends the plugin created, so that DEL and GC
// never remove an interface someone else made, and tells which CNI network
// (configuration name) an interface belongs to.
const vethAliasPrefix = "portcullis-cni:"

func vethAlias(confName string) string { return vethAliasPrefix + confName }

func ownedVeth(alias string) bool { return strings.HasPrefix(alias, vethAliasPrefix) }
