package ebpf

import (
	"testing"

	"github.com/portcullis/portcullis/internal/nstest"
)

// TestBenchPaths: the micro-benchmarks' paths (bench/bpf_bench_test.go)
// load, check themselves (verdicts, packets restored by the mirror halves)
// and run, with and without filled maps.
func TestBenchPaths(t *testing.T) {
	requireBPF(t)
	nstest.RequireRoot(t)
	ns := nstest.NewNS(t, "bpfbench", nstest.RandomSuffix())
	for _, fill := range []int{0, 1000} {
		var b *Bench
		if err := ns.Do(func() (err error) { b, err = BenchPaths(fill); return err }); err != nil {
			t.Fatalf("fill %d: %v", fill, err)
		}
		t.Cleanup(b.Close)
		want := []string{"snat-established", "snat-reply", "dnat-established", "policy-pass", "icc-drop", "spoof-drop", "baseline"}
		if len(b.Paths) != len(want) {
			t.Fatalf("%d paths, want %v", len(b.Paths), want)
		}
		for i, p := range b.Paths {
			if p.Name != want[i] {
				t.Errorf("path %d is %s, want %s", i, p.Name, want[i])
			}
			err := ns.Do(func() error {
				d, err := p.Run(10001) // odd: the mirror halves leave the packet translated
				t.Logf("fill %d: %-17s %v per run", fill, p.Name, d)
				return err
			})
			if err != nil {
				t.Error(err)
			}
		}
	}
	if _, err := BenchPaths(maxBenchMap + 1); err == nil {
		t.Error("fill beyond pcbench's largest N accepted")
	}
}
