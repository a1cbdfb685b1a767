package cni

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"regexp"
)

// ConflistOptions describe a network configuration list of portcullis-cni
// for a runtime's CNI configuration directory (Podman's network_config_dir,
// /etc/cni/net.d by default).
type ConflistOptions struct {
	Name    string // CNI network name, and the agent network's
	Subnet  string // required, IPv4
	Subnet6 string // optional
	Bridge  string // optional: the agent picks one
	Socket  string // the agent's socket; empty: the plugin's default
	// DataDir is host-local's data directory; empty: its default
	// (/var/lib/cni/networks).
	DataDir string
}

// Podman takes network names of this form (podman network create).
var confNameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)

// Conflist returns the configuration list for o, as Podman (CNI backend)
// and other runtimes use it:
//
//   - capabilities portMappings, ips and mac are declared: Podman rewrites
//     the first plugin's capabilities to {"ips": true} for a container
//     with --ip when ips is missing, which drops its published ports;
//   - the subnets are in host-local's ranges (addressing) and, because
//     Podman 4.3 reads subnets only from its own drivers' plugins, also in
//     the list's podman_labels, which `podman network inspect` shows.
func Conflist(o ConflistOptions) ([]byte, error) {
	if !confNameRE.MatchString(o.Name) || len(o.Name) > 64 {
		return nil, fmt.Errorf("network name %q: use 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit", o.Name)
	}
	ranges := [][]map[string]string{}
	labels := map[string]string{}
	for _, s := range []struct {
		field, value, example string
		v4                    bool
	}{{"subnet", o.Subnet, "10.89.0.0/24", true}, {"subnet6", o.Subnet6, "fd00:89::/64", false}} {
		if s.value == "" {
			continue
		}
		p, err := netip.ParsePrefix(s.value)
		if err != nil || p != p.Masked() || p.Addr().Is4() != s.v4 {
			return nil, fmt.Errorf("%s %q is not a network address of its family with a prefix length: use one such as %s", s.field, s.value, s.example)
		}
		ranges = append(ranges, []map[string]string{{"subnet": p.String()}})
		labels["portcullis."+s.field] = p.String()
	}
	if o.Subnet == "" {
		return nil, fmt.Errorf("subnet is required: the IPv4 network of the containers, such as 10.89.0.0/24")
	}
	ipam := map[string]any{"type": "host-local", "ranges": ranges}
	if o.DataDir != "" {
		ipam["dataDir"] = o.DataDir
	}
	plugin := map[string]any{"type": "portcullis-cni", "network": o.Name,
		"subnet": labels["portcullis.subnet"], "ipam": ipam,
		"capabilities": map[string]bool{"portMappings": true, "ips": true, "mac": true}}
	if o.Subnet6 != "" {
		plugin["subnet6"] = labels["portcullis.subnet6"]
	}
	if o.Bridge != "" {
		plugin["bridge"] = o.Bridge
	}
	if o.Socket != "" {
		plugin["socket"] = o.Socket
	}
	list := map[string]any{
		"cniVersion": "1.0.0", "name": o.Name,
		"args":    map[string]any{"podman_labels": labels},
		"plugins": []any{plugin},
	}
	return json.MarshalIndent(list, "", "  ")
}
