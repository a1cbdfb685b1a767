package bench

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// userHZ is the unit of /proc/stat (USER_HZ, 100 on every Linux ABI).
const userHZ = 100

// cpuSnapshot is the machine's busy CPU time and pcbench's own, at one
// instant. The difference of two, divided by the work done between them,
// is the CPU cost of that work. The machine's counter includes softirq
// time, where most packet processing happens; it also includes anything
// else running on the machine, so keep it quiet.
type cpuSnapshot struct {
	busy time.Duration // user+nice+system+irq+softirq of all CPUs
	self time.Duration // user+system of this process (clients and servers)
}

func takeCPU() (cpuSnapshot, error) {
	var s cpuSnapshot
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return s, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	if s.busy, err = parseBusy(line); err != nil {
		return s, err
	}
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return s, err
	}
	s.self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	return s, nil
}

// parseBusy reads the aggregate "cpu" line of /proc/stat: user nice system
// idle iowait irq softirq steal ...; busy is everything but idle, iowait and
// steal.
func parseBusy(line string) (time.Duration, error) {
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return 0, fmt.Errorf("unexpected /proc/stat line %q", line)
	}
	var ticks uint64
	for _, i := range []int{1, 2, 3, 6, 7} {
		v, err := strconv.ParseUint(f[i], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/stat field %d: %w", i, err)
		}
		ticks += v
	}
	return time.Duration(ticks) * time.Second / userHZ, nil
}

// since returns the busy machine time and own time elapsed since a.
func (b cpuSnapshot) since(a cpuSnapshot) (busy, self time.Duration) {
	return b.busy - a.busy, b.self - a.self
}
