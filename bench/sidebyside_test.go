package bench

import (
	"math"
	"testing"
)

func sideRuns(mode, metric string, values ...float64) []SideRun {
	var rs []SideRun
	for i, v := range values {
		rs = append(rs, SideRun{Mode: mode, Round: i + 1, Metric: metric, Value: v})
	}
	return rs
}

func findSide(t *testing.T, ss []SideSummary, mode, metric string) SideSummary {
	t.Helper()
	for _, s := range ss {
		if s.Mode == mode && s.Metric == metric {
			return s
		}
	}
	t.Fatalf("no summary for %s %s in %+v", mode, metric, ss)
	return SideSummary{}
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

// The rounds are resampled together: a mode 10% faster than none in every
// round is 1.10x with no spread, however much the rounds differ.
func TestSummarizeSidePairsRounds(t *testing.T) {
	runs := append(sideRuns("none", variantDefault, 10, 20, 10, 20, 14),
		sideRuns("ebpf", variantDefault, 11, 22, 11, 22, 15.4)...)
	s := findSide(t, summarizeSide(runs, []string{"none", "ebpf"}), "ebpf", variantDefault)
	if s.VsNone == nil || !near(s.VsNone.Median, 1.1) || !near(s.VsNone.Min, 1.1) || !near(s.VsNone.Max, 1.1) {
		t.Fatalf("ratio %+v, want 1.10 [1.10-1.10]", s.VsNone)
	}
	if s.Value.Median != 15.4 || s.Value.Min != 11 || s.Value.Max != 22 || s.Value.N != 5 {
		t.Errorf("rate %+v, want median 15.4 of 11..22 over 5", s.Value)
	}
}

// A noisy mode gets an interval that holds its ratio of medians and
// spreads around it.
func TestSummarizeSideInterval(t *testing.T) {
	runs := append(sideRuns("none", variantCPUBound, 20, 20, 20, 20, 20, 20, 20, 20),
		sideRuns("ebpf", variantCPUBound, 16, 24, 18, 22, 20, 21, 19, 23)...)
	ss := summarizeSide(runs, []string{"none", "ebpf"})
	s := findSide(t, ss, "ebpf", variantCPUBound)
	if s.VsNone == nil || !near(s.VsNone.Median, 20.5/20) {
		t.Fatalf("ratio %+v, want %.4f", s.VsNone, 20.5/20)
	}
	if !(s.VsNone.Min < s.VsNone.Median && s.VsNone.Median < s.VsNone.Max) || s.VsNone.Min < 0.8 || s.VsNone.Max > 1.2 {
		t.Errorf("interval [%v, %v] around %v: want a spread inside the values' [0.8, 1.2]", s.VsNone.Min, s.VsNone.Max, s.VsNone.Median)
	}
	if again := findSide(t, summarizeSide(runs, []string{"none", "ebpf"}), "ebpf", variantCPUBound); *again.VsNone != *s.VsNone {
		t.Errorf("the interval changed between two summaries of the same runs: %+v, %+v", *s.VsNone, *again.VsNone)
	}
	if n := findSide(t, ss, "none", variantCPUBound); n.VsNone != nil {
		t.Errorf("none has a ratio to itself: %+v", n.VsNone)
	}
}

// Without none's streams of a variant there is no ratio, and rounds one
// mode lacks are left out of its ratio.
func TestSummarizeSideMissing(t *testing.T) {
	runs := append(sideRuns("ebpf", variantCPUBound, 20, 21),
		append(sideRuns("none", variantDefault, 10, 10), SideRun{Mode: "ebpf", Round: 2, Metric: variantDefault, Value: 12})...)
	ss := summarizeSide(runs, []string{"none", "ebpf"})
	if s := findSide(t, ss, "ebpf", variantCPUBound); s.VsNone != nil {
		t.Errorf("a ratio without none's streams: %+v", s.VsNone)
	}
	if s := findSide(t, ss, "ebpf", variantDefault); s.VsNone == nil || !near(s.VsNone.Median, 1.2) || s.VsNone.N != 1 {
		t.Errorf("ratio over the one shared round: %+v, want 1.2 over 1", s.VsNone)
	}
}

func TestRenderSideBySide(t *testing.T) {
	r := syntheticResults()
	runs := append(sideRuns("none", variantDefault, 10, 20, 10, 20),
		sideRuns("nftables", variantDefault, 9, 18, 9, 18)...)
	runs = append(runs, sideRuns("nftables", variantCPUBound, 25, 25, 25, 25)...)
	runs = append(runs, sideRuns("none", sideConnRate, 9000, 9000, 9000, 9000)...)
	runs = append(runs, sideRuns("nftables", sideConnRate, 8100, 8100, 8100, 8100)...)
	r.SideBySide = &SideBySide{N: 0, Rounds: 4, Runs: runs, Notes: []string{"ebpf: does not start"},
		Variants: map[string]string{variantDefault: "", variantCPUBound: "-C cubic -A 0,1"},
		Summary:  summarizeSide(runs, r.Config.Modes)}
	requireMarkdown(t, RenderMarkdown(r),
		"## Side by side at N = 0: connection rate, one TCP stream out through masquerade",
		"4 rounds, each measuring every mode back to back",
		"cpu-bound: iperf3 -C cubic -A 0,1",
		"| mode | conn/s | ×none | default Gbit/s | ×none | cpu-bound Gbit/s | ×none |",
		"| none | 9000 | – | 15.00 [10.00–20.00] | – | – | – |",
		"| nftables | 8100 | 0.90× [0.90–0.90] | 13.50 [9.00–18.00] | 0.90× [0.90–0.90] | 25.00 | – |",
		"- ebpf: does not start",
	)
}
