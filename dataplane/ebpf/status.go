package ebpf

import (
	"errors"
	"sort"

	"github.com/cilium/ebpf"
)

// Status implements dataplane.Backend: attach mode, attachments, map fill
// levels, drop and event counters, and the last garbage collection.
func (b *Backend) Status() map[string]any {
	b.mu.Lock()
	defer b.mu.Unlock()
	st := map[string]any{
		"backend": "ebpf",
		"pin_dir": b.opts.PinDir,
		"loaded":  b.dp != nil,
	}
	if b.dp == nil {
		return st
	}
	st["attach_mode"] = string(b.mode)
	st["attach_mode_reason"] = b.modeWhy
	var atts []string
	for _, a := range b.attached {
		atts = append(atts, a.String())
	}
	sort.Strings(atts)
	st["attachments"] = atts
	maps := map[string]any{}
	for name, m := range b.dp.maps {
		fill := map[string]any{"max_entries": m.MaxEntries()}
		if n, err := countEntries(m); err == nil {
			fill["entries"] = n
		}
		maps[name] = fill
	}
	st["maps"] = maps
	if drops, err := readDrops(b.dp.maps[mapDrops]); err == nil {
		st["drops"] = drops
	}
	if ev, err := readStats(b.dp.maps[mapStats]); err == nil {
		st["events"] = ev
	}
	if b.gc != nil {
		st["gc"] = b.gc.result()
	}
	return st
}

// Drops returns the drop counters (for /v1/drops).
func (b *Backend) Drops() ([]DropCount, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.dp == nil {
		return nil, nil
	}
	return readDrops(b.dp.maps[mapDrops])
}

// countEntries walks the keys. Arrays are always full.
func countEntries(m *ebpf.Map) (int, error) {
	switch m.Type() {
	case ebpf.Array, ebpf.PerCPUArray:
		return int(m.MaxEntries()), nil
	}
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
