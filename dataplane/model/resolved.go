package model

import (
	"net"
	"net/netip"
	"strconv"
)

// Protocol numbers used in resolved port mappings and exposed ports.
const (
	ProtoICMP   uint8 = 1
	ProtoTCP    uint8 = 6
	ProtoUDP    uint8 = 17
	ProtoICMPv6 uint8 = 58
	ProtoSCTP   uint8 = 132
)

// Resolved is the live, validated desired state: every default filled in and
// every address parsed. Backends program only this form and must treat it as
// read-only. It changes only through its Put/Delete methods, each of which
// returns the Delta that backends apply, so one change costs the same with 10
// or 100,000 objects present.
type Resolved struct {
	Settings  Settings
	Networks  map[string]*RNetwork
	Endpoints map[string]*REndpoint
	Ports     map[string]*RPort
	Links     map[string]*RLink // key: parent/alias

	idx index
}

// Delta is one change to a Resolved: for each object, its old and new
// resolved form (Old nil: added; New nil: removed). Endpoint replacements
// carry the ports and links that point at the endpoint as changes too.
type Delta struct {
	Settings  *SettingsChange
	Networks  []NetworkChange
	Endpoints []EndpointChange
	Ports     []PortChange
	Links     []LinkChange
}

// SettingsChange is a change of node-wide settings.
type SettingsChange struct{ Old, New Settings }

// NetworkChange is one network added, replaced or removed.
type NetworkChange struct{ Old, New *RNetwork }

// EndpointChange is one endpoint added, replaced or removed.
type EndpointChange struct{ Old, New *REndpoint }

// PortChange is one port mapping added, replaced or removed.
type PortChange struct{ Old, New *RPort }

// LinkChange is one link added, replaced or removed.
type LinkChange struct{ Old, New *RLink }

// Empty reports whether the delta changes nothing.
func (d *Delta) Empty() bool {
	return d.Settings == nil && len(d.Networks) == 0 && len(d.Endpoints) == 0 &&
		len(d.Ports) == 0 && len(d.Links) == 0
}

// RNetwork is a resolved Network.
type RNetwork struct {
	Spec       Network // as given, for reads and persistence
	Name       string
	Bridge     string
	Subnet     netip.Prefix
	Subnet6    netip.Prefix // invalid when absent
	Gateway    netip.Addr
	Gateway6   netip.Addr
	ICC        bool
	Masquerade bool
	SNATIP     netip.Addr // invalid when absent
	MTU        int
	Internal   bool
}

// REndpoint is a resolved Endpoint.
type REndpoint struct {
	Spec       Endpoint
	ID         string
	Net        *RNetwork
	IP         netip.Addr
	IP6        netip.Addr // invalid when absent
	MAC        net.HardwareAddr
	HostIfname string // the host end of the veth (generated for netns endpoints)
	Netns      string // empty when the veth already exists
	Ifname     string // name inside Netns
	Exposed    []RPortProto
	SNATIP     netip.Addr
	Name       string
	Hostname   string
	Env        []string
}

// RPortProto is an exposed port with its protocol number.
type RPortProto struct {
	Port  uint16
	Proto uint8
}

// RPort is a resolved PortMapping. Single ports have HostLo == HostHi.
// A node holds 100,000s of them, so it keeps the mapping as given (Spec)
// only when its fields cannot rebuild it (see portspec.go).
type RPort struct {
	ID     string
	EP     *REndpoint
	HostIP netip.Addr // invalid: every node address
	given  *PortMapping
	source string
	Proto  uint8
	HostLo uint16
	HostHi uint16
	Lo     uint16 // container port range start; the range has HostHi-HostLo+1 ports
}

// Is4 reports whether the mapping is reached over IPv4 (wildcard mappings are
// IPv4 and, when the endpoint has an IPv6 address, IPv6 too).
func (p *RPort) Is4() bool { return !p.HostIP.IsValid() || p.HostIP.Is4() }

// Is6 reports whether the mapping is reached over IPv6.
func (p *RPort) Is6() bool {
	return p.EP.IP6.IsValid() && (!p.HostIP.IsValid() || p.HostIP.Is6())
}

// RLink is a resolved Link: Parent may open connections to Child.Exposed.
type RLink struct {
	Spec   Link
	Parent *REndpoint
	Child  *REndpoint
	Alias  string
}

// ProtoName returns tcp, udp, sctp or the number.
func ProtoName(p uint8) string {
	switch p {
	case ProtoTCP:
		return "tcp"
	case ProtoUDP:
		return "udp"
	case ProtoSCTP:
		return "sctp"
	case ProtoICMP:
		return "icmp"
	}
	return strconv.Itoa(int(p))
}
