package cni

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/portcullis/portcullis/dataplane/model"
)

// portMappings turns the portMappings capability into the agent's port
// mappings of endpoint epID, each with an id derived from the endpoint and
// the host side, so a repeated ADD replaces instead of adding.
//
// A host address of "", 0.0.0.0 or :: means every node address: runtimes
// send one entry per family for that (nerdctl, Podman), and both become one
// mapping. An IPv6 host address is skipped when the endpoint has no IPv6
// address, as the portmap plugin does.
func portMappings(epID string, hasIP6 bool, in []PortMapEntry) ([]model.PortMapping, error) {
	var out []model.PortMapping
	seen := map[string]int{}
	for _, e := range in {
		proto := strings.ToLower(e.Protocol)
		if proto == "" {
			proto = "tcp"
		}
		hostIP := ""
		if e.HostIP != "" && e.HostIP != "0.0.0.0" && e.HostIP != "::" {
			a, err := netip.ParseAddr(e.HostIP)
			if err != nil || a.Zone() != "" {
				return nil, invalidConf("portMappings: hostIP %q is not an IP address", e.HostIP)
			}
			a = a.Unmap()
			if a.Is6() && !hasIP6 {
				continue
			}
			hostIP = a.String()
		}
		id := epID + "-" + proto + "-" + strconv.Itoa(e.HostPort)
		if hostIP != "" {
			id += "-" + hash(hostIP)[:8]
		}
		p := model.PortMapping{ID: id, Endpoint: epID, Proto: proto, HostIP: hostIP,
			HostPort: e.HostPort, Port: e.ContainerPort}
		if i, ok := seen[id]; ok {
			if out[i] != p {
				return nil, invalidConf("portMappings: host port %s %d%s is mapped twice, to container ports %d and %d", proto, e.HostPort, atHost(hostIP), out[i].Port, p.Port)
			}
			continue
		}
		seen[id] = len(out)
		out = append(out, p)
	}
	return out, nil
}

func atHost(ip string) string {
	if ip == "" {
		return ""
	}
	return fmt.Sprintf(" on %s", ip)
}
