package ebpf

import (
	"fmt"
	"sort"

	"github.com/portcullis/portcullis/dataplane"
)

// Compile-time checks of the optional interfaces.
var (
	_ dataplane.Backend      = (*Backend)(nil)
	_ dataplane.FlowTable    = (*Backend)(nil)
	_ dataplane.DropCounter  = (*Backend)(nil)
	_ dataplane.FillReporter = (*Backend)(nil)
)

// Status implements dataplane.Backend: attach mode, attachments, map fill
// levels and memory, event counters, and the last garbage collection.
// Drops are in /v1/drops (Drops).
func (b *Backend) Status() map[string]any {
	st, loaded := b.status()
	if !loaded {
		return st
	}
	maps := st["maps"].(map[string]any)
	for _, f := range b.Fill() {
		mm, _ := maps[f.Name].(map[string]any)
		if mm == nil {
			mm = map[string]any{}
			maps[f.Name] = mm
		}
		mm["entries"], mm["max_entries"] = f.Entries, f.Max
	}
	return st
}

// status is what Status reads under the lock: all but the fill levels.
func (b *Backend) status() (map[string]any, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	st := map[string]any{
		"backend": "ebpf",
		"pin_dir": b.opts.PinDir,
		"loaded":  b.dp != nil,
		// Where SNAT picks source ports, and the node's ephemeral ports it
		// keeps clear of.
		"snat_ports":  fmt.Sprintf("%d-%d", b.cfg.NATPortMin, b.cfg.NATPortMax),
		"local_ports": fmt.Sprintf("%d-%d", b.cfg.LocalPortMin, b.cfg.LocalPortMax),
	}
	if b.dp == nil {
		return st, false
	}
	st["attach_mode"] = string(b.mode)
	st["attach_mode_reason"] = b.modeWhy
	st["checksums"] = b.dp.checksums.mode()
	st["clock"] = b.dp.clock.mode()
	var atts []string
	for _, a := range b.attached {
		atts = append(atts, a.String())
	}
	sort.Strings(atts)
	st["attachments"] = atts
	maps := map[string]any{}
	var memlock uint64
	for name, m := range b.dp.maps {
		info, err := m.Info()
		if err != nil {
			continue
		}
		if n, ok := info.Memlock(); ok {
			memlock += n
			maps[name] = map[string]any{"memlock": n}
		}
	}
	st["maps"] = maps
	st["maps_memlock"] = memlock
	if ev, err := readStats(b.dp.maps[mapStats]); err == nil {
		st["events"] = ev
	}
	if b.gc != nil {
		st["gc"] = b.gc.result()
	}
	return st, true
}
