package bench

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/portcullis/portcullis/internal/nstest"
)

// env is what every instance shares: the tools found and the settings.
type env struct {
	cfg      Config
	agent    string // portcullisd
	agentErr error  // why our modes cannot run, when they cannot
	cnitool  string
	log      io.Writer
}

func newEnv(cfg Config) *env {
	e := &env{cfg: cfg, log: cfg.Progress}
	if e.log == nil {
		e.log = io.Discard
	}
	e.agent = cfg.Agent
	needAgent := slices.ContainsFunc(cfg.Modes, func(m string) bool {
		return m == "nftables" || m == "ebpf" || strings.HasPrefix(m, engineAgentPrefix)
	})
	if e.agent == "" && needAgent {
		// The agent built with pcbench, else this tree's, else an installed
		// one: an old portcullisd on PATH would measure the wrong code.
		if p, ok := nextToSelf("portcullisd"); ok {
			e.agent = p
		} else if p, err := nstest.BuildAgent(); err == nil {
			e.agent = p
		} else if p, perr := exec.LookPath("portcullisd"); perr == nil {
			e.agent = p
		} else {
			e.agentErr = fmt.Errorf("no portcullisd: give -agent, put it next to pcbench (make build), or run from the repository: %v", err)
		}
	}
	e.cnitool, _ = lookTool("cnitool")
	return e
}

func (e *env) progress(format string, args ...any) {
	fmt.Fprintf(e.log, format+"\n", args...)
}

// Run runs the benchmark and returns its results. Every mode runs at every
// N in every round in freshly created namespaces; the order of the modes
// rotates from round to round. Nothing touches the root namespace.
func Run(cfg Config) (*Results, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("pcbench must run as root: it creates network namespaces")
	}
	sweepTemp()
	e := newEnv(cfg)
	res := &Results{Started: time.Now(), Machine: machineInfo(), Config: cfg}
	res.Config.Agent = e.agent
	if e.cnitool != "" {
		res.Machine.Tools["cnitool"] = e.cnitool
	}
	_, err := exec.LookPath("iperf3")
	iperfFound := err == nil
	if !iperfFound {
		e.progress("iperf3 not found: no throughput or UDP numbers (install Debian's iperf3, make deps-bench)")
	}
	var modes []mode
	var engines []*engineMode
	for _, name := range cfg.Modes {
		m, err := newSideMode(name)
		if err != nil {
			return nil, err
		}
		info := ModeInfo{Name: name, Description: m.describe()}
		if err := m.check(e); err != nil {
			info.Unavailable = err.Error()
			e.progress("mode %s unavailable: %v", name, err)
		} else if em, ok := m.(*engineMode); ok {
			engines = append(engines, em)
		} else {
			modes = append(modes, m.(mode))
		}
		res.Modes = append(res.Modes, info)
	}
	total := cfg.Rounds * len(cfg.Ns) * len(modes)
	done := 0
	gone := map[string]bool{}
	for round := 1; round <= cfg.Rounds; round++ {
		order := rotate(modes, round-1)
		for _, n := range cfg.Ns {
			for _, m := range order {
				done++
				if gone[m.name()] {
					continue
				}
				s := runInstance(e, m, n, round)
				res.Samples = append(res.Samples, s)
				e.progress("[%3d/%d %s] round %d/%d N=%-6d %-18s %s", done, total, clock(time.Since(res.Started)),
					round, cfg.Rounds, n, m.name(), sampleLine(s))
				if strings.HasPrefix(s.Error, "unavailable: ") {
					gone[m.name()] = true
					markUnavailable(res, m.name(), strings.TrimPrefix(s.Error, "unavailable: "))
				}
			}
		}
	}
	if len(cfg.Memory) > 0 {
		var left []mode
		for _, m := range modes {
			if !gone[m.name()] {
				left = append(left, m)
			}
		}
		res.Memory = runMemory(e, left, cfg.Memory)
	}
	if cfg.SideBySide > 0 && !cfg.skipSuite && iperfFound && len(modes) > 0 {
		var left []mode
		for _, m := range modes {
			if !gone[m.name()] {
				left = append(left, m)
			}
		}
		res.SideBySide = runSideBySide(e, left, cfg.SideBySideN)
	}
	if (cfg.Flows > 0 || cfg.Churn > 0) && slices.Contains(cfg.Modes, "ebpf") && !gone["ebpf"] && e.agentErr == nil {
		res.Flows, res.Churn = runFlows(e)
	}
	if cfg.DockerRounds > 0 && len(engines) > 0 {
		res.Docker = runDockerAll(e, res, modes, gone, engines)
	}
	res.Seconds = time.Since(res.Started).Seconds()
	res.Summary = summarizeSamples(res.Samples, cfg.Modes, cfg.Ns)
	return res, nil
}

