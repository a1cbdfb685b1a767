package ebpf

import (
	"fmt"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"
)

// requireTCX skips on kernels without tcx (before 6.6): there the backend
// uses clsact, which the tc subtests cover.
func requireTCX(t *testing.T) {
	t.Helper()
	requireBPF(t)
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:         ebpf.SchedCLS,
		License:      "MIT",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
	})
	if err != nil {
		t.Fatalf("load a trivial program: %v", err)
	}
	defer prog.Close()
	if err := probeTCX(prog); err != nil {
		if kernelAtLeast(t, 6, 6) {
			t.Fatalf("kernel is 6.6 or later but tcx probe failed: %v", err)
		}
		t.Skipf("kernel has no tcx: %v", err)
	}
}

func kernelAtLeast(t *testing.T, major, minor int) bool {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		t.Fatal(err)
	}
	var ma, mi int
	if _, err := fmt.Sscanf(unix.ByteSliceToString(u.Release[:]), "%d.%d", &ma, &mi); err != nil {
		return false
	}
	return ma > major || ma == major && mi >= minor
}

// TestProbe: the datapath loads here, and tcx is found on 6.6+.
func TestProbe(t *testing.T) {
	requireBPF(t)
	tcx, err := Probe()
	if err != nil {
		t.Fatalf("probe: %v", err)
	}
	if kernelAtLeast(t, 6, 6) && !tcx {
		t.Fatal("kernel 6.6+ but no tcx")
	}
}
