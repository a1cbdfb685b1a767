package bench

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
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
	// VsDocker is the same against docker-iptables, in the Docker engine
	// comparison.
	VsDocker *Stat `json:"vs_docker_iptables,omitempty"`
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
	sb := &SideBySide{N: n, Rounds: e.cfg.SideBySide, Variants: variantFlags(variants)}
	var sides []sideMode
	for _, m := range modes {
		sides = append(sides, m)
	}
	lives, _ := startLives(e, "side by side", sides, n, &sb.Notes)
	defer closeLives(lives)
	for round := 1; round <= e.cfg.SideBySide; round++ {
		for k := range lives {
			l := lives[(k+round-1)%len(lives)]
			sb.Runs = append(sb.Runs, measureLive(e, l, round, variants, &sb.Notes)...)
		}
		e.progress("[side by side %s] round %d/%d", clock(time.Since(start)), round, e.cfg.SideBySide)
	}
	sb.Notes = append(sb.Notes, liveNotes(lives)...)
	sb.Seconds = time.Since(start).Seconds()
	sb.Summary = summarizeSide(sb.Runs, e.cfg.Modes)
	return sb
}

// sideMode is what a side-by-side comparison needs of a mode: an instance
// with c1's services published. mode has it, and so has engineMode.
type sideMode interface {
	name() string
	setup(in *instance) (time.Duration, error)
}

// live is one mode's instance, kept alive through the rounds.
type live struct {
	m     sideMode
	in    *instance
	sc    *scope
	setup time.Duration // what the mode's setup returned: its bulk programming
	notes int           // the instance's notes before the rounds
}

// startLives builds one instance per mode at N = n, with the echo server
// in c1 answering on the published port and an iperf3 server on the
// external host (when iperf3 is installed). A mode whose instance cannot
// be built is left out with a note in notes; those that cannot run here at
// all are also in gone, with the reason. Progress lines start with label.
func startLives(e *env, label string, modes []sideMode, n int, notes *[]string) (lives []live, gone map[string]error) {
	gone = map[string]error{}
	_, iperfErr := exec.LookPath("iperf3")
	for _, m := range modes {
		if lm, ok := m.(limitedMode); ok {
			if max, why := lm.maxN(); n > max {
				*notes = append(*notes, fmt.Sprintf("%s: above N=%d: %s", m.name(), max, why))
				continue
			}
		}
		sc := newScope()
		var in *instance
		var took time.Duration
		err := sc.run(func() error {
			in = newInstance(sc, e, m.name(), n, e.cfg.Clients)
			var err error
			if took, err = m.setup(in); err != nil {
				return err
			}
			startEcho(in.tb, in.c1, echoPort)
			if err := probe(in.topo.Ext, in.echoDst, 10*time.Second); err != nil {
				return fmt.Errorf("the published port does not work: %w", err)
			}
			if iperfErr == nil {
				iperfServer(in.tb, in.topo.Ext, iperfPort)
			}
			return nil
		})
		e.progress("[%s] %s N=%d: %s", label, m.name(), n, setupLine(took, err))
		if err != nil {
			sc.Close()
			*notes = append(*notes, fmt.Sprintf("%s: %v", m.name(), err))
			if isUnavailable(err) || errors.Is(err, errOverBudget) {
				gone[m.name()] = err
			}
			continue
		}
		lives = append(lives, live{m, in, sc, took, len(in.notes)})
	}
	return lives, gone
}

func setupLine(took time.Duration, err error) string {
	if err != nil {
		return "left out: " + firstLine(err.Error())
	}
	return fmt.Sprintf("up, bulk programming %v", took.Round(time.Millisecond))
}

func closeLives(lives []live) {
	for _, l := range lives {
		l.sc.Close()
	}
}

// liveNotes are the notes the instances took during the rounds.
func liveNotes(lives []live) []string {
	var out []string
	for _, l := range lives {
		for _, n := range l.in.notes[l.notes:] {
			out = append(out, l.m.name()+": "+n)
		}
	}
	return out
}

// variantFlags is the iperf3 flags of each variant, for the report.
func variantFlags(variants map[string][]string) map[string]string {
	out := map[string]string{}
	for name, flags := range variants {
		out[name] = strings.Join(flags, " ")
	}
	return out
}

// measureLive is one mode's share of a round: the connection rate, then
// one stream out through masquerade in each variant. What fails is noted
// and left out.
func measureLive(e *env, l live, round int, variants map[string][]string, notes *[]string) []SideRun {
	note := func(metric string, err error) {
		*notes = append(*notes, fmt.Sprintf("%s round %d %s: %v", l.m.name(), round, metric, err))
	}
	var runs []SideRun
	metrics := map[string]float64{}
	if err := measureConnRate(e, l.in, metrics); err != nil {
		note(sideConnRate, err)
	} else {
		runs = append(runs, SideRun{Mode: l.m.name(), Round: round, Metric: sideConnRate, Value: metrics[mConnRate]})
	}
	dst := addrPort(nstest.ExtAddr, iperfPort)
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
		runs = append(runs, SideRun{Mode: l.m.name(), Round: round, Metric: variant, Value: v})
	}
	return runs
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
	return summarizeRuns(runs, modes, sideMetrics, "")
}

// summarizeRuns is summarizeSide over the given metrics, with the ratio to
// a second reference (VsDocker) when ref2 is not empty.
func summarizeRuns(runs []SideRun, modes, metrics []string, ref2 string) []SideSummary {
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
	vs := func(mode, ref, metric string, mine map[int]float64, rounds []int) *Stat {
		other := byRound[key{ref, metric}]
		if ref == "" || mode == ref || len(other) == 0 {
			return nil
		}
		return ratioInterval(mine, other, rounds)
	}
	var out []SideSummary
	for _, mode := range modes {
		for _, metric := range metrics {
			mine := byRound[key{mode, metric}]
			if len(mine) == 0 {
				continue
			}
			rounds := slices.Sorted(maps.Keys(mine))
			out = append(out, SideSummary{Mode: mode, Metric: metric, Value: summarize(slices.Collect(maps.Values(mine))),
				VsNone: vs(mode, refNone, metric, mine, rounds), VsDocker: vs(mode, ref2, metric, mine, rounds)})
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
