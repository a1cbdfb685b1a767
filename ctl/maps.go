package ctl

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
)

// mapDump is one pinned BPF map as pcctl maps shows it.
type mapDump struct {
	Name string `json:"name"`
	Type string `json:"type"`
	// Entries is nil for maps that hold records rather than keys (a ring
	// buffer): there is nothing to count.
	Entries    *int        `json:"entries"`
	MaxEntries uint32      `json:"max_entries"`
	KeySize    uint32      `json:"key_size"`
	ValueSize  uint32      `json:"value_size"`
	Dump       [][2]string `json:"dump,omitempty"` // hex key, hex value
	// ring: a ring buffer, whose records are written and consumed, with
	// no keys to walk or look up; its max_entries is its size in bytes.
	ring bool
}

// maps reads the pinned maps straight from bpffs: it works with the agent
// down, and never changes them.
func maps(fs *flag.FlagSet, c *cli) runFunc {
	bpffs := fs.String("bpffs", c.bpffs, "the agent's bpffs directory (default: pcctl -bpffs)")
	dump := fs.String("dump", "", "also print every entry of this map, as hex key and value")
	limit := fs.Int("limit", 1000, "at most this many entries per dumped map")
	return func(_ context.Context, args []string) error {
		if err := noArgs(args); err != nil {
			return err
		}
		out, err := readPinnedMaps(filepath.Join(*bpffs, "maps"), *dump, *limit)
		if err != nil {
			return err
		}
		return c.print(out, func(w io.Writer) {
			fmt.Fprintln(w, "NAME\tTYPE\tENTRIES\tMAX\tKEY\tVALUE")
			for _, m := range out {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%d\n", m.Name, m.Type, entries(m), maxEntries(m), m.KeySize, m.ValueSize)
				for _, kv := range m.Dump {
					fmt.Fprintf(w, "  %s\t=> %s\n", kv[0], kv[1])
				}
			}
		})
	}
}

// readPinnedMaps lists the maps pinned in dir, sorted by name, with the
// entries of the one named dump.
func readPinnedMaps(dir, dump string, limit int) ([]mapDump, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("no pinned maps in %s (is the eBPF backend in use? see pcctl status): %w", dir, err)
	}
	var out []mapDump
	var names []string
	for _, e := range ents {
		d, err := readPinnedMap(filepath.Join(dir, e.Name()), e.Name() == dump, limit)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
		names = append(names, e.Name())
	}
	if dump != "" && !slices.Contains(names, dump) {
		return nil, fmt.Errorf("-dump %q: no such map in %s; the maps: %s", dump, dir, strings.Join(names, ", "))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func entries(m mapDump) string {
	if m.Entries == nil {
		return "-"
	}
	return strconv.Itoa(*m.Entries)
}

// maxEntries is a ring buffer's size in bytes, as a size; other maps' count
// of entries.
func maxEntries(m mapDump) string {
	if m.ring {
		return humanSize(uint64(m.MaxEntries))
	}
	return strconv.FormatUint(uint64(m.MaxEntries), 10)
}

func readPinnedMap(path string, dump bool, limit int) (mapDump, error) {
	m, err := ebpf.LoadPinnedMap(path, &ebpf.LoadPinOptions{ReadOnly: true})
	if err != nil {
		return mapDump{}, fmt.Errorf("open pinned map %s: %w", path, err)
	}
	defer m.Close()
	d := mapDump{Name: filepath.Base(path), Type: m.Type().String(), MaxEntries: m.MaxEntries(),
		KeySize: m.KeySize(), ValueSize: m.ValueSize(), ring: m.Type() == ebpf.RingBuf || m.Type() == ebpf.UserRingbuf}
	if d.ring {
		if dump {
			return d, fmt.Errorf("-dump %s: %s is a ring buffer (%s): its records are read once, as they come, not stored under keys, so there is nothing to dump; "+
				"read them live with pcctl trace", d.Name, d.Name, d.Type)
		}
		return d, nil
	}
	// Walk the keys, then look each value up: per-CPU maps hold one value
	// per CPU, shown summed when they are 8-byte counters.
	key := make([]byte, m.KeySize())
	next := make([]byte, m.KeySize())
	var prev any
	n := 0
	for {
		if err := m.NextKey(prev, next); err != nil {
			if errors.Is(err, ebpf.ErrKeyNotExist) {
				break
			}
			return d, fmt.Errorf("iterate %s: %w", path, err)
		}
		copy(key, next)
		prev = key
		n++
		if dump && len(d.Dump) < limit {
			d.Dump = append(d.Dump, [2]string{hex.EncodeToString(key), lookupHex(m, key)})
		}
	}
	d.Entries = &n
	return d, nil
}

func lookupHex(m *ebpf.Map, key []byte) string {
	switch m.Type() {
	case ebpf.PerCPUHash, ebpf.PerCPUArray, ebpf.LRUCPUHash:
		if m.ValueSize() != 8 {
			return "(per-CPU values)"
		}
		var per []uint64
		if err := m.Lookup(key, &per); err != nil {
			return "(" + err.Error() + ")"
		}
		var sum uint64
		for _, v := range per {
			sum += v
		}
		b := binary.LittleEndian.AppendUint64(nil, sum)
		return hex.EncodeToString(b) + " (sum over CPUs)"
	}
	v, err := m.LookupBytes(key)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	return hex.EncodeToString(v)
}
