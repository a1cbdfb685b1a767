package bench

import (
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"time"
)

// The Docker engine comparison: a real dockerd publishing the ports, with
// its own iptables rules or followed by portcullisd, side by side with the
// references, at each of Config.DockerPorts published ports.
//
// Like the side-by-side comparison, every instance is built first and kept
// alive, and each round measures every mode back to back in a rotated
// order: the connection rate and one stream out through masquerade (both
// variants). The engine modes then time `docker run -p` of one more
// container, dockerRunsPerRound times, until its page answers from the
// external host. Ratios are taken against none and against
// docker-iptables over the same rounds.

// metricDockerRun is the time of `docker run -p` of one more container
// until its port answers, in seconds: the median of the round's runs.
const metricDockerRun = "docker_run_s"

// dockerMetrics in the order of the table.
var dockerMetrics = append(slices.Clone(sideMetrics), metricDockerRun)

// dockerRunsPerRound is how many containers each engine mode starts per
// round; the round's value is their median.
const dockerRunsPerRound = 3

// dockerRefs are the modes measured beside the engines when selected: the
// floor, Docker's rules written directly, and our backends driven through
// the API, each with the same N published ports.
var dockerRefs = []string{"none", "iptables-nft", "nftables", "ebpf"}

// DockerSide is the engine comparison at one number of published ports.
type DockerSide struct {
	Ports   int     `json:"ports"`
	Rounds  int     `json:"rounds"`
	Seconds float64 `json:"seconds"` // wall time, instances' set-up included
	// Publish is, per mode, the time it took to publish the Ports fillers:
	// for the engines `docker run -p RANGE` until the range's last port
	// answered from the external host; for the references their bulk path.
	Publish  map[string]float64 `json:"publish_s"`
	Variants map[string]string  `json:"variants"`
	Runs     []SideRun          `json:"runs"`
	// DockerRuns are the single `docker run` times in seconds, per mode, in
	// the order taken (Runs holds each round's median).
	DockerRuns map[string][]float64 `json:"docker_runs_s,omitempty"`
	Notes      []string             `json:"notes,omitempty"`
	Summary    []SideSummary        `json:"summary"`
	// Netns are each mode's namespaces, removed at the comparison's end.
	Netns map[string]string `json:"netns,omitempty"`
	// Left are the engines left out for good, unavailable here or over
	// their budget, with the reason (also in Notes).
	Left map[string]error `json:"-"`
}

// runDocker builds the references and the engines at ports published
// ports, all alive at once, and runs cfg.DockerRounds rounds.
func runDocker(e *env, refs []sideMode, engines []*engineMode, ports int) *DockerSide {
	start := time.Now()
	variants := streamVariants()
	ds := &DockerSide{Ports: ports, Rounds: e.cfg.DockerRounds, Publish: map[string]float64{},
		Variants: variantFlags(variants), DockerRuns: map[string][]float64{}, Netns: map[string]string{}}
	modes := slices.Clone(refs)
	for _, m := range engines {
		modes = append(modes, m)
	}
	if _, err := exec.LookPath("iperf3"); err != nil {
		variants = nil
		ds.Notes = append(ds.Notes, "iperf3 not found: no streams (install Debian's iperf3, make deps-bench)")
	}
	lives, gone := startLives(e, fmt.Sprintf("docker %d ports", ports), modes, ports, &ds.Notes)
	ds.Left = gone
	defer closeLives(lives)
	var order []string
	for _, l := range lives {
		ds.Publish[l.m.name()] = l.setup.Seconds()
		ds.Netns[l.m.name()] = "pct-*-" + l.in.topo.Suffix
		order = append(order, l.m.name())
		// What the set-up noted: how long dockerd took, which iptables.
		for _, n := range l.in.notes[:l.notes] {
			ds.Notes = append(ds.Notes, l.m.name()+": "+n)
		}
	}
	for round := 1; round <= e.cfg.DockerRounds; round++ {
		for k := range lives {
			l := lives[(k+round-1)%len(lives)]
			ds.Runs = append(ds.Runs, measureLive(e, l, round, variants, &ds.Notes)...)
			if em, ok := l.m.(*engineMode); ok {
				ds.Runs = append(ds.Runs, ds.timeRuns(em, l, round)...)
			}
		}
		e.progress("[docker %d ports %s] round %d/%d", ports, clock(time.Since(start)), round, e.cfg.DockerRounds)
	}
	ds.Notes = append(ds.Notes, liveNotes(lives)...)
	ds.Seconds = time.Since(start).Seconds()
	ds.Summary = summarizeRuns(ds.Runs, order, dockerMetrics, modeDockerIptables)
	return ds
}

