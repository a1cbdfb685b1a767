package model

import "fmt"

// Spec returns the port mapping as it was given. Most mappings are given
// in the form their resolved fields rebuild (canonical), so an RPort keeps
// its own copy of the given form, 128 bytes, only when it differs: a proto
// in capitals, host_ip 0.0.0.0, a container port left out, a range with
// spaces.
func (p *RPort) Spec() PortMapping {
	if p.given != nil {
		return *p.given
	}
	return p.canonical()
}

// canonical is the mapping in the form the API would give it back: host
// and container port, or both ranges, the proto's lower-case name, the
// host address as netip prints it.
func (p *RPort) canonical() PortMapping {
	s := PortMapping{ID: p.ID, Proto: ProtoName(p.Proto), HostPort: int(p.HostLo), Port: int(p.Lo), Source: p.source}
	if p.EP != nil {
		s.Endpoint = p.EP.ID
	}
	if p.HostIP.IsValid() {
		s.HostIP = p.HostIP.String()
	}
	if p.HostLo != p.HostHi {
		s.HostPort, s.Port = 0, 0
		s.HostPortRange = fmt.Sprintf("%d-%d", p.HostLo, p.HostHi)
		s.PortRange = fmt.Sprintf("%d-%d", p.Lo, p.Lo+(p.HostHi-p.HostLo))
	}
	return s
}

// keepGiven keeps a copy of given when the resolved fields do not rebuild
// it exactly.
func (p *RPort) keepGiven(given PortMapping) {
	if p.canonical() != given {
		p.given = &given
	}
}
