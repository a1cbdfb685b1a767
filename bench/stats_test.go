package bench

import (
	"math"
	"testing"
	"time"
)

func TestSummarize(t *testing.T) {
	cases := []struct {
		in   []float64
		want Stat
	}{
		{nil, Stat{}},
		{[]float64{5}, Stat{Median: 5, Min: 5, Max: 5, N: 1}},
		{[]float64{3, 1, 2}, Stat{Median: 2, Min: 1, Max: 3, N: 3}},
		{[]float64{4, 1, 3, 2}, Stat{Median: 2.5, Min: 1, Max: 4, N: 4}},
		{[]float64{math.NaN(), 7, 9}, Stat{Median: 8, Min: 7, Max: 9, N: 2}},
	}
	for _, c := range cases {
		if got := summarize(c.in); got != c.want {
			t.Errorf("summarize(%v) = %+v, want %+v", c.in, got, c.want)
		}
	}
}

func TestSpread(t *testing.T) {
	if got := (Stat{Median: 100, Min: 95, Max: 105, N: 3}).Spread(); math.Abs(got-0.1) > 1e-9 {
		t.Errorf("spread = %v, want 0.1", got)
	}
	if got := (Stat{Median: 100, Min: 100, Max: 100, N: 1}).Spread(); got != 0 {
		t.Errorf("spread of one value = %v, want 0", got)
	}
}

func TestRankIndex(t *testing.T) {
	cases := []struct {
		n    int
		p    float64
		want int
	}{
		{0, 50, 0}, {1, 99, 0}, {10, 50, 4}, {10, 99, 9}, {100, 99, 98}, {100, 100, 99}, {100, 0, 0}, {1000, 99, 989},
	}
	for _, c := range cases {
		if got := rankIndex(c.n, c.p); got != c.want {
			t.Errorf("rankIndex(%d, %v) = %d, want %d", c.n, c.p, got, c.want)
		}
	}
	xs := make([]float64, 100)
	for i := range xs {
		xs[i] = float64(100 - i) // 100..1, unsorted
	}
	if got := percentile(xs, 99); got != 99 {
		t.Errorf("p99 of 1..100 = %v, want 99", got)
	}
	if got := percentile(xs, 50); got != 50 {
		t.Errorf("p50 of 1..100 = %v, want 50", got)
	}
}

func TestLoadPercentiles(t *testing.T) {
	r := loadResult{}
	for i := 100; i >= 1; i-- {
		r.Lat = append(r.Lat, time.Duration(i)*time.Microsecond)
	}
	p := r.percentiles(50, 99, 100)
	want := []time.Duration{50 * time.Microsecond, 99 * time.Microsecond, 100 * time.Microsecond}
	for i := range p {
		if p[i] != want[i] {
			t.Errorf("percentile %d = %v, want %v", i, p[i], want[i])
		}
	}
	if got := (loadResult{}).percentiles(50); got[0] != 0 {
		t.Errorf("percentile of nothing = %v, want 0", got[0])
	}
}

// TestRatiosPerRound checks that ratios are taken round by round and then
// summarized, so a round that was slow for every mode cancels out.
func TestRatiosPerRound(t *testing.T) {
	s := func(mode string, round int, v float64) Sample {
		return Sample{Mode: mode, Round: round, N: 0, Metrics: map[string]float64{mConnRate: v}}
	}
	samples := []Sample{
		s("none", 1, 1000), s("iptables-nft", 1, 800), s("nftables", 1, 900),
		s("none", 2, 500), s("iptables-nft", 2, 400), s("nftables", 2, 450), // a slow round
		s("none", 3, 1000), s("iptables-nft", 3, 800), s("nftables", 3, 900),
		{Mode: "nftables", Round: 4, Error: "boom"},
	}
	sum := summarizeSamples(samples, []string{"none", "iptables-nft", "nftables"}, []int{0})
	var got *Summary
	for i := range sum {
		if sum[i].Mode == "nftables" && sum[i].Metric == mConnRate {
			got = &sum[i]
		}
	}
	if got == nil {
		t.Fatal("no summary for nftables conn/s")
	}
	if got.Stat != (Stat{Median: 900, Min: 450, Max: 900, N: 3}) {
		t.Errorf("stat = %+v", got.Stat)
	}
	if got.VsNone == nil || got.VsNone.Median != 0.9 || got.VsNone.Min != 0.9 || got.VsNone.Max != 0.9 {
		t.Errorf("vs none = %+v, want 0.9 in every round", got.VsNone)
	}
	if got.VsIptablesNft == nil || got.VsIptablesNft.Median != 1.125 {
		t.Errorf("vs iptables-nft = %+v, want 1.125", got.VsIptablesNft)
	}
	for _, x := range sum {
		if x.Metric == mConnErrors && x.VsNone != nil {
			t.Errorf("conn errors got a ratio: %+v", x)
		}
	}
}
