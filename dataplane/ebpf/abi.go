package ebpf

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
	"sync"

	"github.com/cilium/ebpf/btf"
)

// Values shared with the C side. The layouts are the generated types; the
// flags, codes and names are the generated constants of the C enums
// (bpf/lib/abi.h, gen.go), so each is declared once, in C.

// Config flags (enum pc_cfg_flag).
const (
	cfgFIBLocal   = uint32(bpfPcCfgFlagPC_CFG_FIB_LOCAL)
	cfgFastPath   = uint32(bpfPcCfgFlagPC_CFG_FAST_PATH)
	cfgCsumDirect = uint32(bpfPcCfgFlagPC_CFG_CSUM_DIRECT)
)

// Address families as the maps store them.
const (
	afInet  = 2
	afInet6 = 10
)

// endpoint.flags (enum ep_flag).
const (
	epHasMAC = uint16(bpfEpFlagEP_F_HAS_MAC)
	epHasIP6 = uint16(bpfEpFlagEP_F_HAS_IP6)
)

// network.flags (enum net_flag).
const (
	netICC      = uint32(bpfNetFlagNET_F_ICC)
	netMasq     = uint32(bpfNetFlagNET_F_MASQ)
	netInternal = uint32(bpfNetFlagNET_F_INTERNAL)
)

// ct_entry.flags (enum ct_flag), hooks (enum ct_hook) and state (enum
// ct_state).
const (
	ctReverse = uint8(bpfCtFlagCT_F_REVERSE)
	ctSNAT    = uint8(bpfCtFlagCT_F_SNAT)
	ctDNAT    = uint8(bpfCtFlagCT_F_DNAT)
	ctHairpin = uint8(bpfCtFlagCT_F_HAIRPIN)
	ctLink    = uint8(bpfCtFlagCT_F_LINK)

	hookEndpointIngress = uint8(bpfCtHookHOOK_EP_INGRESS)
	hookUplinkIngress   = uint8(bpfCtHookHOOK_UPLINK_INGRESS)
	hookUplinkEgress    = uint8(bpfCtHookHOOK_UPLINK_EGRESS)

	ctReplied = uint8(bpfCtStateCT_S_REPLIED)
	ctFinFwd  = uint8(bpfCtStateCT_S_FIN_FWD)
	ctFinRev  = uint8(bpfCtStateCT_S_FIN_REV)
	ctRST     = uint8(bpfCtStateCT_S_RST)
)

// track6_entry.flags (enum track6_flag).
const track6Link = uint8(bpfTrack6FlagTRACK6F_LINK)

// Tracing (lib/trace.h): pc_trace_cfg flags (enum pc_trace_flag) and event
// types (enum pc_event_type).
const (
	traceDrops = uint32(bpfPcTraceFlagPC_TRACE_DROPS)
	traceNAT   = uint32(bpfPcTraceFlagPC_TRACE_NAT)

	eventDrop = uint8(bpfPcEventTypePC_EV_DROP)
	eventNAT  = uint8(bpfPcEventTypePC_EV_NAT)
)

// DropReasons names the datapath's drop reasons (enum pc_drop_reason) by
// their number, for counters, events and logs: PC_DROP_SPOOF_MAC is
// "spoof-mac". Where a reason means what one of the nftables backend's
// does, it has its name ("icc", "inbound"), or that name as a prefix when
// the eBPF datapath tells finer cases apart ("spoof-mac", "spoof-ip",
// "spoof-arp" are nftables' "spoof"; "icc-link-port" is an "icc" drop
// between linked endpoints). The list, with what each means, is in
// bpf/README.md.
func DropReasons() map[uint32]string {
	return abiNames().drops
}

// dropReasonName names reason, numbered when the datapath is newer than
// this table.
func dropReasonName(reason uint32) string {
	if name, ok := abiNames().drops[reason]; ok {
		return name
	}
	return fmt.Sprintf("reason-%d", reason)
}

// statNames are the event counters (enum pc_stat) by their index in
// pc_stats: PC_STAT_CT_CREATED is "ct_created".
func statNames() []string {
	return abiNames().stats
}

type enumNames struct {
	drops map[uint32]string
	stats []string
}

// abiNames reads the names of the drop reasons and counters from the
// enums in the endpoint object's BTF, once.
var abiNames = sync.OnceValue(func() enumNames {
	spec, err := btf.LoadSpecFromReader(bytes.NewReader(_BpfBytes))
	if err != nil {
		panic(fmt.Sprintf("the embedded endpoint object has no BTF: %v", err))
	}
	n := enumNames{drops: map[uint32]string{}}
	for _, v := range enumValues(spec, "pc_drop_reason", "PC_DROP_") {
		n.drops[uint32(v.Value)] = strings.ReplaceAll(v.Name, "_", "-")
	}
	vals := enumValues(spec, "pc_stat", "PC_STAT_")
	n.stats = make([]string, len(vals))
	for _, v := range vals {
		if v.Value >= uint64(len(vals)) {
			panic(fmt.Sprintf("enum pc_stat: %s is %d, want the counters numbered from 0 without gaps", v.Name, v.Value))
		}
		n.stats[v.Value] = v.Name
	}
	return n
})

// enumValues returns the values of the named enum, their names lower case
// without prefix, leaving out the _MAX bound.
func enumValues(spec *btf.Spec, name, prefix string) []btf.EnumValue {
	var e *btf.Enum
	if err := spec.TypeByName(name, &e); err != nil {
		panic(fmt.Sprintf("the embedded endpoint object has no enum %s: %v", name, err))
	}
	var out []btf.EnumValue
	for _, v := range e.Values {
		short := strings.ToLower(strings.TrimPrefix(v.Name, prefix))
		if short == "max" {
			continue
		}
		out = append(out, btf.EnumValue{Name: short, Value: v.Value})
	}
	return out
}

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
