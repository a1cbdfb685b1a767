package ebpf

import (
	"encoding/binary"
	"net/netip"
)

// Values shared with the C side (bpf/lib/common.h, bpf/lib/maps.h). The
// generated types carry the layouts; these are the constants bpf2go does
// not export.

// Config flags (PC_CFG_*).
const (
	cfgFIBLocal = 1 << 0
	cfgFastPath = 1 << 1
)

// Address families as the maps store them.
const (
	afInet  = 2
	afInet6 = 10
)

// endpoint.flags (EP_F_*).
const (
	epHasMAC = 1 << 0
	epHasIP6 = 1 << 1
)

// network.flags (NET_F_*).
const (
	netICC  = 1 << 0
	netMasq = 1 << 1
)

// ct_entry.flags (CT_F_*), hooks (HOOK_*) and state (CT_S_*).
const (
	ctReverse = 1 << 0
	ctSNAT    = 1 << 1
	ctDNAT    = 1 << 2
	ctHairpin = 1 << 3
	ctLink    = 1 << 4

	hookEndpointIngress = 1 << 0
	hookUplinkIngress   = 1 << 1
	hookUplinkEgress    = 1 << 2

	ctReplied = 1 << 0
	ctFinFwd  = 1 << 1
	ctFinRev  = 1 << 2
	ctRST     = 1 << 3
)

// ct6_entry.flags (CT6_F_*).
const ct6Link = 1 << 0

// DropReasons names the datapath's drop reasons (enum pc_drop_reason) by
// their number, for counters and logs.
var DropReasons = map[uint32]string{
	1:  "malformed",
	2:  "vlan",
	3:  "non-ip",
	4:  "no-endpoint",
	5:  "spoofed-mac",
	6:  "spoofed-ip",
	7:  "spoofed-arp",
	8:  "icc",
	9:  "link-port",
	10: "network-isolation",
	11: "unknown-fragment",
	12: "nat-ports-exhausted",
	13: "conntrack-full",
	14: "unsolicited",
	15: "no-snat-address",
	16: "rewrite-failed",
	17: "nat-conflict",
}

// Event counters (enum pc_stat), index of pc_stats.
var statNames = []string{"ct_created", "nat_port_retries", "ct_reclaimed", "icmp_errors_translated", "fast_path"}

// be32 returns the uint32 whose in-memory (host order) bytes are a's bytes
// in network order: what a __be32 field holds.
func be32(a netip.Addr) uint32 {
	if !a.IsValid() || !a.Is4() {
		return 0
	}
	b := a.As4()
	return binary.NativeEndian.Uint32(b[:])
}

// addrFromBE32 undoes be32.
func addrFromBE32(v uint32) netip.Addr {
	var b [4]byte
	binary.NativeEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}

// be16 returns the uint16 that holds port in network order (a __be16).
func be16(port uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], port)
	return binary.NativeEndian.Uint16(b[:])
}

// portFromBE16 undoes be16.
func portFromBE16(v uint16) uint16 {
	var b [2]byte
	binary.NativeEndian.PutUint16(b[:], v)
	return binary.BigEndian.Uint16(b[:])
}
