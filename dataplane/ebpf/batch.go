package ebpf

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
)

// batchSize is how many entries one batch system call reads or deletes.
// A hash map's batch must hold its fullest bucket, which a few thousand
// always do.
const batchSize = 4096

// readAll reads every entry of a hash map. It reads in batches
// (BPF_MAP_LOOKUP_BATCH, one system call per batchSize entries) and falls
// back to one key at a time (two system calls per entry) where the kernel
// has no batch operations for the map. The conntrack tables are read this
// way by the garbage collector, the flow listing and the flushes: at tens
// of thousands of entries the difference is tens of milliseconds of CPU
// per walk.
func readAll[K comparable, V any](m *ebpf.Map) ([]K, []V, error) {
	return readInto(m, nil, nil, &batchBufs[K, V]{})
}

// batchBufs are the buffers of batch reads, for a caller that keeps them
// from read to read.
type batchBufs[K, V any] struct {
	k []K
	v []V
}

// readInto is readAll into keys[:0] and vals[:0] (their memory reused),
// with b's batch buffers.
func readInto[K comparable, V any](m *ebpf.Map, keys []K, vals []V, b *batchBufs[K, V]) ([]K, []V, error) {
	if b.k == nil {
		b.k, b.v = make([]K, batchSize), make([]V, batchSize)
	}
	keys, vals = keys[:0], vals[:0]
	var cursor ebpf.MapBatchCursor
	for {
		n, err := m.BatchLookup(&cursor, b.k, b.v, nil)
		keys, vals = append(keys, b.k[:n]...), append(vals, b.v[:n]...)
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return keys, vals, nil
		}
		if errors.Is(err, ebpf.ErrNotSupported) && len(keys) == 0 {
			return iterateAll(m, keys, vals)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("read %s: %w", m, err)
		}
	}
}

// prune deletes the entries of a hash map that dead selects, reading and
// deleting in batches; it returns how many entries it read and deleted.
func prune[K comparable, V any](m *ebpf.Map, dead func(K, V) bool) (entries, deleted int, err error) {
	keys, vals, err := readAll[K, V](m)
	if err != nil {
		return 0, 0, err
	}
	var sel []K
	for i, k := range keys {
		if dead(k, vals[i]) {
			sel = append(sel, k)
		}
	}
	deleted, err = deleteKeys(m, sel)
	return len(keys), deleted, err
}

func iterateAll[K comparable, V any](m *ebpf.Map, keys []K, vals []V) ([]K, []V, error) {
	var (
		k K
		v V
	)
	it := m.Iterate()
	for it.Next(&k, &v) {
		keys, vals = append(keys, k), append(vals, v)
	}
	if err := it.Err(); err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", m, err)
	}
	return keys, vals, nil
}

// deleteKeys deletes keys from m, in batches where the kernel can, and
// returns how many it deleted. Keys already gone (the datapath or another
// walk deleted them meanwhile) are skipped, not errors.
func deleteKeys[K any](m *ebpf.Map, keys []K) (int, error) {
	deleted := 0
	for len(keys) > 0 {
		chunk := keys[:min(len(keys), batchSize)]
		n, err := m.BatchDelete(chunk, nil)
		deleted += n
		switch {
		case err == nil:
			keys = keys[len(chunk):]
		case errors.Is(err, ebpf.ErrKeyNotExist):
			keys = keys[n+1:] // the batch stops at the missing key
		case errors.Is(err, ebpf.ErrNotSupported) && deleted == 0:
			return deleteEach(m, keys)
		default:
			return deleted, fmt.Errorf("delete from %s: %w", m, err)
		}
	}
	return deleted, nil
}

func deleteEach[K any](m *ebpf.Map, keys []K) (int, error) {
	deleted := 0
	var errs []error
	for _, k := range keys {
		err := m.Delete(k)
		if err == nil {
			deleted++
		} else if !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, err)
		}
	}
	return deleted, errors.Join(errs...)
}
