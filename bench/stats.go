package bench

import (
	"math"
	"slices"
	"sort"
)

// Stat is the centre and spread of one metric over the rounds.
type Stat struct {
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
	N      int     `json:"n"`
}

// Spread returns (max-min)/median: 0.05 means the rounds spanned 5% of
// the median. It is 0 for fewer than two values or a zero median.
func (s Stat) Spread() float64 {
	if s.N < 2 || s.Median == 0 {
		return 0
	}
	return (s.Max - s.Min) / math.Abs(s.Median)
}

// summarize returns the median, minimum and maximum of xs, ignoring NaNs.
func summarize(xs []float64) Stat {
	v := make([]float64, 0, len(xs))
	for _, x := range xs {
		if !math.IsNaN(x) {
			v = append(v, x)
		}
	}
	if len(v) == 0 {
		return Stat{}
	}
	sort.Float64s(v)
	return Stat{Median: median(v), Min: v[0], Max: v[len(v)-1], N: len(v)}
}

// median of sorted values: the middle one, or the mean of the two middle
// ones.
func median(sorted []float64) float64 {
	n := len(sorted)
	if n == 0 {
		return math.NaN()
	}
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

// rankIndex is the index of the p-th percentile (0..100) in n sorted values,
// by nearest rank: the smallest value with at least p% of values at or
// below it.
func rankIndex(n int, p float64) int {
	if n <= 0 {
		return 0
	}
	i := int(math.Ceil(p/100*float64(n))) - 1
	return min(max(i, 0), n-1)
}

// percentile returns the p-th percentile of xs by nearest rank.
func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	sort.Float64s(s)
	return s[rankIndex(len(s), p)]
}

// Summary is one metric of one mode at one N over the rounds, with its
// ratios to the two references computed round by round (value of this
// mode divided by the reference's value in the same round and at the same
// N), so that drift between rounds cancels.
type Summary struct {
	Mode          string `json:"mode"`
	N             int    `json:"n"`
	Metric        string `json:"metric"`
	Stat          Stat   `json:"stat"`
	VsNone        *Stat  `json:"vs_none,omitempty"`
	VsIptablesNft *Stat  `json:"vs_iptables_nft,omitempty"`
}

// The references ratios are computed against.
const (
	refNone        = "none"
	refIptablesNft = "iptables-nft"
)

// summarizeSamples groups the samples by mode, N and metric. Failed
// samples count for nothing. The order follows modes, then N, then the
// metric table.
func summarizeSamples(samples []Sample, modes []string, ns []int) []Summary {
	type key struct {
		mode string
		n    int
	}
	byKey := map[key][]Sample{}
	for _, s := range samples {
		if s.Error == "" {
			byKey[key{s.Mode, s.N}] = append(byKey[key{s.Mode, s.N}], s)
		}
	}
	value := func(mode string, n, round int, metric string) (float64, bool) {
		for _, s := range byKey[key{mode, n}] {
			if s.Round == round {
				v, ok := s.Metrics[metric]
				return v, ok
			}
		}
		return 0, false
	}
	ratios := func(ref string, mode string, n int, metric string) *Stat {
		var rs []float64
		for _, s := range byKey[key{mode, n}] {
			v, ok := s.Metrics[metric]
			r, rok := value(ref, n, s.Round, metric)
			if ok && rok && r != 0 {
				rs = append(rs, v/r)
			}
		}
		if len(rs) == 0 {
			return nil
		}
		st := summarize(rs)
		return &st
	}
	var out []Summary
	for _, mode := range modes {
		for _, n := range ns {
			ss := byKey[key{mode, n}]
			if len(ss) == 0 {
				continue
			}
			for _, m := range metricDefs {
				var xs []float64
				for _, s := range ss {
					if v, ok := s.Metrics[m.Key]; ok {
						xs = append(xs, v)
					}
				}
				if len(xs) == 0 {
					continue
				}
				sum := Summary{Mode: mode, N: n, Metric: m.Key, Stat: summarize(xs)}
				if m.Ratio {
					sum.VsNone = ratios(refNone, mode, n, m.Key)
					sum.VsIptablesNft = ratios(refIptablesNft, mode, n, m.Key)
				}
				out = append(out, sum)
			}
		}
	}
	return out
}
