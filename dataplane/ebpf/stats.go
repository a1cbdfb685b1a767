package ebpf

import (
	"fmt"

	"github.com/cilium/ebpf"
)

// DropCount is one drop counter: packets dropped for a reason on an
// interface, summed over the CPUs.
type DropCount struct {
	Reason  string `json:"reason"`
	Ifindex uint32 `json:"ifindex"`
	Packets uint64 `json:"packets"`
}

func readDrops(m *ebpf.Map) ([]DropCount, error) {
	var (
		k   endpointDropKey
		vs  []uint64
		out []DropCount
	)
	it := m.Iterate()
	for it.Next(&k, &vs) {
		var sum uint64
		for _, v := range vs {
			sum += v
		}
		name, ok := DropReasons[k.Reason]
		if !ok {
			name = fmt.Sprintf("reason-%d", k.Reason)
		}
		out = append(out, DropCount{Reason: name, Ifindex: k.Ifindex, Packets: sum})
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read drop counters: %w", err)
	}
	return out, nil
}

func readStats(m *ebpf.Map) (map[string]uint64, error) {
	out := map[string]uint64{}
	for i, name := range statNames {
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
