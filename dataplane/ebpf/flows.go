package ebpf

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/cilium/ebpf"

	"github.com/portcullis/portcullis/dataplane"
	"github.com/portcullis/portcullis/dataplane/model"
)

// The flow table as dataplane.FlowTable sees it: one Flow per flow, whatever
// the map holds it. pc_flows4 and pc_flows6 hold two halves per flow: the forward
// half is keyed by the tuple the first packet arrived with (Orig) and its
// partner, the reverse half, by the tuple replies arrive with (Reply).
// pc_track6 holds one entry per flow, keyed by its replies, untranslated.

// tuple is one direction of a flow, either family.
type tuple struct {
	proto    uint8
	src, dst netip.AddrPort
}

func (t tuple) reversed() tuple { return tuple{t.proto, t.dst, t.src} }

func tuple4(k bpfCtKey) tuple {
	ap := func(a uint32, p uint16) netip.AddrPort { return netip.AddrPortFrom(addrFromBE32(a), portFromBE16(p)) }
	return tuple{k.Proto, ap(k.Saddr, k.Sport), ap(k.Daddr, k.Dport)}
}

func tuple6(k bpfCt6Key) tuple {
	ap := func(a [16]byte, p uint16) netip.AddrPort {
		return netip.AddrPortFrom(netip.AddrFrom16(a), portFromBE16(p))
	}
	return tuple{k.Proto, ap(k.Saddr, k.Sport), ap(k.Daddr, k.Dport)}
}

// pairHalf is what flow listing needs of a half of pc_flows4 or pc_flows6.
type pairHalf struct {
	key, nat tuple
	reverse  bool
	state    uint8
	expires  uint64
}

func pairHalf4(h ctPair) pairHalf {
	return pairHalf{tuple4(h.k), tuple4(h.v.Nat), h.v.Flags&ctReverse != 0, h.v.State, h.v.Expires}
}

func pairHalf6(h nat6Half) pairHalf {
	return pairHalf{tuple6(h.k), tuple6(h.v.Nat), h.v.Flags&ctReverse != 0, h.v.State, h.v.Expires}
}

// pairFlows turns the halves of a pair table into flows, each with the
// index of a half that holds it (deletePairs removes its partner too).
// A forward half makes the flow; a reverse half only when its forward half
// is missing, which the datapath never leaves for long.
func pairFlows(halves []pairHalf, now uint64) ([]dataplane.Flow, []int) {
	byKey := make(map[tuple]int, len(halves))
	for i, h := range halves {
		byKey[h.key] = i
	}
	var (
		flows []dataplane.Flow
		index []int
	)
	for i, h := range halves {
		fwd, rev := h, pairHalf{}
		if j, ok := byKey[h.nat.reversed()]; ok {
			rev = halves[j]
		}
		if h.reverse {
			if j, ok := byKey[h.nat.reversed()]; ok && !halves[j].reverse {
				continue // listed with its forward half
			}
			// Orphan: the forward half is the reverse of where the reply
			// is translated back to.
			fwd = pairHalf{key: h.nat.reversed(), nat: h.key.reversed(), state: h.state, expires: h.expires}
		}
		fl := dataplane.Flow{
			Proto:   protoName(fwd.key.proto),
			Orig:    [2]netip.AddrPort{fwd.key.src, fwd.key.dst},
			Reply:   [2]netip.AddrPort{fwd.nat.dst, fwd.nat.src},
			State:   stateName(fwd.key.proto, fwd.state),
			Expires: remaining(max(fwd.expires, rev.expires), now),
		}
		if fwd.nat.src != fwd.key.src {
			fl.NAT = append(fl.NAT, "snat")
		}
		if fwd.nat.dst != fwd.key.dst {
			fl.NAT = append(fl.NAT, "dnat")
		}
		flows = append(flows, fl)
		index = append(index, i)
	}
	return flows, index
}

// ct6Flow is a pc_track6 entry as a flow: opened by a container (or a link's
// parent), replies as the key says, never translated.
func ct6Flow(k bpfCt6Key, v bpfTrack6Entry, now uint64) dataplane.Flow {
	reply := tuple6(k)
	orig := reply.reversed()
	return dataplane.Flow{
		Proto:   protoName(k.Proto),
		Orig:    [2]netip.AddrPort{orig.src, orig.dst},
		Reply:   [2]netip.AddrPort{reply.src, reply.dst},
		State:   stateName(k.Proto, v.State),
		Expires: remaining(v.Expires, now),
	}
}

func remaining(deadline, now uint64) time.Duration {
	if deadline <= now {
		return 0 // expired, waiting for the garbage collector
	}
	return time.Duration(deadline - now)
}

func protoName(p uint8) string {
	if p == 58 {
		return "icmpv6"
	}
	return model.ProtoName(p)
}

