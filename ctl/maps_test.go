package ctl

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

func TestMapsFromPins(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a bpffs")
	}
	dir := t.TempDir()
	if err := unix.Mount("bpf", dir, "bpf", 0, ""); err != nil {
		t.Skipf("cannot mount bpffs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	os.MkdirAll(filepath.Join(dir, "maps"), 0o700)
	hm, err := ebpf.NewMap(&ebpf.MapSpec{Name: "pc_test", Type: ebpf.Hash, KeySize: 4, ValueSize: 4, MaxEntries: 16})
	if err != nil {
		t.Fatal(err)
	}
	defer hm.Close()
	hm.Put(uint32(0x01020304), uint32(0xaabbccdd))
	pm, err := ebpf.NewMap(&ebpf.MapSpec{Name: "pc_cnt", Type: ebpf.PerCPUHash, KeySize: 4, ValueSize: 8, MaxEntries: 16})
	if err != nil {
		t.Fatal(err)
	}
	defer pm.Close()
	n, _ := ebpf.PossibleCPU()
	per := make([]uint64, n)
	for i := range per {
		per[i] = 2
	}
	pm.Put(uint32(7), per)
	if err := hm.Pin(filepath.Join(dir, "maps", "pc_test")); err != nil {
		t.Fatal(err)
	}
	if err := pm.Pin(filepath.Join(dir, "maps", "pc_cnt")); err != nil {
		t.Fatal(err)
	}
	// No agent: the socket does not exist. maps reads bpffs only.
	out, err := pcctl(t, filepath.Join(dir, "none.sock"), "maps", "-bpffs", dir, "-dump", "pc_test")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "pc_test") || !strings.Contains(out, "04030201") || !strings.Contains(out, "ddccbbaa") {
		t.Errorf("maps output:\n%s", out)
	}
	// maps' own -bpffs defaults to the global -bpffs (or PORTCULLIS_BPFFS).
	if got, err := pcctl(t, "", "-bpffs", dir, "maps", "-dump", "pc_test"); err != nil || got != out {
		t.Errorf("pcctl -bpffs DIR maps: %v\n%s", err, got)
	}
	if got, _, err := run(map[string]string{"PORTCULLIS_BPFFS": dir}, "maps", "-dump", "pc_test"); err != nil || got != out {
		t.Errorf("maps with PORTCULLIS_BPFFS: %v\n%s", err, got)
	}
	out, _ = pcctl(t, "", "maps", "-bpffs", dir, "-dump", "pc_cnt")
	want := fmt.Sprintf("=> %02x00000000000000 (sum over CPUs)", 2*n) // little-endian uint64
	if !strings.Contains(out, want) {
		t.Errorf("per-CPU sum missing (%s):\n%s", want, out)
	}
}
