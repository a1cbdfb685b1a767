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
	Kind    string         `json:"kind"` // snat, dnat, hairpin, routed, link, ipv6
	Reverse bool           `json:"reverse"`
	State   []string       `json:"state,omitempty"`
	Expires time.Duration  `json:"expires_in"`
}

// Flows lists the conntrack entries: both halves of every IPv4 flow and of
// every IPv6 published-port flow, and the other IPv6 flows (one entry each,
// keyed by their replies).
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
		case p.v.Flags&ctLink != 0:
			f.Kind = "link"
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
	ap6 := func(a [16]byte, p uint16) netip.AddrPort {
		return netip.AddrPortFrom(netip.AddrFrom16(a), portFromBE16(p))
	}
	halves, err := readNAT6(b.dp.maps[mapNAT6])
	if err != nil {
		return nil, err
	}
	for _, h := range halves {
		out = append(out, Flow{
			Proto:   h.k.Proto,
			Src:     ap6(h.k.Saddr, h.k.Sport),
			Dst:     ap6(h.k.Daddr, h.k.Dport),
			NATSrc:  ap6(h.v.Nat.Saddr, h.v.Nat.Sport),
			NATDst:  ap6(h.v.Nat.Daddr, h.v.Nat.Dport),
			Kind:    "dnat",
			Reverse: h.v.Flags&ctReverse != 0,
			State:   stateNames(h.v.State),
			Expires: time.Duration(int64(h.v.Expires - now)),
		})
	}
	var (
		k endpointCt6Key
		v endpointCt6Entry
	)
	it := b.dp.maps[mapCT6].Iterate()
	for it.Next(&k, &v) {
		kind := "ipv6"
		if v.Flags&ct6Link != 0 {
			kind = "link"
		}
		out = append(out, Flow{
			Proto:   k.Proto,
			Src:     ap6(k.Saddr, k.Sport),
			Dst:     ap6(k.Daddr, k.Dport),
			Kind:    kind,
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
