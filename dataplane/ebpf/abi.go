package ebpf

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// Values shared with the C side (bpf/lib/common.h, bpf/lib/maps.h). The
// generated types carry the layouts; these are the constants bpf2go does
// not export.

// Config flags (PC_CFG_*).
const (
	cfgFIBLocal   = 1 << 0
	cfgFastPath   = 1 << 1
	cfgCsumDirect = 1 << 2
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
	netICC      = 1 << 0
	netMasq     = 1 << 1
	netInternal = 1 << 2
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
// their number, for counters, events and logs. Where a reason means what
// one of the nftables backend's does, it has its name ("icc", "inbound"), or
// that name as a prefix when the eBPF datapath tells finer cases apart
// ("spoof-mac", "spoof-ip", "spoof-arp" are nftables' "spoof";
// "icc-link-port" is an "icc" drop between linked endpoints). The list,
// with what each means, is in bpf/README.md.
var DropReasons = map[uint32]string{
	1:  "malformed",
	2:  "vlan",
	3:  "non-ip",
	4:  "no-endpoint",
	5:  "spoof-mac",
	6:  "spoof-ip",
	7:  "spoof-arp",
	8:  "icc",
	9:  "icc-link-port",
	10: "isolation",
	11: "fragment",
	12: "nat-ports-exhausted",
	13: "conntrack-full",
	14: "inbound",
	15: "no-snat-address",
	16: "rewrite-failed",
	17: "nat-conflict",
	18: "spoof-nd",
	19: "spoof-router",
}

// dropReasonName names reason, numbered when the datapath is newer than
// this table.
func dropReasonName(reason uint32) string {
	if name, ok := DropReasons[reason]; ok {
		return name
	}
	return fmt.Sprintf("reason-%d", reason)
}

// Tracing (lib/trace.h): pc_trace_cfg flags (PC_TRACE_*) and event types
// (enum pc_event_type).
const (
	traceDrops = 1 << 0
	traceNAT   = 1 << 1

	eventDrop = 1
	eventNAT  = 2
)

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
