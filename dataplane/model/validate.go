package model

import (
	"fmt"
	"hash/fnv"
	"net"
	"net/netip"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

var (
	nameRE   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)
	ifnameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,15}$`)
	envKeyRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

func checkName(field, v string) error {
	if !nameRE.MatchString(v) {
		return invalid(field, "%s %q is not a valid name: use 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit", field, v)
	}
	return nil
}

func checkIfname(field, v string) error {
	if !ifnameRE.MatchString(v) || v == "." || v == ".." {
		return invalid(field, "%s %q is not a valid interface name: use 1-15 letters, digits, '_', '.' or '-'", field, v)
	}
	return nil
}

func parsePrefix(field, v string, want4 bool) (netip.Prefix, error) {
	fam := "IPv6"
	if want4 {
		fam = "IPv4"
	}
	p, err := netip.ParsePrefix(v)
	if err != nil || p.Addr().Is4() != want4 || p.Addr().Is4In6() {
		return netip.Prefix{}, invalid(field, "%s %q is not an %s CIDR such as %s", field, v, fam, map[bool]string{true: "172.17.0.0/16", false: "fd00:17::/64"}[want4])
	}
	if p.Masked() != p {
		return netip.Prefix{}, invalid(field, "%s %q has host bits set; did you mean %s?", field, v, p.Masked())
	}
	if max := p.Addr().BitLen() - 2; p.Bits() > max {
		return netip.Prefix{}, invalid(field, "%s %q is too small for a network: use a prefix of /%d or shorter", field, v, max)
	}
	return p, nil
}

// parseAddr parses an address of the wanted family (4 or 6; 0 for either).
func parseAddr(field, v string, fam int) (netip.Addr, error) {
	a, err := netip.ParseAddr(v)
	if err == nil && a.Zone() == "" && !a.Is4In6() && (fam == 0 || (fam == 4) == a.Is4()) {
		return a, nil
	}
	want := map[int]string{0: "an IP address", 4: "an IPv4 address such as 172.17.0.2", 6: "an IPv6 address such as fd00:17::2"}[fam]
	return netip.Addr{}, invalid(field, "%s %q is not %s", field, v, want)
}

func checkPort(field string, v int) (uint16, error) {
	if v < 1 || v > 65535 {
		return 0, invalid(field, "%s %d is out of range: use 1-65535", field, v)
	}
	return uint16(v), nil
}

// parseRange parses "lo-hi" (or a single port).
func parseRange(field, v string) (uint16, uint16, error) {
	lo, hi, found := strings.Cut(v, "-")
	if !found {
		hi = lo
	}
	l, err1 := strconv.Atoi(strings.TrimSpace(lo))
	h, err2 := strconv.Atoi(strings.TrimSpace(hi))
	if err1 != nil || err2 != nil || l < 1 || h > 65535 || l > h {
		return 0, 0, invalid(field, "%s %q is not a port range: use LOW-HIGH with 1 <= LOW <= HIGH <= 65535, such as 8000-8999", field, v)
	}
	return uint16(l), uint16(h), nil
}

func parseProto(field, v string, sctpOK bool) (uint8, error) {
	switch strings.ToLower(v) {
	case "tcp":
		return ProtoTCP, nil
	case "udp":
		return ProtoUDP, nil
	case "sctp":
		if sctpOK {
			return ProtoSCTP, nil
		}
	}
	return 0, invalid(field, "%s %q is not supported: use tcp, udp or sctp", field, v)
}

// inside reports whether a is a usable host address of p (not the network
// address, nor the IPv4 broadcast address).
func inside(p netip.Prefix, a netip.Addr) bool {
	if !p.Contains(a) || a == p.Addr() {
		return false
	}
	if a.Is4() {
		b := p.Addr().As4()
		v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
		v |= ^uint32(0) >> p.Bits()
		return a != netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
	}
	return true
}

func boolOr(p *bool, def bool) bool {
	if p == nil {
		return def
	}
	return *p
}

// resolveSettings validates node-wide settings.
func resolveSettings(s Settings) (Settings, error) {
	switch s.Backend {
	case "", "auto", "ebpf", "nftables":
	default:
		return s, invalid("backend", "backend %q is not known: use auto, ebpf or nftables", s.Backend)
	}
	for _, u := range s.Uplinks {
		if err := checkIfname("uplinks", u); err != nil {
			return s, err
		}
	}
	return s, nil
}

// resolveNetwork validates one network on its own.
func resolveNetwork(n Network) (*RNetwork, error) {
	if err := checkName("name", n.Name); err != nil {
		return nil, err
	}
	r := &RNetwork{Spec: n, Name: n.Name, Bridge: n.Bridge, MTU: n.MTU,
		ICC: boolOr(n.ICC, true), Masquerade: boolOr(n.Masquerade, true), Internal: n.Internal}
	switch {
	case r.Bridge == "" && n.External:
		// Routed (ptp): the other plugin made no bridge.
	case r.Bridge == "":
		r.Bridge = n.Name
		if checkIfname("bridge", r.Bridge) != nil {
			return nil, invalid("bridge", "bridge is empty and name %q is not a valid interface name: give a bridge of 1-15 characters", n.Name)
		}
	}
	if err := checkIfname("bridge", r.Bridge); r.Bridge != "" && err != nil {
		return nil, err
	}
	if n.External && n.Source != "" {
		return nil, invalid("external", "network %q of %s cannot be external: a runtime source already owns its interfaces", n.Name, n.Source)
	}
	if n.Subnet == "" {
		return nil, invalid("subnet", "subnet is required: give an IPv4 CIDR such as 172.17.0.0/16")
	}
	var err error
	if r.Subnet, err = parsePrefix("subnet", n.Subnet, true); err != nil {
		return nil, err
	}
	if r.Gateway, err = gateway("gateway", n.Gateway, r.Subnet); err != nil {
		return nil, err
	}
	if n.Subnet6 != "" {
		if r.Subnet6, err = parsePrefix("subnet6", n.Subnet6, false); err != nil {
			return nil, err
		}
		if r.Gateway6, err = gateway("gateway6", n.Gateway6, r.Subnet6); err != nil {
			return nil, err
		}
	} else if n.Gateway6 != "" {
		return nil, invalid("gateway6", "gateway6 %q needs subnet6", n.Gateway6)
	}
	if n.SNATIP != "" {
		if r.SNATIP, err = parseAddr("snat_ip", n.SNATIP, 4); err != nil {
			return nil, err
		}
	}
	if n.MTU != 0 && (n.MTU < 1280 || n.MTU > 65535) {
		return nil, invalid("mtu", "mtu %d is out of range: use 1280-65535, or leave it out for 1500", n.MTU)
	}
	return r, nil
}

func gateway(field, v string, p netip.Prefix) (netip.Addr, error) {
	if v == "" {
		return p.Addr().Next(), nil
	}
	fam := 6
	if p.Addr().Is4() {
		fam = 4
	}
	a, err := parseAddr(field, v, fam)
	if err != nil {
		return a, err
	}
	if !inside(p, a) {
		return a, invalid(field, "%s %s is not a host address inside %s", field, a, p)
	}
	return a, nil
}

// HostIfnameFor returns the name of the host end of the veth that the agent
// creates for an endpoint: "pcv" and 8 hex digits of a hash of its id.
func HostIfnameFor(id string) string {
	h := fnv.New32a()
	h.Write([]byte(id))
	return fmt.Sprintf("pcv%08x", h.Sum32())
}

// resolveEndpoint validates one endpoint against its network.
func resolveEndpoint(e Endpoint, nets map[string]*RNetwork) (*REndpoint, error) {
	if err := checkName("id", e.ID); err != nil {
		return nil, err
	}
	n := nets[e.Network]
	if n == nil {
		return nil, invalid("network", "network %q is not known: create it first, or use one of the existing networks", e.Network)
	}
	e.HostVeth = ""
	r := &REndpoint{Spec: e, ID: e.ID, Net: n, Name: e.Name, Hostname: e.Hostname}
	var err error
	if r.IP, err = parseAddr("ip", e.IP, 4); err != nil {
		return nil, err
	}
	if !inside(n.Subnet, r.IP) || r.IP == n.Gateway {
		return nil, invalid("ip", "ip %s is not a free host address of network %q (%s, gateway %s)", r.IP, n.Name, n.Subnet, n.Gateway)
	}
	if e.IP6 != "" {
		if !n.Subnet6.IsValid() {
			return nil, invalid("ip6", "ip6 %q given but network %q has no subnet6", e.IP6, n.Name)
		}
		if r.IP6, err = parseAddr("ip6", e.IP6, 6); err != nil {
			return nil, err
		}
		if !inside(n.Subnet6, r.IP6) || r.IP6 == n.Gateway6 {
			return nil, invalid("ip6", "ip6 %s is not a free host address of network %q (%s)", r.IP6, n.Name, n.Subnet6)
		}
	}
	if err := resolveAttachment(e, r); err != nil {
		return nil, err
	}
	if r.Exposed, err = resolveExposed(e.Exposed); err != nil {
		return nil, err
	}
	if e.SNATIP != "" {
		if r.SNATIP, err = parseAddr("snat_ip", e.SNATIP, 4); err != nil {
			return nil, err
		}
	}
	for _, kv := range e.Env {
		k, _, ok := strings.Cut(kv, "=")
		if !ok || !envKeyRE.MatchString(k) {
			return nil, invalid("env", "env entry %q is not KEY=value", kv)
		}
	}
	r.Env = append([]string(nil), e.Env...)
	return r, nil
}

// resolveAttachment checks host_ifname/netns/ifname and the MAC address.
func resolveAttachment(e Endpoint, r *REndpoint) error {
	switch {
	case e.HostIfname != "" && e.Netns != "":
		return invalid("netns", "give either host_ifname %q or netns %q, not both", e.HostIfname, e.Netns)
	case e.HostIfname != "":
		if err := checkIfname("host_ifname", e.HostIfname); err != nil {
			return err
		}
		if e.MAC == "" {
			return invalid("mac", "mac is required with host_ifname: give the container interface's MAC address")
		}
		r.HostIfname = e.HostIfname
	case e.Netns != "" && r.Net.Spec.External:
		return invalid("netns", "network %q is external (another plugin makes its veths): give host_ifname, the host end that plugin made, instead of netns", r.Net.Name)
	case e.Netns != "":
		if !filepath.IsAbs(e.Netns) {
			return invalid("netns", "netns %q is not an absolute path such as /run/netns/web", e.Netns)
		}
		r.Netns, r.Ifname, r.HostIfname = e.Netns, "eth0", HostIfnameFor(e.ID)
		if e.Ifname != "" {
			if err := checkIfname("ifname", e.Ifname); err != nil {
				return err
			}
			r.Ifname = e.Ifname
		}
	default:
		return invalid("host_ifname", "give host_ifname (an existing veth) or netns (a namespace path for a new veth)")
	}
	if e.MAC == "" {
		ip := r.IP.As4()
		r.MAC = net.HardwareAddr{0x02, 0x42, ip[0], ip[1], ip[2], ip[3]}
		return nil
	}
	mac, err := net.ParseMAC(e.MAC)
	if err != nil || len(mac) != 6 || mac[0]&1 == 1 {
		return invalid("mac", "mac %q is not a unicast Ethernet address such as 02:42:ac:11:00:02", e.MAC)
	}
	r.MAC = mac
	return nil
}

func resolveExposed(in []PortProto) ([]RPortProto, error) {
	out := make([]RPortProto, 0, len(in))
	for _, pp := range in {
		port, err := checkPort("exposed.port", pp.Port)
		if err != nil {
			return nil, err
		}
		proto, err := parseProto("exposed.proto", pp.Proto, true)
		if err != nil {
			return nil, err
		}
		out = append(out, RPortProto{Port: port, Proto: proto})
	}
	return out, nil
}

// resolvePort validates one port mapping against its endpoint.
func resolvePort(p PortMapping, eps map[string]*REndpoint) (*RPort, error) {
	if err := checkName("id", p.ID); err != nil {
		return nil, err
	}
	ep := eps[p.Endpoint]
	if ep == nil {
		return nil, invalid("endpoint", "endpoint %q is not known: create it first", p.Endpoint)
	}
	if ep.Net.Internal {
		return nil, invalid("endpoint", "endpoint %q is on network %q, which is internal (nothing outside reaches it): publish on an endpoint of another network", ep.ID, ep.Net.Name)
	}
	r := &RPort{ID: p.ID, EP: ep, source: p.Source}
	var err error
	if r.Proto, err = parseProto("proto", p.Proto, true); err != nil {
		return nil, err
	}
	if p.HostIP != "" && p.HostIP != "0.0.0.0" && p.HostIP != "::" {
		if r.HostIP, err = parseAddr("host_ip", p.HostIP, 0); err != nil {
			return nil, err
		}
		if r.HostIP.Is6() && !ep.IP6.IsValid() {
			return nil, invalid("host_ip", "host_ip %s is IPv6 but endpoint %q has no ip6", r.HostIP, ep.ID)
		}
	}
	if r.HostLo, r.HostHi, err = hostPorts(p); err != nil {
		return nil, err
	}
	if r.Lo, err = containerPort(p, r.HostHi-r.HostLo); err != nil {
		return nil, err
	}
	r.keepGiven(p)
	return r, nil
}

func hostPorts(p PortMapping) (uint16, uint16, error) {
	switch {
	case p.HostPort != 0 && p.HostPortRange != "":
		return 0, 0, invalid("host_port_range", "give host_port %d or host_port_range %q, not both", p.HostPort, p.HostPortRange)
	case p.HostPortRange != "":
		return parseRange("host_port_range", p.HostPortRange)
	default:
		port, err := checkPort("host_port", p.HostPort)
		return port, port, err
	}
}

// containerPort returns the first container port; span is HostHi-HostLo.
func containerPort(p PortMapping, span uint16) (uint16, error) {
	switch {
	case p.Port != 0 && p.PortRange != "":
		return 0, invalid("port_range", "give port %d or port_range %q, not both", p.Port, p.PortRange)
	case p.PortRange != "":
		lo, hi, err := parseRange("port_range", p.PortRange)
		if err != nil {
			return 0, err
		}
		if hi-lo != span {
			return 0, invalid("port_range", "port_range %q has %d ports but the host side has %d: both sides must be the same length", p.PortRange, hi-lo+1, int(span)+1)
		}
		return lo, nil
	case p.Port != 0:
		port, err := checkPort("port", p.Port)
		if err == nil && span != 0 {
			return 0, invalid("port", "port %d is a single port but the host side is a range of %d: give port_range", p.Port, int(span)+1)
		}
		return port, err
	case span == 0 && p.HostPortRange == "":
		// -p 8080 without a container port means the same port, like Docker.
		return checkPort("port", p.HostPort)
	}
	return 0, invalid("port", "port is required: give the container port (or port_range for a range)")
}
