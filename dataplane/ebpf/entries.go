package ebpf

import (
	"math/bits"
	"net"
	"net/netip"

	"github.com/portcullis/portcullis/dataplane/model"
)

// Map names, as in bpf/lib/maps.h. The first group is configuration, owned
// by the agent; the second is state, written by the datapath.
const (
	mapEndpoints   = "pc_endpoints"
	mapEpAddrs     = "pc_ep_addrs"
	mapEpMACs      = "pc_ep_macs"
	mapNetworks    = "pc_networks"
	mapSubnets     = "pc_subnets"
	mapLinks       = "pc_links"
	mapPorts       = "pc_ports"
	mapPorts6      = "pc_ports6"
	mapUplinks     = "pc_uplinks"
	mapLocalAddrs  = "pc_local_addrs"
	mapLocalAddrs6 = "pc_local_addrs6"

	mapFlows4 = "pc_flows4"
	mapTrack6 = "pc_track6"
	mapFlows6 = "pc_flows6"
	mapFrags  = "pc_frags"
	mapDrops  = "pc_drops"
	mapStats  = "pc_stats"

	mapEvents   = "pc_events"
	mapTraceCfg = "pc_trace_cfg"
)

// configMaps are resynchronised from the desired state; the others are not
// touched by Apply.
var configMaps = []string{mapEndpoints, mapEpAddrs, mapEpMACs, mapNetworks, mapSubnets, mapLinks, mapPorts, mapPorts6,
	mapUplinks, mapLocalAddrs, mapLocalAddrs6}

// entry is one key/value of a configuration map. Keys and values are the
// generated (comparable) types, so entries can be compared and counted.
type entry struct {
	m   string
	key any
	val any
}

var one = uint8(1)

func addrKey(a netip.Addr) bpfAddrKey {
	k := bpfAddrKey{Family: afInet}
	if a.Is6() && !a.Is4In6() {
		k.Family = afInet6
		k.Addr = a.As16()
		return k
	}
	b := a.Unmap().As4()
	copy(k.Addr[:], b[:])
	return k
}

func subnetKey(p netip.Prefix) bpfSubnetKey {
	p = p.Masked()
	a := addrKey(p.Addr())
	return bpfSubnetKey{Prefixlen: uint32(32 + p.Bits()), Family: a.Family, Addr: a.Addr}
}

func macKey(mac net.HardwareAddr) (bpfMacKey, bool) {
	var k bpfMacKey
	if len(mac) != 6 {
		return k, false
	}
	copy(k.Mac[:], mac)
	return k, true
}

// netEntries: the network's record, its subnets and its node addresses.
// id is the bridge's ifindex, which also names the network in the maps.
func netEntries(n *model.RNetwork, id uint32, bridgeMAC net.HardwareAddr) []entry {
	v := bpfNetwork{Gw4: be32(n.Gateway), Snat4: be32(n.SNATIP), BridgeIfindex: id}
	if n.ICC {
		v.Flags |= netICC
	}
	if n.Masquerade {
		v.Flags |= netMasq
	}
	if n.Internal {
		v.Flags |= netInternal
	}
	if n.Gateway6.IsValid() {
		v.Gw6 = n.Gateway6.As16()
	}
	copy(v.GwMac[:], bridgeMAC)
	es := []entry{{mapNetworks, id, v}}
	if n.Subnet.IsValid() {
		es = append(es, entry{mapSubnets, subnetKey(n.Subnet), id})
	}
	if n.Subnet6.IsValid() {
		es = append(es, entry{mapSubnets, subnetKey(n.Subnet6), id})
	}
	if n.Gateway.Is4() {
		es = append(es, entry{mapLocalAddrs, be32(n.Gateway), one})
	}
	if n.SNATIP.Is4() {
		es = append(es, entry{mapLocalAddrs, be32(n.SNATIP), one})
	}
	if n.Gateway6.Is6() {
		es = append(es, entry{mapLocalAddrs6, addr6(n.Gateway6), one})
	}
	return es
}

func addr6(a netip.Addr) bpfAddr6 {
	return bpfAddr6{A: a.As16()}
}

