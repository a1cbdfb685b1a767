package bench

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/portcullis/portcullis/internal/nstest"
)

// The side-by-side comparison: the connection rate and one TCP stream out
// through masquerade, with every mode alive at once.
//
// One stream's rate swings by 10-30% from run to run on a 2-CPU VM, the
// connection rate by 10%, and the machine's speed drifts over minutes,
// while the paths differ by a few per cent: the per-instance numbers,
// taken minutes apart, do not tell them apart. Here every mode's instance
// (at N = Config.SideBySideN) is built first and kept alive; then each
// round measures every mode, back to back in a rotated order, and the
// ratio to none comes from many measurements taken in the same minutes.
//
// Each round and mode runs the connection-rate clients for D (after a
// warm-up, as in the rounds), then two variants of the stream:
//   - default: iperf3 as a user runs it, with the node's congestion
//     control (often BBR, which paces: on this kind of VM it holds one
//     stream near 16 Gbit/s, below what the CPUs carry, so every path
//     looks alike) and the scheduler's placement;
//   - cpu-bound: a loss-based congestion control (cubic, else reno),
//     which fills the window, with the client on CPU 0 and the server on
//     CPU 1: the client's CPU runs its send path and every softirq it
//     raises, forwarding included, and is the bottleneck, so the path's
//     cost per byte decides the rate. (Only with 2 CPUs or more.)

// What the side-by-side comparison measures: the connection rate and the
// two stream variants.
const (
	sideConnRate    = "conn_per_s"
	variantDefault  = "default_gbps"
	variantCPUBound = "cpu_bound_gbps"
)

// sideMetrics in the order of the table.
var sideMetrics = []string{sideConnRate, variantDefault, variantCPUBound}

// SideRun is one measurement of the side-by-side comparison.
type SideRun struct {
	Mode   string  `json:"mode"`
	Round  int     `json:"round"`
	Metric string  `json:"metric"` // sideConnRate, variantDefault or variantCPUBound
	Value  float64 `json:"value"`
}

// SideBySide is the comparison's result.
type SideBySide struct {
	N        int               `json:"n"`
	Rounds   int               `json:"rounds"`
	Seconds  float64           `json:"seconds"`  // wall time, instances' set-up included
	Variants map[string]string `json:"variants"` // iperf3 flags of each stream variant
	Runs     []SideRun         `json:"runs"`
	Notes    []string          `json:"notes,omitempty"` // modes or measurements left out, and why
	Summary  []SideSummary     `json:"summary"`
}

// SideSummary is one mode's measurements of one metric: the value over the
// rounds and its ratio to none's.
type SideSummary struct {
	Mode   string `json:"mode"`
	Metric string `json:"metric"`
	Value  Stat   `json:"value"`
	// VsNone is the median value over none's median value (Median), with a
	// 90% interval from resampling the rounds (Min, Max).
	VsNone *Stat `json:"vs_none,omitempty"`
}

// streamVariants returns the variants this machine can run, with their
// iperf3 flags.
func streamVariants() map[string][]string {
	v := map[string][]string{variantDefault: nil}
	if runtime.NumCPU() < 2 {
		return v
	}
	cc := "reno"
	if b, err := os.ReadFile("/proc/sys/net/ipv4/tcp_available_congestion_control"); err == nil &&
		slices.Contains(strings.Fields(string(b)), "cubic") {
		cc = "cubic"
	}
	v[variantCPUBound] = []string{"-C", cc, "-A", "0,1"}
	return v
}

