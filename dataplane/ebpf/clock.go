package ebpf

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/cilium/ebpf"
)

// tickClock turns bpf_jiffies64 into the datapath's clock: CLOCK_MONOTONIC
// at tick resolution, what bpf_ktime_get_coarse_ns returns and what the
// agent compares deadlines with. The verifier inlines bpf_jiffies64 (a
// load), where bpf_ktime_get_coarse_ns is a helper call, about 10 ns of an
// established packet's time here. The kernel advances jiffies by one for
// each tick of CLOCK_MONOTONIC, so
//
//	now = jiffies * tickNs + offset   (mod 2^64: offset is "negative")
//
// with tickNs the tick's length (TICK_NSEC) and offset fixed until reboot.
// calibrateClock finds both with pc_clock_sample (bpf/clock.c); where it
// cannot (err), the programs call bpf_ktime_get_coarse_ns as before.
type tickClock struct {
	hz             int
	tickNs, offset uint64
	err            error
}

// mode is what /v1/status shows.
func (c tickClock) mode() string {
	if c.err != nil {
		return "coarse clock: " + c.err.Error()
	}
	return fmt.Sprintf("jiffies (HZ=%d)", c.hz)
}

// now is the clock the programs read when jiffies is j.
func (c tickClock) now(j uint64) uint64 { return j*c.tickNs + c.offset }

// tickHZs are the tick rates x86 and arm64 kernels are built with
// (CONFIG_HZ); a measurement that matches none of them leaves the coarse
// clock in place.
var tickHZs = []int{100, 250, 300, 1000}

// tickNsec is the kernel's TICK_NSEC for hz.
func tickNsec(hz int) uint64 { return (uint64(time.Second) + uint64(hz)/2) / uint64(hz) }

// matchHZ returns the tick rate whose tick is within 2% of the measured
// one.
func matchHZ(measured float64) (int, error) {
	for _, hz := range tickHZs {
		if t := float64(tickNsec(hz)); math.Abs(measured-t) <= 0.02*t {
			return hz, nil
		}
	}
	return 0, fmt.Errorf("measured tick %.0f ns matches no HZ of %v", measured, tickHZs)
}

var kernelClock = sync.OnceValue(calibrateClock)

// clockSpan is how far apart the two calibration samples are.
const clockSpan = 100 * time.Millisecond

// calibrateClock samples jiffies and the coarse clock at two tick edges
// clockSpan apart (each right after jiffies moved, so that the coarse
// clock was set at that tick too): their ratio is the tick, and either
// gives the offset. The result is checked against a third sample.
func calibrateClock() tickClock {
	fail := func(err error) tickClock { return tickClock{err: err} }
	spec, err := loadClock()
	if err != nil {
		return fail(err)
	}
	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		return fail(fmt.Errorf("load the clock sampler: %w", err))
	}
	defer coll.Close()
	prog, v := coll.Programs[clockProgPcClockSample], coll.Variables[clockVarCLOCK_SAMPLE]
	if prog == nil || v == nil {
		return fail(errors.New("clock sampler object lacks its program or variable"))
	}
	frame := make([]byte, 14)
	sample := func() (s clockSample, err error) {
		if _, err = prog.Run(&ebpf.RunOptions{Data: frame}); err != nil {
			return s, fmt.Errorf("run the clock sampler: %w", err)
		}
		return s, v.Get(&s)
	}
	// edge waits for jiffies to move, at most a second (a tick is 10 ms
	// at most).
	edge := func() (clockSample, error) {
		first, err := sample()
		if err != nil {
			return first, err
		}
		for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); {
			s, err := sample()
			if err != nil || s.Jiffies != first.Jiffies {
				return s, err
			}
		}
		return first, errors.New("jiffies did not move for a second")
	}
	a, err := edge()
	if err != nil {
		return fail(err)
	}
	time.Sleep(clockSpan)
	b, err := edge()
	if err != nil {
		return fail(err)
	}
	if b.Jiffies <= a.Jiffies || b.CoarseNs <= a.CoarseNs {
		return fail(fmt.Errorf("clocks did not advance: jiffies %d -> %d, coarse %d -> %d", a.Jiffies, b.Jiffies, a.CoarseNs, b.CoarseNs))
	}
	hz, err := matchHZ(float64(b.CoarseNs-a.CoarseNs) / float64(b.Jiffies-a.Jiffies))
	if err != nil {
		return fail(err)
	}
	c := tickClock{hz: hz, tickNs: tickNsec(hz)}
	c.offset = b.CoarseNs - b.Jiffies*c.tickNs
	check, err := sample()
	if err != nil {
		return fail(err)
	}
	if d := int64(c.now(check.Jiffies) - check.CoarseNs); d > int64(c.tickNs) || d < -int64(c.tickNs) {
		return fail(fmt.Errorf("jiffies clock %d ns off the coarse clock after calibration", d))
	}
	return c
}
