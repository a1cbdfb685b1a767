package ebpf

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// TestPairStateTwoCPUs hammers the two halves of one flow from two CPUs at
// once: in every round the flow is established (both halves REPLIED), then
// a FIN leaves through the uplink egress on CPU 0 while the peer's FIN
// arrives on the uplink ingress on CPU 1. Each packet's program updates
// its own half and copies the state into the partner half, so the two
// programs write both halves at the same time; afterwards both halves must
// say that both FINs were seen. A FIN lost that way kept the flow at the
// established timeout (6 hours) instead of the closing one (10 seconds).
// After the rounds the flow's last ACK must leave both halves closing.
func TestPairStateTwoCPUs(t *testing.T) {
	requireBPF(t)
	if runtime.NumCPU() < 2 {
		t.Skipf("needs 2 CPUs to run the two directions at once, this machine has %d", runtime.NumCPU())
	}
	f := newFixture(t, fixtureOpts{icc: true, masquerade: true})
	fk, rk := ctKey(ipA, 43100, ipExt, 443, 6), ctKey(ipExt, 443, ipNode, 43100, 6)
	seg := func(flags uint8) []byte {
		return pkt4{srcMAC: macA, src: ipA, dst: ipExt, proto: 6, sport: 43100, dport: 443, tcpFlags: flags}.frame()
	}
	back := func(flags uint8) []byte {
		return pkt4{src: ipExt, dst: ipNode, proto: 6, sport: 443, dport: 43100, tcpFlags: flags}.frame()
	}
	f.pass(progUplinkEgress, seg(0x02))
	f.pass(progUplinkIngress, back(0x12))
	ct := f.d.maps[mapFlows4]
	established := func() error {
		for _, k := range []bpfCtKey{fk, rk} {
			var e bpfCtEntry
			if err := ct.Lookup(k, &e); err != nil {
				return fmt.Errorf("half %+v: %w", k, err)
			}
			e.State = ctReplied
			if err := ct.Update(k, e, ebpf.UpdateExist); err != nil {
				return err
			}
		}
		return nil
	}
	closed := ctReplied | ctFinFwd | ctFinRev

	const rounds = 3000
	var (
		arrivals atomic.Int64
		lost     atomic.Int64
		wg       sync.WaitGroup
		errs     = make([]error, 2)
	)
	// barrier waits until both workers have arrived n times: spinning, so
	// that both leave it within a few hundred nanoseconds of each other.
	barrier := func(n int64) {
		arrivals.Add(1)
		for arrivals.Load() < 2*n {
		}
	}
	frames := [][]byte{seg(0x11), back(0x11)}
	progs := []*ebpf.Program{f.d.progs[progUplinkEgress], f.d.progs[progUplinkIngress]}
	for cpu := 0; cpu < 2; cpu++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			var set unix.CPUSet
			set.Set(cpu)
			if err := unix.SchedSetaffinity(0, &set); err != nil {
				errs[cpu] = fmt.Errorf("pin to CPU %d: %w", cpu, err)
			}
			out := make([]byte, len(frames[cpu])+256)
			for r := int64(0); r < rounds; r++ {
				if cpu == 0 && errs[0] == nil {
					errs[0] = established()
				}
				barrier(3*r + 1)
				ret, err := progs[cpu].Run(&ebpf.RunOptions{Data: frames[cpu], DataOut: out})
				if err == nil && ret != actOK {
					err = fmt.Errorf("verdict %d", ret)
				}
				if err != nil && errs[cpu] == nil {
					errs[cpu] = err
				}
				barrier(3*r + 2)
				if cpu == 0 {
					var fe, re bpfCtEntry
					if ct.Lookup(fk, &fe) != nil || ct.Lookup(rk, &re) != nil || fe.State != closed || re.State != closed {
						lost.Add(1)
					}
				}
				barrier(3*r + 3)
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := lost.Load(); n > 0 {
		t.Errorf("%d of %d rounds ended with a half that missed a FIN", n, rounds)
	}
	f.pass(progUplinkEgress, seg(0x10))
	requireTimeout(t, f.ct()[fk], 10*time.Second)
	requireTimeout(t, f.ct()[rk], 10*time.Second)
}
