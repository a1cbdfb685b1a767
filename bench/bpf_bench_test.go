package bench

import (
	"fmt"
	"testing"
	"time"

	"github.com/portcullis/portcullis/dataplane/ebpf"
	"github.com/portcullis/portcullis/internal/nstest"
)

// BenchmarkBPFProgTestRun measures the eBPF programs per packet path, with
// BPF_PROG_TEST_RUN: the kernel runs the program b.N times on one packet
// and times the runs itself, so ns/op is the program alone (no system
// call, no packet allocation). The paths, their maps and their frames come
// from ebpf.BenchPaths (see there for what each path is and how the NAT
// paths stay on an established flow across repetitions); fill=N puts N
// other published ports and N other flows in the maps, as pcbench's N.
//
//	sudo go test -run '^$' -bench BPFProgTestRun ./bench
//
// The programs run in a namespace of the benchmark's own (its loopback
// device is the packets' interface); nothing is attached.
func BenchmarkBPFProgTestRun(b *testing.B) {
	nstest.RequireRoot(b)
	ns := nstest.NewNS(b, "bpfbench", nstest.RandomSuffix())
	for _, fill := range []int{0, 100000} {
		var set *ebpf.Bench
		if err := ns.Do(func() (err error) { set, err = ebpf.BenchPaths(fill); return err }); err != nil {
			b.Fatalf("prepare the packet paths: %v", err)
		}
		for _, p := range set.Paths {
			b.Run(fmt.Sprintf("%s/fill=%d", p.Name, fill), func(b *testing.B) {
				var per time.Duration
				if err := ns.Do(func() (err error) { per, err = p.Run(b.N); return err }); err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(per.Nanoseconds()), "ns/op") // the kernel's, replacing the wall clock's
			})
		}
		set.Close()
	}
}
