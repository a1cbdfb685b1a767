package ebpf

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/cilium/ebpf"

	"github.com/portcullis/portcullis/dataplane"
)

// dropCount is one pc_drops counter, summed over the CPUs.
type dropCount struct {
	reason  string
	ifindex uint32
	packets uint64
}

func readDrops(m *ebpf.Map) ([]dropCount, error) {
	var (
		k   bpfDropKey
		vs  []uint64
		out []dropCount
	)
	it := m.Iterate()
	for it.Next(&k, &vs) {
		var sum uint64
		for _, v := range vs {
			sum += v
		}
		out = append(out, dropCount{reason: dropReasonName(k.Reason), ifindex: k.Ifindex, packets: sum})
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read drop counters: %w", err)
	}
	return out, nil
}

// Drops implements dataplane.DropCounter: the datapath's drop counters by
// reason and endpoint. A drop on an endpoint's host veth is the endpoint's;
// drops on uplinks, and on interfaces of endpoints that are gone, are
// summed per reason with no endpoint. The counters are per-CPU and never
// reset; bytes are not counted.
func (b *Backend) Drops(ctx context.Context) ([]dataplane.Drop, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.dp == nil {
		return nil, nil
	}
	counts, err := readDrops(b.dp.maps[mapDrops])
	if err != nil {
		return nil, err
	}
	return sumDrops(counts, func(ifindex uint32) string { return b.epIDs[ifindex] }), nil
}

// sumDrops sums the counters by reason and endpoint, endpoint naming the
// endpoint of a host veth ("" for an uplink or an interface no endpoint
// has), sorted by reason, then endpoint.
func sumDrops(counts []dropCount, endpoint func(ifindex uint32) string) []dataplane.Drop {
	type key struct{ reason, ep string }
	sums := map[key]uint64{}
	for _, c := range counts {
		sums[key{c.reason, endpoint(c.ifindex)}] += c.packets
	}
	out := make([]dataplane.Drop, 0, len(sums))
	for k, n := range sums {
		out = append(out, dataplane.Drop{Reason: k.reason, Endpoint: k.ep, Packets: n})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Reason != out[j].Reason {
			return out[i].Reason < out[j].Reason
		}
		return out[i].Endpoint < out[j].Endpoint
	})
	return out
}

// Fill implements dataplane.FillReporter: entries and max entries of every
// hash, LRU and LPM map, by map name; arrays (always full) and the event
// ring buffer are left out. The configuration maps' counts come from the
// applied state, the conntrack tables' from the last garbage collection
// (they walk them anyway); the rest are walked, one system call per key,
// without holding up Apply.
func (b *Backend) Fill() []dataplane.TableFill {
	b.mu.Lock()
	if b.dp == nil {
		b.mu.Unlock()
		return nil
	}
	known := map[string]int{}
	if b.st != nil {
		for _, name := range configMaps {
			known[name] = b.st.entries[name]
		}
	}
	if b.gc != nil {
		for name, n := range b.gc.entries() {
			known[name] = n
		}
	}
	maps := map[string]*ebpf.Map{}
	for name, m := range b.dp.maps {
		if !hasFill(m) {
			continue
		}
		if c, err := m.Clone(); err == nil {
			maps[name] = c
		}
	}
	b.mu.Unlock()
	defer closeMaps(maps)
	return fillOf(maps, known)
}

// hasFill reports whether Fill reports m: arrays are always full, and the
// ring buffer has no entries.
func hasFill(m *ebpf.Map) bool {
	switch m.Type() {
	case ebpf.Array, ebpf.PerCPUArray, ebpf.RingBuf:
		return false
	}
	return true
}

// fillOf returns the fill level of every map of maps, sorted by name: the
// count in known when it has one, else the count of a walk over its keys.
// A map that cannot be walked is left out.
func fillOf(maps map[string]*ebpf.Map, known map[string]int) []dataplane.TableFill {
	out := make([]dataplane.TableFill, 0, len(maps))
	for name, m := range maps {
		n, ok := known[name]
		if !ok {
			var err error
			if n, err = countEntries(m); err != nil {
				continue
			}
		}
		out = append(out, dataplane.TableFill{Name: name, Entries: n, Max: int(m.MaxEntries())})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// countEntries walks the keys.
func countEntries(m *ebpf.Map) (int, error) {
	var prev any
	key := make([]byte, m.KeySize())
	n := 0
	for n <= int(m.MaxEntries()) {
		if err := m.NextKey(prev, key); err != nil {
			if errors.Is(err, ebpf.ErrKeyNotExist) {
				return n, nil
			}
			return n, err
		}
		n++
		prev = append([]byte(nil), key...)
	}
	return n, nil
}

func readStats(m *ebpf.Map) (map[string]uint64, error) {
	out := map[string]uint64{}
	for i, name := range statNames() {
		var vs []uint64
		if err := m.Lookup(uint32(i), &vs); err != nil {
			return nil, fmt.Errorf("read stat %s: %w", name, err)
		}
		var sum uint64
		for _, v := range vs {
			sum += v
		}
		out[name] = sum
	}
	return out, nil
}