// runSideBySide builds one instance per mode at N = n and runs
// cfg.SideBySide rounds. A mode whose instance cannot be built is left out
// with a note; the others go on.
func runSideBySide(e *env, modes []mode, n int) *SideBySide {
	start := time.Now()
	variants := streamVariants()
	sb := &SideBySide{N: n, Rounds: e.cfg.SideBySide, Variants: map[string]string{}}
	for name, flags := range variants {
		sb.Variants[name] = strings.Join(flags, " ")
	}
	type live struct {
		m     mode
		in    *instance
		sc    *scope
		notes int // the instance's notes before the rounds
	}
	var lives []live
	defer func() {
		for _, l := range lives {
			l.sc.Close()
		}
	}()
	for _, m := range modes {
		if lm, ok := m.(limitedMode); ok {
			if max, why := lm.maxN(); n > max {
				sb.Notes = append(sb.Notes, fmt.Sprintf("%s: above N=%d: %s", m.name(), max, why))
				continue
			}
		}
		sc := newScope()
		var in *instance
		err := sc.run(func() error {
			in = newInstance(sc, e, m.name(), n, e.cfg.Clients)
			if _, err := m.setup(in); err != nil {
				return err
			}
			startEcho(in.tb, in.c1, echoPort)
			if err := probe(in.topo.Ext, in.echoDst, 10*time.Second); err != nil {
				return fmt.Errorf("the published port does not work: %w", err)
			}
			iperfServer(in.tb, in.topo.Ext, iperfPort)
			return nil
		})
		if err != nil {
			sc.Close()
			sb.Notes = append(sb.Notes, fmt.Sprintf("%s: %v", m.name(), err))
			continue
		}
		lives = append(lives, live{m, in, sc, len(in.notes)})
	}
	dst := addrPort(nstest.ExtAddr, iperfPort)
	for round := 1; round <= e.cfg.SideBySide; round++ {
		for k := range lives {
			l := lives[(k+round-1)%len(lives)]
			note := func(metric string, err error) {
				sb.Notes = append(sb.Notes, fmt.Sprintf("%s round %d %s: %v", l.m.name(), round, metric, err))
			}
			metrics := map[string]float64{}
			if err := measureConnRate(e, l.in, metrics); err != nil {
				note(sideConnRate, err)
			} else {
				sb.Runs = append(sb.Runs, SideRun{Mode: l.m.name(), Round: round, Metric: sideConnRate, Value: metrics[mConnRate]})
			}
			for _, variant := range []string{variantDefault, variantCPUBound} {
				flags, ok := variants[variant]
				if !ok {
					continue
				}
				v, err := tcpThroughput(l.in.c1, dst, e.cfg.Duration, flags...)
				if err != nil {
					note(variant, err)
					continue
				}
				sb.Runs = append(sb.Runs, SideRun{Mode: l.m.name(), Round: round, Metric: variant, Value: v})
			}
		}
		e.progress("[side by side %s] round %d/%d", clock(time.Since(start)), round, e.cfg.SideBySide)
	}
	for _, l := range lives {
		for _, n := range l.in.notes[l.notes:] {
			sb.Notes = append(sb.Notes, l.m.name()+": "+n)
		}
	}
	sb.Seconds = time.Since(start).Seconds()
	sb.Summary = summarizeSide(sb.Runs, e.cfg.Modes)
	return sb
}

// bootstrapDraws is how many resamplings the ratio's interval comes from.
const bootstrapDraws = 2000

// summarizeSide groups the runs by mode and metric, in the order of
// modes. The ratio to none is of the medians; its interval resamples the
// rounds (with replacement, the same rounds for both modes, so that a slow
// minute counts against both) and takes the 5th and 95th percentiles of
// the ratios. The resampling is seeded: the same runs give the same
// summary.
func summarizeSide(runs []SideRun, modes []string) []SideSummary {
	type key struct {
		mode, metric string
	}
	byRound := map[key]map[int]float64{}
	for _, r := range runs {
		k := key{r.Mode, r.Metric}
		if byRound[k] == nil {
			byRound[k] = map[int]float64{}
		}
		byRound[k][r.Round] = r.Value
	}
	var out []SideSummary
	for _, mode := range modes {
		for _, metric := range sideMetrics {
			mine := byRound[key{mode, metric}]
			if len(mine) == 0 {
				continue
			}
			rounds := slices.Sorted(maps.Keys(mine))
			s := SideSummary{Mode: mode, Metric: metric, Value: summarize(slices.Collect(maps.Values(mine)))}
			ref := byRound[key{refNone, metric}]
			if mode != refNone && len(ref) > 0 {
				s.VsNone = ratioInterval(mine, ref, rounds)
			}
			out = append(out, s)
		}
	}
	return out
}

// ratioInterval is median(mine)/median(ref) with its 90% bootstrap
// interval over the rounds; nil when none of the rounds has both.
func ratioInterval(mine, ref map[int]float64, rounds []int) *Stat {
	var both []int
	for _, r := range rounds {
		if _, ok := ref[r]; ok {
			both = append(both, r)
		}
	}
	ratio := func(rs []int) float64 {
		a, b := make([]float64, len(rs)), make([]float64, len(rs))
		for i, r := range rs {
			a[i], b[i] = mine[r], ref[r]
		}
		return summarize(a).Median / summarize(b).Median
	}
	if len(both) == 0 {
		return nil
	}
	st := Stat{Median: ratio(both), Min: ratio(both), Max: ratio(both), N: len(both)}
	if len(both) < 3 {
		return &st
	}
	rng := rand.New(rand.NewPCG(1, 2))
	draws := make([]float64, bootstrapDraws)
	pick := make([]int, len(both))
	for i := range draws {
		for j := range pick {
			pick[j] = both[rng.IntN(len(both))]
		}
		draws[i] = ratio(pick)
	}
	st.Min, st.Max = percentile(draws, 5), percentile(draws, 95)
	return &st
}
