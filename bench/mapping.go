package bench

import (
	"fmt"
	"net/netip"
)

// Mapping is one published port, -p HOSTPORT:PORT/PROTO, in the terms every
// mode understands. The reference modes turn it into rules, ours into a
// model.PortMapping.
type Mapping struct {
	ID       string
	Proto    string // tcp or udp
	HostPort int
	// Container is "c1" (the measured service) or "c2" (the filler target).
	Container string
	IP        netip.Addr // the container's address
	Port      int
}

// Ports of the measured services on c1, and where filler and added host
// ports start. Fillers use tcp 10000-59999 and then udp 10000-59999, so
// 100,000 of them fit without host addresses; added mappings use 61000+.
const (
	echoHostPort  = 8080
	echoPort      = 80
	iperfPort     = 5201
	fillerBase    = 10000
	fillerPerProt = 50000
	addBase       = 61000
	maxFillers    = 2 * fillerPerProt
)

// fillerMapping is the i-th of the N mappings published ahead of the
// measured ones: -p P:P to c2, so that each has its own DNAT and ACCEPT rule
// and no rule for c2 ever matches traffic for c1.
func fillerMapping(i int, c2 netip.Addr) Mapping {
	proto := "tcp"
	if i >= fillerPerProt {
		proto = "udp"
	}
	p := fillerBase + i%fillerPerProt
	return Mapping{ID: fmt.Sprintf("f%d", i), Proto: proto, HostPort: p, Container: "c2", IP: c2, Port: p}
}

// fillerMappings returns the first n fillers.
func fillerMappings(n int, c2 netip.Addr) []Mapping {
	out := make([]Mapping, n)
	for i := range out {
		out[i] = fillerMapping(i, c2)
	}
	return out
}

// measuredMappings are published after the fillers: the echo service the
// connection benchmarks use (-p 8080:80), and iperf3's port for tcp and udp
// (-p 5201:5201 -p 5201:5201/udp).
func measuredMappings(c1 netip.Addr) []Mapping {
	return []Mapping{
		{ID: "echo", Proto: "tcp", HostPort: echoHostPort, Container: "c1", IP: c1, Port: echoPort},
		{ID: "iperf-tcp", Proto: "tcp", HostPort: iperfPort, Container: "c1", IP: c1, Port: iperfPort},
		{ID: "iperf-udp", Proto: "udp", HostPort: iperfPort, Container: "c1", IP: c1, Port: iperfPort},
	}
}

// addedMapping is the k-th mapping added one at a time on top of the
// fillers (the add-one-more latency), or of a per-call programming run.
func addedMapping(k int, c2 netip.Addr) Mapping {
	proto := "tcp"
	if k >= 65535-addBase+1 {
		proto = "udp" // past 65535: a per-call run of more than 4535 mappings
	}
	p := addBase + k%(65535-addBase+1)
	return Mapping{ID: fmt.Sprintf("a%d", k), Proto: proto, HostPort: p, Container: "c2", IP: c2, Port: p}
}
