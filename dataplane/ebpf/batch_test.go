package ebpf

import (
	"testing"

	"github.com/cilium/ebpf"
)

// TestBatchReadAndDelete: readAll sees every entry across several batches,
// and deleteKeys deletes the keys present, skipping those already gone,
// wherever they fall in a batch.
func TestBatchReadAndDelete(t *testing.T) {
	requireBPF(t)
	const n = 2*batchSize + 123
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Hash, KeySize: 4, ValueSize: 8, MaxEntries: 4 * batchSize})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for i := uint32(0); i < n; i++ {
		if err := m.Put(i, uint64(i)*3); err != nil {
			t.Fatal(err)
		}
	}
	keys, vals, err := readAll[uint32, uint64](m)
	if err != nil || len(keys) != n {
		t.Fatalf("read %d of %d entries: %v", len(keys), n, err)
	}
	seen := map[uint32]bool{}
	for i, k := range keys {
		if vals[i] != uint64(k)*3 || seen[k] {
			t.Fatalf("entry %d: key %d value %d (seen before: %v)", i, k, vals[i], seen[k])
		}
		seen[k] = true
	}

	// Every third key is gone before the delete; keys past n never were.
	var del []uint32
	gone := 0
	for i := uint32(0); i < n+10; i++ {
		if i%3 == 0 && i < n {
			if err := m.Delete(i); err != nil {
				t.Fatal(err)
			}
			gone++
		}
		del = append(del, i)
	}
	got, err := deleteKeys(m, del)
	if err != nil || got != n-gone {
		t.Fatalf("deleted %d, want %d: %v", got, n-gone, err)
	}
	if left, err := countEntries(m); err != nil || left != 0 {
		t.Fatalf("%d entries left: %v", left, err)
	}
	// An empty map reads as empty.
	if keys, _, err := readAll[uint32, uint64](m); err != nil || len(keys) != 0 {
		t.Fatalf("empty map: %d keys, %v", len(keys), err)
	}
}
