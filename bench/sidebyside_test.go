package bench

import (
	"math"
	"testing"
)

func streamRuns(mode, variant string, gbps ...float64) []StreamRun {
	var rs []StreamRun
	for i, v := range gbps {
		rs = append(rs, StreamRun{Mode: mode, Round: i + 1, Variant: variant, Gbps: v})
	}
	return rs
}

func findStream(t *testing.T, ss []StreamSummary, mode, variant string) StreamSummary {
	t.Helper()
	for _, s := range ss {
		if s.Mode == mode && s.Variant == variant {
			return s
		}
	}
	t.Fatalf("no summary for %s %s in %+v", mode, variant, ss)
	return StreamSummary{}
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

// The rounds are resampled together: a mode 10% faster than none in every
// round is 1.10x with no spread, however much the rounds differ.
func TestSummarizeStreamsPairsRounds(t *testing.T) {
	runs := append(streamRuns("none", variantDefault, 10, 20, 10, 20, 14),
		streamRuns("ebpf", variantDefault, 11, 22, 11, 22, 15.4)...)
	s := findStream(t, summarizeStreams(runs, []string{"none", "ebpf"}), "ebpf", variantDefault)
	if s.VsNone == nil || !near(s.VsNone.Median, 1.1) || !near(s.VsNone.Min, 1.1) || !near(s.VsNone.Max, 1.1) {
		t.Fatalf("ratio %+v, want 1.10 [1.10-1.10]", s.VsNone)
	}
	if s.Gbps.Median != 15.4 || s.Gbps.Min != 11 || s.Gbps.Max != 22 || s.Gbps.N != 5 {
		t.Errorf("rate %+v, want median 15.4 of 11..22 over 5", s.Gbps)
	}
}

// A noisy mode gets an interval that holds its ratio of medians and
// spreads around it.
func TestSummarizeStreamsInterval(t *testing.T) {
	runs := append(streamRuns("none", variantCPUBound, 20, 20, 20, 20, 20, 20, 20, 20),
		streamRuns("ebpf", variantCPUBound, 16, 24, 18, 22, 20, 21, 19, 23)...)
	ss := summarizeStreams(runs, []string{"none", "ebpf"})
	s := findStream(t, ss, "ebpf", variantCPUBound)
	if s.VsNone == nil || !near(s.VsNone.Median, 20.5/20) {
		t.Fatalf("ratio %+v, want %.4f", s.VsNone, 20.5/20)
	}
	if !(s.VsNone.Min < s.VsNone.Median && s.VsNone.Median < s.VsNone.Max) || s.VsNone.Min < 0.8 || s.VsNone.Max > 1.2 {
		t.Errorf("interval [%v, %v] around %v: want a spread inside the values' [0.8, 1.2]", s.VsNone.Min, s.VsNone.Max, s.VsNone.Median)
	}
	if again := findStream(t, summarizeStreams(runs, []string{"none", "ebpf"}), "ebpf", variantCPUBound); *again.VsNone != *s.VsNone {
		t.Errorf("the interval changed between two summaries of the same runs: %+v, %+v", *s.VsNone, *again.VsNone)
	}
	if n := findStream(t, ss, "none", variantCPUBound); n.VsNone != nil {
		t.Errorf("none has a ratio to itself: %+v", n.VsNone)
	}
}

// Without none's streams of a variant there is no ratio, and rounds one
// mode lacks are left out of its ratio.
func TestSummarizeStreamsMissing(t *testing.T) {
	runs := append(streamRuns("ebpf", variantCPUBound, 20, 21),
		append(streamRuns("none", variantDefault, 10, 10), StreamRun{Mode: "ebpf", Round: 2, Variant: variantDefault, Gbps: 12})...)
	ss := summarizeStreams(runs, []string{"none", "ebpf"})
	if s := findStream(t, ss, "ebpf", variantCPUBound); s.VsNone != nil {
		t.Errorf("a ratio without none's streams: %+v", s.VsNone)
	}
	if s := findStream(t, ss, "ebpf", variantDefault); s.VsNone == nil || !near(s.VsNone.Median, 1.2) || s.VsNone.N != 1 {
		t.Errorf("ratio over the one shared round: %+v, want 1.2 over 1", s.VsNone)
	}
}

func TestRenderSideBySide(t *testing.T) {
	r := syntheticResults()
	runs := append(streamRuns("none", variantDefault, 10, 20, 10, 20),
		streamRuns("nftables", variantDefault, 9, 18, 9, 18)...)
	runs = append(runs, streamRuns("nftables", variantCPUBound, 25, 25, 25, 25)...)
	r.SideBySide = &SideBySide{N: 0, Rounds: 4, Runs: runs, Notes: []string{"ebpf: does not start"},
		Variants: map[string]string{variantDefault: "", variantCPUBound: "-C cubic -A 0,1"},
		Summary:  summarizeStreams(runs, r.Config.Modes)}
	requireMarkdown(t, RenderMarkdown(r),
		"## One TCP stream out through masquerade, side by side at N = 0",
		"4 rounds, each one 1s stream per mode and variant",
		"cpu-bound: iperf3 -C cubic -A 0,1",
		"| mode | default Gbit/s | ×none | cpu-bound Gbit/s | ×none |",
		"| none | 15.00 [10.00–20.00] | – | – | – |",
		"| nftables | 13.50 [9.00–18.00] | 0.90× [0.90–0.90] | 25.00 | – |",
		"- ebpf: does not start",
	)
}
