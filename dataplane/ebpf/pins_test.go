package ebpf

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// privateBPFFS mounts a bpffs instance of the test's own in a temporary
// directory: whatever the test pins goes away with the unmount.
func privateBPFFS(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := unix.Mount("bpf", dir, "bpf", 0, ""); err != nil {
		t.Skipf("cannot mount a bpffs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	return dir
}

// TestPinnedMapResize: a size changed between two loads (an upgrade, a new
// Config) replaces the pinned map with one of the new size, entries copied,
// instead of failing the load.
func TestPinnedMapResize(t *testing.T) {
	requireBPF(t)
	pins := filepath.Join(privateBPFFS(t), "maps")
	if err := os.MkdirAll(pins, 0o700); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig()
	cfg.Maps = MapSizes{CT: 64, Ports: 16}
	d, err := loadDatapath(cfg, loadOptions{mapPinDir: pins})
	if err != nil {
		t.Fatal(err)
	}
	for i := uint16(0); i < 10; i++ {
		k := bpfPortKey{Prefixlen: 80, Proto: 6, Port: be16(1000 + i)}
		if err := d.maps[mapPorts].Put(k, bpfPortTarget{Addr: be32(ipA), PortLo: i}); err != nil {
			t.Fatal(err)
		}
		if err := d.maps[mapCT].Put(ctKey(ipA, 1000+i, ipExt, 80, 6), bpfCtEntry{Ifindex: uint32(i)}); err != nil {
			t.Fatal(err)
		}
	}
	ncpu, _ := ebpf.PossibleCPU()
	per := make([]uint64, ncpu)
	per[0] = 7
	if err := d.maps[mapDrops].Put(bpfDropKey{Reason: 6, Ifindex: 3}, per); err != nil {
		t.Fatal(err)
	}
	d.Close()

	// Ports grows; CT shrinks below what it holds.
	cfg.Maps = MapSizes{CT: 4, Ports: 1024}
	d, err = loadDatapath(cfg, loadOptions{mapPinDir: pins})
	if err != nil {
		t.Fatalf("load over pins of other sizes: %v", err)
	}
	defer d.Close()
	if m := d.maps[mapPorts]; m.MaxEntries() != 1024 {
		t.Fatalf("pc_ports max entries %d, want 1024", m.MaxEntries())
	}
	if n, _ := countEntries(d.maps[mapPorts]); n != 10 {
		t.Fatalf("pc_ports holds %d entries after the resize, want 10", n)
	}
	var v bpfPortTarget
	if err := d.maps[mapPorts].Lookup(bpfPortKey{Prefixlen: 80, Proto: 6, Port: be16(1007)}, &v); err != nil || v.PortLo != 7 {
		t.Fatalf("copied entry: %+v, %v", v, err)
	}
	if n, _ := countEntries(d.maps[mapCT]); n != 4 || d.maps[mapCT].MaxEntries() != 4 {
		t.Fatalf("pc_ct holds %d of %d, want 4 of 4", n, d.maps[mapCT].MaxEntries())
	}
	drops, err := readDrops(d.maps[mapDrops])
	if err != nil || len(drops) != 1 || drops[0].packets != 7 {
		t.Fatalf("drop counters after the load: %+v, %v", drops, err)
	}
	// The pins are the maps the programs use.
	pinned, err := ebpf.LoadPinnedMap(filepath.Join(pins, mapPorts), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer pinned.Close()
	if pinned.MaxEntries() != 1024 {
		t.Fatalf("pinned pc_ports has %d max entries", pinned.MaxEntries())
	}
	if _, err := os.Stat(filepath.Join(pins, mapPorts+"-resized")); !os.IsNotExist(err) {
		t.Fatalf("temporary pin left: %v", err)
	}
}
