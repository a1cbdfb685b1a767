package ebpf

import (
	"net/netip"
	"time"
)

// Flow is one conntrack half, decoded for /v1/flows and the debug CLI.
type Flow struct {
	Proto   uint8          `json:"proto"`
	Src     netip.AddrPort `json:"src"`
	Dst     netip.AddrPort `json:"dst"`
	NATSrc  netip.AddrPort `json:"nat_src"`
	NATDst  netip.AddrPort `json:"nat_dst"`
	Kind    string         `json:"kind"` // snat, dnat, hairpin, routed, ipv6
	Reverse bool           `json:"reverse"`
	State   []string       `json:"state,omitempty"`
	Expires time.Duration  `json:"expires_in"`
}

// Flows lists the conntrack entries (both halves of every IPv4 flow, and
// the IPv6 flows).
func (b *Backend) Flows() ([]Flow, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.dp == nil {
		return nil, nil
	}
	now := monotonicNow()
	pairs, err := readCT(b.dp.maps[mapCT])
	if err != nil {
		return nil, err
	}
	ap := func(a uint32, p uint16) netip.AddrPort { return netip.AddrPortFrom(addrFromBE32(a), portFromBE16(p)) }
	var out []Flow
	for _, p := range pairs {
		f := Flow{
			Proto:   p.k.Proto,
			Src:     ap(p.k.Saddr, p.k.Sport),
			Dst:     ap(p.k.Daddr, p.k.Dport),
			NATSrc:  ap(p.v.Nat.Saddr, p.v.Nat.Sport),
			NATDst:  ap(p.v.Nat.Daddr, p.v.Nat.Dport),
			Reverse: p.v.Flags&ctReverse != 0,
			State:   stateNames(p.v.State),
			Expires: time.Duration(int64(p.v.Expires - now)),
		}
		switch {
		case p.v.Flags&ctHairpin != 0:
			f.Kind = "hairpin"
		case p.v.Flags&ctDNAT != 0:
			f.Kind = "dnat"
		case p.v.Nat == p.k || p.v.Nat == partner(endpointCtEntry{Nat: p.k}):
			f.Kind = "routed"
		default:
			f.Kind = "snat"
		}
		out = append(out, f)
	}
	var (
		k endpointCt6Key
		v endpointCt6Entry
	)
	it := b.dp.maps[mapCT6].Iterate()
	for it.Next(&k, &v) {
		out = append(out, Flow{
			Proto:   k.Proto,
			Src:     netip.AddrPortFrom(netip.AddrFrom16(k.Saddr), portFromBE16(k.Sport)),
			Dst:     netip.AddrPortFrom(netip.AddrFrom16(k.Daddr), portFromBE16(k.Dport)),
			Kind:    "ipv6",
			Reverse: true,
			State:   stateNames(v.State),
			Expires: time.Duration(int64(v.Expires - now)),
		})
	}
	return out, it.Err()
}

func stateNames(s uint8) []string {
	var out []string
	for _, n := range []struct {
		bit  uint8
		name string
	}{{ctReplied, "replied"}, {ctFinFwd, "fin-orig"}, {ctFinRev, "fin-reply"}, {ctRST, "rst"}} {
		if s&n.bit != 0 {
			out = append(out, n.name)
		}
	}
	return out
}
