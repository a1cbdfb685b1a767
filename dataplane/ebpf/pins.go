package ebpf

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/cilium/ebpf"
)

// migratePins replaces the pinned maps that no longer match their spec (a
// size changed in Config, flags or a layout changed in an upgrade), so the
// load that follows reuses them instead of failing with ErrMapIncompatible.
//
// When only the size or the flags differ the entries are copied, as many as
// the new map holds; with another layout the new map starts empty. Either
// way nothing is lost that matters for long: the full Apply that follows
// every load rewrites the configuration maps, and state maps lose at most
// the flows that do not fit. The new map is pinned under a temporary name
// and renamed over the old pin, so the path always names a map. Programs
// still attached use the old map until that Apply swaps them: flows they
// open in between are not carried over.
func migratePins(spec *ebpf.CollectionSpec, dir string, log *slog.Logger) error {
	log = logOrDiscard(log)
	for name, ms := range spec.Maps {
		if strings.HasPrefix(name, ".") {
			continue
		}
		path := filepath.Join(dir, name)
		old, err := ebpf.LoadPinnedMap(path, nil)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("open pinned map %s: %w", path, err)
		}
		why := ms.Compatible(old)
		if why == nil {
			old.Close()
			continue
		}
		copied, lost, err := replacePin(ms, old, path)
		old.Close()
		if err != nil {
			return fmt.Errorf("replace pinned map %s (%v): %w", name, why, err)
		}
		log.Info("ebpf: pinned map replaced", "map", name, "why", why.Error(),
			"max_entries", ms.MaxEntries, "copied", copied, "lost", lost)
	}
	return nil
}

// logOrDiscard is log, or a logger that writes nowhere when it is nil.
func logOrDiscard(log *slog.Logger) *slog.Logger {
	if log == nil {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return log
}

// replacePin creates a map from ms, copies old's entries into it when the
// layouts agree, and pins it at path in old's place.
func replacePin(ms *ebpf.MapSpec, old *ebpf.Map, path string) (copied, lost int, err error) {
	cp := ms.Copy()
	cp.Pinning = ebpf.PinNone
	nm, err := ebpf.NewMap(cp)
	if err != nil {
		return 0, 0, err
	}
	defer nm.Close()
	if old.Type() == nm.Type() && old.KeySize() == nm.KeySize() && old.ValueSize() == nm.ValueSize() {
		copied, lost, err = copyEntries(old, nm)
		if err != nil {
			return copied, lost, err
		}
	}
	tmp := path + "-resized" // bpffs refuses names with a dot
	os.Remove(tmp)           // left by a crash half-way
	if err := nm.Pin(tmp); err != nil {
		return copied, lost, fmt.Errorf("pin: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return copied, lost, fmt.Errorf("rename: %w", err)
	}
	return copied, lost, nil
}

// copyEntries copies every entry of from into to; entries that do not fit
// count as lost. Ring buffers have no entries; per-CPU maps are copied when
// their values are 8-byte counters (the only kind there is).
func copyEntries(from, to *ebpf.Map) (copied, lost int, err error) {
	if from.Type() == ebpf.RingBuf {
		return 0, 0, nil
	}
	perCPU := from.Type() == ebpf.PerCPUHash || from.Type() == ebpf.PerCPUArray || from.Type() == ebpf.LRUCPUHash
	var (
		key  = make([]byte, from.KeySize())
		prev any // nil: the first key
	)
	for i := uint32(0); i <= from.MaxEntries(); i++ {
		if err := from.NextKey(prev, key); err != nil {
			if errors.Is(err, ebpf.ErrKeyNotExist) {
				return copied, lost, nil
			}
			return copied, lost, fmt.Errorf("iterate: %w", err)
		}
		prev = append([]byte(nil), key...)
		var val any
		switch {
		case perCPU && from.ValueSize() == 8:
			var vs []uint64
			if err := from.Lookup(key, &vs); err != nil {
				lost++
				continue
			}
			val = vs
		case perCPU:
			lost++
			continue
		default:
			v, err := from.LookupBytes(key)
			if err != nil || v == nil {
				lost++ // deleted meanwhile
				continue
			}
			val = v
		}
		if err := to.Update(key, val, ebpf.UpdateAny); err != nil {
			lost++
			continue
		}
		copied++
	}
	return copied, lost, nil
}

// renamedPins are maps an older agent pinned under other names (before
// the pair tables of both families were named alike): an upgrade renames
// their pins before the load, which then reuses them, entries and all, so
// established flows keep going. The programs still attached go on using
// the same maps meanwhile: a pin's name is not the map.
var renamedPins = []struct{ old, new string }{
	{"pc_ct", mapFlows4},
	{"pc_nat6", mapFlows6},
	{"pc_ct6", mapTrack6},
}

// retiredPins are maps no program has any more: a work space
// (pc_pair_scratch replaced it), nothing in it to keep.
var retiredPins = []string{"pc_nat6_scratch"}

// renamePins gives the pins in dir of an older agent's maps their new
// names (renamedPins) and removes the retired ones. A pin of the old name
// is what the agent before this one used, so it replaces one of the new
// name beside it (left by a newer agent, downgraded since). Safe to run
// again after a crash: a rename is atomic, and what is done is not redone.
func renamePins(dir string, log *slog.Logger) error {
	for _, r := range renamedPins {
		from, to := filepath.Join(dir, r.old), filepath.Join(dir, r.new)
		if _, err := os.Stat(from); errors.Is(err, os.ErrNotExist) {
			continue
		} else if err != nil {
			return fmt.Errorf("pinned map %s: %w", from, err)
		}
		if err := os.Rename(from, to); err != nil {
			return fmt.Errorf("rename pinned map %s to %s: %w", from, r.new, err)
		}
		log.Info("ebpf: pinned map renamed", "from", r.old, "to", r.new)
	}
	for _, name := range retiredPins {
		path := filepath.Join(dir, name)
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove retired pinned map %s: %w", path, err)
		}
	}
	return nil
}

// pinName is the name a map pinned as name has now (renamedPins).
func pinName(name string) string {
	for _, r := range renamedPins {
		if r.old == name {
			return r.new
		}
	}
	return name
}