// namedMode is what Run needs of every mode before it knows its kind.
type namedMode interface {
	sideMode
	describe() string
	check(e *env) error
}

// newSideMode returns the mode called name: one of the rounds' modes, or
// an engine mode.
func newSideMode(name string) (namedMode, error) {
	if isEngine(name) {
		return newEngineMode(name)
	}
	return newMode(name)
}

// runDockerAll runs the engine comparison at each number of ports, with
// the references that are selected and did not turn out unavailable. An
// engine that cannot start at one size is marked unavailable, and one that
// did not publish the ports within its budget is noted; either is left out
// of the sizes after it.
func runDockerAll(e *env, res *Results, modes []mode, gone map[string]bool, engines []*engineMode) []*DockerSide {
	var refs []sideMode
	for _, m := range modes {
		if slices.Contains(dockerRefs, m.name()) && !gone[m.name()] {
			refs = append(refs, m)
		}
	}
	var out []*DockerSide
	for _, ports := range e.cfg.DockerPorts {
		var left []*engineMode
		for _, m := range engines {
			if !gone[m.name()] {
				left = append(left, m)
			}
		}
		if len(left) == 0 {
			break
		}
		ds := runDocker(e, refs, left, ports)
		for _, m := range left {
			err, ok := ds.Left[m.name()]
			if !ok {
				continue
			}
			gone[m.name()] = true
			if isUnavailable(err) {
				markUnavailable(res, m.name(), err.Error())
			}
		}
		out = append(out, ds)
	}
	return out
}

func markUnavailable(res *Results, mode, why string) {
	for i := range res.Modes {
		if res.Modes[i].Name == mode {
			res.Modes[i].Unavailable = why
		}
	}
}

// rotate returns modes starting at the k-th, so that no mode always runs
// first (or right after the same neighbour) in a round.
func rotate(modes []mode, k int) []mode {
	if len(modes) == 0 {
		return nil
	}
	k %= len(modes)
	return append(append([]mode(nil), modes[k:]...), modes[:k]...)
}

func clock(d time.Duration) string {
	d = d.Round(time.Second)
	return fmt.Sprintf("%02d:%02d", int(d.Minutes()), int(d.Seconds())%60)
}

// runInstance builds one instance, measures it and tears it down.
func runInstance(e *env, m mode, n, round int) Sample {
	s := Sample{Mode: m.name(), Round: round, N: n, Metrics: map[string]float64{}}
	if lm, ok := m.(limitedMode); ok {
		if max, why := lm.maxN(); n > max {
			s.Error = fmt.Sprintf("skipped: above N=%d: %s", max, why)
			return s
		}
	}
	start := time.Now()
	sc := newScope()
	var in *instance
	err := sc.run(func() error {
		in = newInstance(sc, e, m.name(), n, e.cfg.Clients)
		return measure(e, m, in, s.Metrics, round == 1)
	})
	if in != nil {
		s.Notes = in.notes
		if in.topo != nil {
			s.Netns = "pct-*-" + in.topo.Suffix
		}
	}
	sc.Close()
	switch {
	case isUnavailable(err):
		s.Error = "unavailable: " + err.Error()
	case err != nil:
		s.Error = err.Error()
		// What the harness said (an agent's log) helps only when it failed.
		s.Notes = append(s.Notes, sc.logs()...)
	}
	s.Seconds = time.Since(start).Seconds()
	return s
}