// epEntries: who the endpoint is (by veth, address and MAC).
func epEntries(e *model.REndpoint, ifindex, netID uint32) []entry {
	v := bpfEndpoint{Ip4: be32(e.IP), NetId: netID, Snat4: be32(e.SNATIP)}
	mk, hasMAC := macKey(e.MAC)
	if hasMAC {
		v.Flags |= epHasMAC
		v.Mac = mk.Mac
	}
	if e.IP6.IsValid() {
		v.Flags |= epHasIP6
		v.Ip6 = e.IP6.As16()
	}
	ref := bpfEpRef{Ifindex: ifindex, NetId: netID, Snat4: v.Snat4}
	es := []entry{{mapEndpoints, ifindex, v}}
	if e.IP.IsValid() {
		es = append(es, entry{mapEpAddrs, addrKey(e.IP), ref})
	}
	if e.IP6.IsValid() {
		es = append(es, entry{mapEpAddrs, addrKey(e.IP6), ref})
	}
	if hasMAC {
		es = append(es, entry{mapEpMACs, mk, ifindex})
	}
	if e.SNATIP.Is4() {
		es = append(es, entry{mapLocalAddrs, be32(e.SNATIP), one})
	}
	return es
}

// portBlock is an aligned block of ports: first, and the number of leading
// port bits that are fixed.
type portBlock struct {
	first uint16
	bits  int
}

// portBlocks splits lo..hi into the fewest aligned power-of-two blocks, the
// form an LPM trie can hold: at most 30 blocks for any range, one for a
// single port.
func portBlocks(lo, hi uint16) []portBlock {
	var out []portBlock
	for cur := uint32(lo); cur <= uint32(hi); {
		size := uint32(1) << 16
		if cur != 0 {
			size = uint32(1) << bits.TrailingZeros32(cur)
		}
		for cur+size-1 > uint32(hi) {
			size >>= 1
		}
		out = append(out, portBlock{first: uint16(cur), bits: 16 - bits.TrailingZeros32(size)})
		cur += size
	}
	return out
}

// portEntries publishes a mapping: over IPv4 when it is a wildcard or on an
// IPv4 host address, over IPv6 when the endpoint has an IPv6 address and the
// mapping is a wildcard or on an IPv6 host address (model.RPort.Is4, Is6).
func portEntries(p *model.RPort, epIfindex uint32) []entry {
	var es []entry
	blocks := portBlocks(p.HostLo, p.HostHi)
	if p.Is4() && p.EP.IP.Is4() {
		t := bpfPortTarget{Addr: be32(p.EP.IP), PortLo: p.Lo, HostLo: p.HostLo, HostHi: p.HostHi, Ifindex: epIfindex}
		for _, b := range blocks {
			k := bpfPortKey{Prefixlen: uint32(64 + b.bits), Proto: p.Proto, Addr: be32(p.HostIP), Port: be16(b.first)}
			es = append(es, entry{mapPorts, k, t})
		}
	}
	if p.Is6() {
		t := bpfPort6Target{Addr: p.EP.IP6.As16(), PortLo: p.Lo, HostLo: p.HostLo, HostHi: p.HostHi, Ifindex: epIfindex}
		var host [16]byte
		if p.HostIP.IsValid() {
			host = p.HostIP.As16()
		}
		for _, b := range blocks {
			k := bpfPort6Key{Prefixlen: uint32(160 + b.bits), Proto: p.Proto, Addr: host, Port: be16(b.first)}
			es = append(es, entry{mapPorts6, k, t})
		}
	}
	return es
}

// linkEntries lets parent reach every exposed port of child. The entry
// with port and proto 0 marks the pair as linked: it allows nothing, and
// tells the datapath's drop reasons apart (a port the child does not
// expose, or no link at all).
func linkEntries(l *model.RLink, parent, child uint32) []entry {
	es := []entry{{mapLinks, bpfLinkKey{Parent: parent, Child: child}, one}}
	for _, pp := range l.Child.Exposed {
		k := bpfLinkKey{Parent: parent, Child: child, Port: pp.Port, Proto: pp.Proto}
		es = append(es, entry{mapLinks, k, one})
	}
	return es
}

// uplinkEntries: the masquerade addresses of an uplink, its first IPv4
// address and its first global IPv6 one (a link-local source would not be
// routed back), and its addresses (IPv4 and IPv6) as node addresses.
func uplinkEntries(ifindex uint32, addrs []netip.Addr) []entry {
	v := bpfUplink{}
	var es []entry
	has6 := false
	for _, a := range addrs {
		if a.Is6() && !a.Is4In6() {
			if !has6 && a.IsGlobalUnicast() {
				v.Addr6, has6 = a.As16(), true
			}
			es = append(es, entry{mapLocalAddrs6, addr6(a), one})
			continue
		}
		if !a.Is4() {
			continue
		}
		if v.Addr4 == 0 {
			v.Addr4 = be32(a)
		}
		es = append(es, entry{mapLocalAddrs, be32(a), one})
	}
	return append([]entry{{mapUplinks, ifindex, v}}, es...)
}