// stateName names a TCP flow's state as conntrack does (CT_S_* bits are
// coarser: a FIN each way is time_wait whoever closed first). Other
// protocols have none.
func stateName(proto, s uint8) string {
	if proto != model.ProtoTCP {
		return ""
	}
	switch {
	case s&ctRST != 0:
		return "close"
	case s&ctFinFwd != 0 && s&ctFinRev != 0:
		return "time_wait"
	case s&ctFinFwd != 0:
		return "fin_wait"
	case s&ctFinRev != 0:
		return "close_wait"
	case s&ctReplied != 0:
		return "established"
	}
	return "syn_sent"
}

// stateMaps duplicates the handles of the named maps under the lock, so a
// long dump neither holds up Apply nor races with Close. nil without a
// loaded datapath.
func (b *Backend) stateMaps(names ...string) (map[string]*ebpf.Map, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.dp == nil {
		return nil, nil
	}
	out := map[string]*ebpf.Map{}
	for _, n := range names {
		m, err := b.dp.maps[n].Clone()
		if err != nil {
			closeMaps(out)
			return nil, fmt.Errorf("duplicate %s: %w", n, err)
		}
		out[n] = m
	}
	return out, nil
}

func closeMaps(ms map[string]*ebpf.Map) {
	for _, m := range ms {
		m.Close()
	}
}

// Flows implements dataplane.FlowTable: every IPv4 flow (pc_flows4), IPv6
// published-port flow (pc_flows6) and other IPv6 flow (pc_track6) that f
// selects.
func (b *Backend) Flows(ctx context.Context, f dataplane.FlowFilter) ([]dataplane.Flow, error) {
	return listFlows(f, func(visit func(dataplane.Flow) bool) (int, error) { return b.walkFlows(ctx, visit) })
}

// listFlows collects the flows that walk visits and f selects, deleting
// none.
func listFlows(f dataplane.FlowFilter, walk func(visit func(dataplane.Flow) bool) (int, error)) ([]dataplane.Flow, error) {
	var out []dataplane.Flow
	_, err := walk(func(fl dataplane.Flow) bool {
		if f.Match(fl) {
			out = append(out, fl)
		}
		return false
	})
	if err != nil {
		return nil, fmt.Errorf("list flows: %w", err)
	}
	return out, nil
}

// FlushFlows implements dataplane.FlowTable: it deletes the flows that f
// selects (both halves of a pair) and returns how many. The next packet of
// a flushed flow is judged afresh: policy, current mappings, a new source
// port.
func (b *Backend) FlushFlows(ctx context.Context, f dataplane.FlowFilter) (int, error) {
	n, err := b.walkFlows(ctx, f.Match)
	if err != nil {
		return n, fmt.Errorf("flush flows: %w", err)
	}
	return n, nil
}

// walkFlows calls visit with every flow of the loaded datapath and deletes
// those it returns true for; it returns how many were deleted.
func (b *Backend) walkFlows(ctx context.Context, visit func(dataplane.Flow) bool) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	ms, err := b.stateMaps(mapFlows4, mapFlows6, mapTrack6)
	if err != nil || ms == nil {
		return 0, err
	}
	defer closeMaps(ms)
	return walkFlowMaps(ms, visit)
}

// walkFlowMaps calls visit with every flow of the flow tables ms (pc_flows4,
// pc_flows6 and pc_track6 by name) and deletes those it returns true for; it
// returns how many were deleted. A visit that never returns true makes no
// change, so the maps may be read-only (Pinned).
func walkFlowMaps(ms map[string]*ebpf.Map, visit func(dataplane.Flow) bool) (int, error) {
	now := monotonicNow()
	deleted := 0

	n, err := walkPairs(ctTable(ms[mapFlows4]), pairHalf4, now, visit)
	if err != nil {
		return 0, err
	}
	deleted += n
	n, err = walkPairs(nat6Table(ms[mapFlows6]), pairHalf6, now, visit)
	if err != nil {
		return deleted, err
	}
	deleted += n

	_, n, err = prune(ms[mapTrack6], func(k bpfCt6Key, v bpfTrack6Entry) bool { return visit(ct6Flow(k, v, now)) })
	return deleted + n, err
}

// walkPairs calls visit with every flow of a pair table (pc_flows4 or pc_flows6,
// its halves seen through view) and deletes the pairs of those it returns
// true for; it returns how many flows it deleted.
func walkPairs[K comparable, V any](t pairTable[K, V], view func(half[K, V]) pairHalf, now uint64,
	visit func(dataplane.Flow) bool) (int, error) {
	all, err := readHalves[K, V](t.m)
	if err != nil {
		return 0, err
	}
	halves := make([]pairHalf, len(all))
	for i, h := range all {
		halves[i] = view(h)
	}
	var dead []half[K, V]
	flows, idx := pairFlows(halves, now)
	for i, fl := range flows {
		if visit(fl) {
			dead = append(dead, all[idx[i]])
		}
	}
	if _, err := t.deletePairs(dead); err != nil {
		return 0, err
	}
	return len(dead), nil
}