// measure runs the benchmarks of one instance into metrics.
func measure(e *env, m mode, in *instance, metrics map[string]float64, firstRound bool) error {
	cfg := e.cfg
	bulk, err := m.setup(in)
	if err != nil {
		return err
	}
	if bulk > 0 {
		metrics[mBulkS] = bulk.Seconds()
	}
	startEcho(in.tb, in.c1, echoPort)
	if err := probe(in.topo.Ext, in.echoDst, 10*time.Second); err != nil {
		return fmt.Errorf("the published port does not work: %w", err)
	}
	if err := measureConnRate(e, in, metrics); err != nil {
		return err
	}
	first := in.n == cfg.Ns[0]
	if first && !cfg.skipSuite {
		if err := measureSuite(e, in, metrics); err != nil {
			return err
		}
	}
	if err := measureAdds(e, m, in, metrics); err != nil {
		return err
	}
	for k, v := range m.footprint(in) {
		metrics[k] = v
	}
	if first && firstRound && cfg.PerCall > 0 {
		ms := make([]Mapping, cfg.PerCall)
		for i := range ms {
			ms[i] = addedMapping(cfg.Adds+i, in.c2IP)
		}
		start := time.Now()
		err := m.program(in, ms)
		switch {
		case errors.Is(err, errNothingToProgram):
		case err != nil:
			return fmt.Errorf("program %d mappings one by one: %w", len(ms), err)
		default:
			metrics[mPerCallS] = time.Since(start).Seconds()
		}
	}
	return nil
}

// measureConnRate runs the connection-rate clients from the external host
// against the published port: a short warm-up (ARP, caches, the first
// conntrack entries), then the measured run with CPU accounting.
func measureConnRate(e *env, in *instance, metrics map[string]float64) error {
	cfg := e.cfg
	warm := min(time.Second, cfg.Duration/4)
	connRate(in.topo.Ext, in.echoDst, cfg.Clients, warm)
	before, err := takeCPU()
	if err != nil {
		return err
	}
	r := connRate(in.topo.Ext, in.echoDst, cfg.Clients, cfg.Duration)
	after, err := takeCPU()
	if err != nil {
		return err
	}
	if r.Count == 0 {
		return fmt.Errorf("no connection completed in %v: %v", cfg.Duration, topErrors(r.Errors))
	}
	busy, self := after.since(before)
	p := r.percentiles(50, 99)
	metrics[mConnRate] = float64(r.Count) / r.Elapsed.Seconds()
	metrics[mConnP50] = micros(p[0])
	metrics[mConnP99] = micros(p[1])
	metrics[mConnErrors] = float64(r.errorCount())
	metrics[mCPUPerConn] = micros(busy) / float64(r.Count)
	metrics[mProcPerConn] = micros(self) / float64(r.Count)
	if n := r.errorCount(); n > 0 {
		in.note("%d failed connections: %s", n, topErrors(r.Errors))
	}
	if v, err := in.topo.Node.Sysctl("net.netfilter.nf_conntrack_count"); err == nil {
		var c float64
		fmt.Sscan(v, &c)
		metrics[mConntrack] = c
		if mx, err := in.topo.Node.Sysctl("net.netfilter.nf_conntrack_max"); err == nil {
			var cm float64
			fmt.Sscan(mx, &cm)
			if cm > 0 && c > 0.8*cm {
				in.note("conntrack table %.0f%% full (%.0f of %.0f): connection rate may be capped by drops", 100*c/cm, c, cm)
			}
		}
	}
	return nil
}

// egressRuns is how many streams the egress throughput is the median of:
// one stream's rate swings by 10-20% from run to run on a 2-CPU VM
// (reordering between the two CPUs' backlogs costs it retransmits).
const egressRuns = 3

// measureSuite is the rest of the traffic benchmarks, run at the first N:
// request/response latency, TCP throughput three ways (egress also with
// client, server and so every softirq on one CPU: the path's cost per byte,
// without the scheduler's say) and the UDP rate.
func measureSuite(e *env, in *instance, metrics map[string]float64) error {
	d := e.cfg.Duration
	rr := requestResponse(in.topo.Ext, in.echoDst, d)
	if rr.Count == 0 {
		return fmt.Errorf("request/response to %v: %v", in.echoDst, topErrors(rr.Errors))
	}
	p := rr.percentiles(50, 99)
	metrics[mRRP50] = micros(p[0])
	metrics[mRRP99] = micros(p[1])
	metrics[mRRRate] = float64(rr.Count) / rr.Elapsed.Seconds()

	iperfServer(in.tb, in.c1, iperfPort)
	iperfServer(in.tb, in.topo.Ext, iperfPort)
	runs := []struct {
		key    string
		client *nstest.NS
		dst    func() (float64, error)
	}{
		{mEgress, in.c1, func() (float64, error) {
			return medianThroughput(egressRuns, in.c1, addrPort(nstest.ExtAddr, iperfPort), d)
		}},
		{mEgress1CPU, in.c1, func() (float64, error) {
			return tcpThroughput(in.c1, addrPort(nstest.ExtAddr, iperfPort), d, "-A", "0,0")
		}},
		{mIngress, in.topo.Ext, func() (float64, error) { return tcpThroughput(in.topo.Ext, in.iperfDst, d) }},
		{mC2C, in.c2, func() (float64, error) { return tcpThroughput(in.c2, addrPort(in.c1IP, iperfPort), d) }},
		{mUDP, in.topo.Ext, func() (float64, error) { return udpRate(in.topo.Ext, in.iperfDst, d) }},
	}
	for _, r := range runs {
		v, err := r.dst()
		if err != nil {
			in.note("%s: %v", r.key, err)
			continue
		}
		metrics[r.key] = v
	}
	return nil
}

