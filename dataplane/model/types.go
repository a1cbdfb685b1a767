// Package model holds the controller's resources (spec/api.md), their validation,
// and the resolved form that backends program into the kernel.
package model

// Settings are node-wide.
type Settings struct {
	// Backend is auto, ebpf or nftables. It is chosen when the agent starts.
	Backend string `json:"backend,omitempty"`
	// Uplinks are the interfaces that face the outside. Empty means the
	// interfaces that carry a default route.
	Uplinks []string `json:"uplinks,omitempty"`
}

// Network is one Linux bridge with a subnet, like docker0.
type Network struct {
	Name       string `json:"name"`
	Bridge     string `json:"bridge,omitempty"`   // created if absent; default: the network name
	Subnet     string `json:"subnet"`             // IPv4 CIDR
	Subnet6    string `json:"subnet6,omitempty"`  // optional IPv6 CIDR
	Gateway    string `json:"gateway,omitempty"`  // default: first address of subnet
	Gateway6   string `json:"gateway6,omitempty"` // default: first address of subnet6
	ICC        *bool  `json:"icc,omitempty"`      // default true
	Masquerade *bool  `json:"masquerade,omitempty"`
	SNATIP     string `json:"snat_ip,omitempty"` // fixed source address instead of masquerade
	MTU        int    `json:"mtu,omitempty"`
	// Internal networks have no traffic in or out (docker network create
	// --internal): their endpoints reach each other, as icc allows, and the
	// gateway; nothing leaves through the node and nothing is published.
	Internal bool `json:"internal,omitempty"`
	// Source names the runtime that owns the object (SourceDocker), empty
	// for objects made through the API. Owned objects change only through
	// their source; the API refuses to change them.
	Source string `json:"source,omitempty"`
	// ICCOverride, on a network owned by a source, says that icc was set
	// through the API and wins over what the source says.
	ICCOverride bool `json:"icc_override,omitempty"`
	// External networks are plugged by another program (a CNI main
	// plugin such as bridge or ptp, which portcullis-cni chains after):
	// the agent never creates, addresses, attaches or removes their
	// bridge and veths, and only programs its dataplane for them. With a
	// bridge, the endpoints are its ports; without one (ptp), each
	// endpoint's host veth is a routed link of its own.
	External bool `json:"external,omitempty"`
}

// Routed reports whether the network's endpoints are routed host veths
// with no bridge (an external network without a bridge).
func (n *RNetwork) Routed() bool { return n.Spec.External && n.Bridge == "" }

// PortProto is one exposed port of an endpoint.
type PortProto struct {
	Port  int    `json:"port"`
	Proto string `json:"proto"`
}

// Endpoint is one container interface on a network.
type Endpoint struct {
	ID         string      `json:"id"`
	Network    string      `json:"network"`
	IP         string      `json:"ip"`
	IP6        string      `json:"ip6,omitempty"`
	MAC        string      `json:"mac,omitempty"`         // default for netns endpoints: 02:42 + IPv4
	HostIfname string      `json:"host_ifname,omitempty"` // attach an existing veth, or
	Netns      string      `json:"netns,omitempty"`       // a netns path: the agent creates the veth
	Ifname     string      `json:"ifname,omitempty"`      // name inside netns; default eth0
	Exposed    []PortProto `json:"exposed,omitempty"`
	SNATIP     string      `json:"snat_ip,omitempty"`
	Name       string      `json:"name,omitempty"`
	Hostname   string      `json:"hostname,omitempty"`
	Env        []string    `json:"env,omitempty"` // KEY=value, for links
	// HostVeth is read-only: the host end of the endpoint's veth.
	HostVeth string `json:"host_veth,omitempty"`
	Source   string `json:"source,omitempty"` // see Network.Source
}

// PortMapping publishes host ports on an endpoint (docker -p).
type PortMapping struct {
	ID            string `json:"id"`
	Endpoint      string `json:"endpoint"`
	Proto         string `json:"proto"`
	HostIP        string `json:"host_ip,omitempty"` // empty: every node address
	HostPort      int    `json:"host_port,omitempty"`
	HostPortRange string `json:"host_port_range,omitempty"` // "8000-8999"
	Port          int    `json:"port,omitempty"`
	PortRange     string `json:"port_range,omitempty"`
	Source        string `json:"source,omitempty"` // see Network.Source
}

// Link is a legacy Docker link: Parent may reach Child's exposed ports under Alias.
type Link struct {
	Parent string `json:"parent"`
	Alias  string `json:"alias"`
	Child  string `json:"child"`
	Source string `json:"source,omitempty"` // see Network.Source
	// Env and Hosts are filled in by the controller in responses.
	Env   []string `json:"env,omitempty"`
	Hosts string   `json:"hosts,omitempty"`
}

// SourceDocker marks objects that the Docker source made from dockerd's
// containers and networks.
const SourceDocker = "docker"

// Key returns the link's identity, "parent/alias".
func (l Link) Key() string { return l.Parent + "/" + l.Alias }

// State is the whole desired state of a node.
type State struct {
	Settings  Settings               `json:"settings"`
	Networks  map[string]Network     `json:"networks"`
	Endpoints map[string]Endpoint    `json:"endpoints"`
	Ports     map[string]PortMapping `json:"ports"`
	Links     map[string]Link        `json:"links"`
}

// NewState returns an empty state with all maps allocated.
func NewState() *State {
	return &State{
		Networks:  map[string]Network{},
		Endpoints: map[string]Endpoint{},
		Ports:     map[string]PortMapping{},
		Links:     map[string]Link{},
	}
}

// Clone returns a deep copy, so a change can be tried without touching s.
func (s *State) Clone() *State {
	c := NewState()
	c.Settings = s.Settings
	c.Settings.Uplinks = append([]string(nil), s.Settings.Uplinks...)
	for k, v := range s.Networks {
		c.Networks[k] = v
	}
	for k, v := range s.Endpoints {
		v.Exposed = append([]PortProto(nil), v.Exposed...)
		v.Env = append([]string(nil), v.Env...)
		c.Endpoints[k] = v
	}
	for k, v := range s.Ports {
		c.Ports[k] = v
	}
	for k, v := range s.Links {
		c.Links[k] = v
	}
	return c
}