// timeRuns starts dockerRunsPerRound containers on the engine one after
// the other and returns the round's median; failures are noted.
func (ds *DockerSide) timeRuns(m *engineMode, l live, round int) []SideRun {
	var times []float64
	for range dockerRunsPerRound {
		d, err := m.runOne(l.in)
		if err != nil {
			ds.Notes = append(ds.Notes, fmt.Sprintf("%s round %d docker run: %v", m.name(), round, err))
			continue
		}
		times = append(times, d.Seconds())
	}
	if len(times) == 0 {
		return nil
	}
	ds.DockerRuns[m.name()] = append(ds.DockerRuns[m.name()], times...)
	return []SideRun{{Mode: m.name(), Round: round, Metric: metricDockerRun, Value: summarize(times).Median}}
}

// renderDockerAll renders every size of the engine comparison, or why
// the engines did not run at all.
func renderDockerAll(b *strings.Builder, r *Results) {
	for _, ds := range r.Docker {
		renderDocker(b, ds, r.Config.Duration)
	}
	if len(r.Docker) > 0 {
		return
	}
	var why []string
	for _, mi := range r.Modes {
		if isEngine(mi.Name) && mi.Unavailable != "" {
			why = append(why, fmt.Sprintf("- %s: unavailable: %s", mi.Name, firstLine(mi.Unavailable)))
		}
	}
	if len(why) > 0 {
		fmt.Fprintf(b, "\n## Docker engine side by side\n\n%s\n", strings.Join(why, "\n"))
	}
}

// renderDocker is one size of the engine comparison: the time to publish,
// then each metric as median [min–max] over the rounds with its ratios to
// none and to docker-iptables (90% intervals, rounds resampled).
func renderDocker(b *strings.Builder, ds *DockerSide, d time.Duration) {
	fmt.Fprintf(b, "\n## Docker engine side by side with %d published ports\n\n", ds.Ports)
	fmt.Fprintf(b, "A real dockerd in the node, with its own iptables rules (docker-iptables) or followed by portcullisd "+
		"(docker-portcullis-*), beside the references with the same %d ports published; every instance alive at once. "+
		"%d rounds, each measuring every mode back to back in a rotated order: the connection rate for %v and one %v stream out "+
		"two ways (as in the side by side), then %d × `docker run -p` of one more container, timed until its page answers "+
		"from the external host (the round's median). publish s: `docker run -p RANGE` of the %d ports until the last one "+
		"answered (the references: their bulk path). Values: median [min–max]; ×none, ×docker-ipt: median over the "+
		"reference's median [90%% interval, rounds resampled].\n\n",
		ds.Ports, ds.Rounds, d, d, dockerRunsPerRound, ds.Ports)
	digits := map[string]int{sideConnRate: 0, variantDefault: 2, variantCPUBound: 2, metricDockerRun: 3}
	header := []string{"mode", "publish s", "conn/s", "×none", "×docker-ipt", "default Gbit/s", "×none",
		"cpu-bound Gbit/s", "×none", "docker run s", "×docker-ipt"}
	// The columns of each metric: value, then the ratios it has.
	cols := map[string][3]int{sideConnRate: {2, 3, 4}, variantDefault: {5, 6, -1}, variantCPUBound: {7, 8, -1}, metricDockerRun: {9, -1, 10}}
	var rows [][]string
	index := map[string]int{}
	for _, s := range ds.Summary {
		c, ok := cols[s.Metric]
		if !ok {
			continue
		}
		i, seen := index[s.Mode]
		if !seen {
			i = len(rows)
			index[s.Mode] = i
			row := make([]string, len(header))
			for j := range row {
				row[j] = "–"
			}
			row[0] = s.Mode
			if p, ok := ds.Publish[s.Mode]; ok && p > 0 {
				row[1] = fmtValue(p, 3)
			}
			rows = append(rows, row)
		}
		rows[i][c[0]] = statCell(s.Value, digits[s.Metric])
		if c[1] > 0 {
			rows[i][c[1]] = ratioRange(s.VsNone)
		}
		if c[2] > 0 {
			rows[i][c[2]] = ratioRange(s.VsDocker)
		}
	}
	writeTable(b, header, rows)
	for _, n := range ds.Notes {
		fmt.Fprintf(b, "\n- %s", n)
	}
	if len(ds.Notes) > 0 {
		b.WriteString("\n")
	}
}