// measureAdds adds cfg.Adds mappings one at a time, each timed.
//
// The adds follow the traffic measurements, whose echo servers run in this
// process: its garbage collector, collecting after them, delayed the reads
// of the agent's answers by 3-10 ms (seen as a gap between the agent's
// log of an answer and the client's clock). So the adds start on a
// collected heap after the node has settled for a moment, and this
// process does not collect while they run: the numbers are the agent's.
func measureAdds(e *env, m mode, in *instance, metrics map[string]float64) error {
	runtime.GC()
	time.Sleep(500 * time.Millisecond)
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	var ms []float64
	begin := time.Now()
	for k := range e.cfg.Adds {
		if k > 0 && e.cfg.AddBudget > 0 && time.Since(begin) > e.cfg.AddBudget {
			in.note("N=%d: %d of %d adds within the %v add budget", in.n, k, e.cfg.Adds, e.cfg.AddBudget)
			break
		}
		start := time.Now()
		err := m.program(in, []Mapping{addedMapping(k, in.c2IP)})
		if errors.Is(err, errNothingToProgram) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("add mapping %d at N=%d: %w", k, in.n, err)
		}
		ms = append(ms, float64(time.Since(start).Microseconds())/1000)
	}
	if len(ms) > 0 {
		sort.Float64s(ms)
		metrics[mAddMs] = median(ms)
		metrics[mAddP99Ms] = percentile(ms, 99)
	}
	return nil
}

func micros(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }

// topErrors lists the most frequent errors, most frequent first.
func topErrors(errs map[string]int) string {
	type kv struct {
		k string
		v int
	}
	var all []kv
	for k, v := range errs {
		all = append(all, kv{k, v})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].v > all[j].v })
	var parts []string
	for i, e := range all {
		if i == 3 {
			break
		}
		parts = append(parts, fmt.Sprintf("%dx %s", e.v, e.k))
	}
	if len(parts) == 0 {
		return "no error recorded"
	}
	return strings.Join(parts, "; ")
}

// sampleLine is the progress line's summary of a sample.
func sampleLine(s Sample) string {
	switch {
	case strings.HasPrefix(s.Error, "skipped: "):
		return firstLine(s.Error)
	case s.Error != "":
		return fmt.Sprintf("FAILED (%.1fs): %s", s.Seconds, firstLine(s.Error))
	}
	var parts []string
	add := func(key, format string, scale float64) {
		if v, ok := s.Metrics[key]; ok {
			parts = append(parts, fmt.Sprintf(format, v*scale))
		}
	}
	add(mConnRate, "%.0f conn/s", 1)
	add(mConnP99, "p99 %.0fµs", 1)
	add(mCPUPerConn, "%.0fµs CPU/conn", 1)
	add(mRRP50, "rr %.0fµs", 1)
	add(mIngress, "in %.1fG", 1)
	add(mUDP, "udp %.0fkpps", 1)
	add(mBulkS, "bulk %.3fs", 1)
	add(mAddMs, "add %.1fms", 1)
	add(mPerCallS, "per-call %.1fs", 1)
	add(mRSS, "rss %.0fMB", 1)
	return fmt.Sprintf("%s (%.1fs)", strings.Join(parts, ", "), s.Seconds)
}

// WriteAll writes results.json, results.md and the plots into dir.
func WriteAll(res *Results, dir string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var files []string
	js, err := res.JSON()
	if err != nil {
		return nil, err
	}
	write := func(name string, b []byte) error {
		p := filepath.Join(dir, name)
		files = append(files, p)
		return os.WriteFile(p, b, 0o644)
	}
	if err := write("results.json", js); err != nil {
		return files, err
	}
	if err := write("results.md", []byte(RenderMarkdown(res))); err != nil {
		return files, err
	}
	plots, err := writePlots(res, dir)
	files = append(files, plots...)
	return files, err
}
