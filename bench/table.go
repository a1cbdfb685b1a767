package bench

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// JSON returns the results as indented JSON.
func (r *Results) JSON() ([]byte, error) {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// RenderMarkdown renders the results as markdown tables: the traffic suite
// at the first N, the connection rate against N, the control plane
// against N, the footprint at the largest N, then what each mode is.
// Values are medians over the rounds with [min–max] when rounds > 1;
// ×none and ×ipt-nft are the per-round ratios' medians (value of the mode
// over value of the reference in the same round).
func RenderMarkdown(r *Results) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	cfg := r.Config
	w("# pcbench results")
	w("")
	w("%s, %d rounds, %v per measurement, %d connection-rate clients, N = %s mappings published ahead of the measured one. "+
		"Machine: %s, %d CPUs, %.0f GB, kernel %s. Run took %s.",
		r.Started.UTC().Format("2006-01-02 15:04 UTC"), cfg.Rounds, cfg.Duration, cfg.Clients, joinInts(cfg.Ns),
		r.Machine.CPU, r.Machine.CPUs, r.Machine.MemoryGB, r.Machine.Kernel, (time.Duration(r.Seconds) * time.Second).String())
	w("")
	w("Medians over the rounds%s; ×none and ×ipt-nft are ratios to the reference taken round by round, then the median.",
		map[bool]string{true: " with [min–max]", false: ""}[cfg.Rounds > 1])
	w("")

	n0 := cfg.Ns[0]
	w("## Traffic at N = %d", n0)
	w("")
	cols := []string{mConnRate, mConnP50, mConnP99, mCPUPerConn, mRRP50, mRRP99, mEgress, mEgress1CPU, mIngress, mC2C, mUDP}
	header := []string{"mode", "conn/s", "×none", "×ipt-nft"}
	for _, c := range cols[1:] {
		m, _ := metricByKey(c)
		header = append(header, m.Label)
	}
	rows := [][]string{}
	for _, mi := range r.Modes {
		if isEngine(mi.Name) {
			continue // in the Docker engine section
		}
		if mi.Unavailable != "" {
			rows = append(rows, unavailableRow(mi, len(header)))
			continue
		}
		row := []string{mi.Name}
		s, ok := r.find(mi.Name, n0, mConnRate)
		row = append(row, cell(s, ok, mConnRate, cfg.Rounds), ratioCell(s.VsNone), ratioCell(s.VsIptablesNft))
		for _, c := range cols[1:] {
			s, ok := r.find(mi.Name, n0, c)
			row = append(row, cell(s, ok, c, cfg.Rounds))
		}
		rows = append(rows, row)
	}
	writeTable(&b, header, rows)

	w("")
	w("## Single TCP stream against none at N = %d (median of the round-by-round ratios [min–max])", n0)
	w("")
	streams := []string{mEgress, mEgress1CPU, mIngress, mC2C}
	header = []string{"mode"}
	for _, c := range streams {
		m, _ := metricByKey(c)
		header = append(header, strings.TrimSuffix(m.Label, " Gbit/s"))
	}
	rows = nil
	for _, mi := range r.Modes {
		if mi.Unavailable != "" || mi.Name == "none" || isEngine(mi.Name) {
			continue
		}
		row := []string{mi.Name}
		for _, c := range streams {
			s, _ := r.find(mi.Name, n0, c)
			row = append(row, ratioRange(s.VsNone))
		}
		rows = append(rows, row)
	}
	writeTable(&b, header, rows)
	if sb := r.SideBySide; sb != nil {
		renderSideBySide(&b, sb, cfg.Duration)
	}
	renderDockerAll(&b, r)

	if len(cfg.Ns) > 1 {
		w("")
		w("## Connection rate against N (conn/s, ×ipt-nft)")
		w("")
		writeTable(&b, nHeader(cfg.Ns), byN(r, mConnRate, func(s Summary) string {
			return fmtValue(s.Stat.Median, 0) + " (" + ratioCell(s.VsIptablesNft) + ")"
		}))
	}

	if cfg.Adds > 0 {
		w("")
		w("## Add one more mapping at N (ms, p50 / p99 of up to %d adds per round within %v)", cfg.Adds, cfg.AddBudget)
		w("")
		writeTable(&b, nHeader(cfg.Ns), byN(r, mAddMs, func(s Summary) string {
			p99, ok := r.find(s.Mode, s.N, mAddP99Ms)
			return cell(s, true, mAddMs, cfg.Rounds) + " / " + cell(p99, ok, mAddP99Ms, cfg.Rounds)
		}))
	}

	w("")
	w("## Program N mappings from empty, bulk path (s)")
	w("")
	writeTable(&b, nHeader(cfg.Ns), byN(r, mBulkS, func(s Summary) string { return cell(s, true, mBulkS, cfg.Rounds) }))

	if cfg.PerCall > 0 {
		w("")
		w("## Program %d mappings from empty, one call per mapping (s, first round)", cfg.PerCall)
		w("")
		var rows [][]string
		for _, mi := range r.Modes {
			if s, ok := r.find(mi.Name, n0, mPerCallS); ok {
				rows = append(rows, []string{mi.Name, cell(s, ok, mPerCallS, 1), fmtValue(s.Stat.Median/float64(cfg.PerCall)*1000, 2)})
			}
		}
		writeTable(&b, []string{"mode", "total s", "ms per mapping"}, rows)
	}

	w("")
	w("## Footprint against N")
	w("")
	if rows := byN(r, mRSS, func(s Summary) string { return fmtValue(s.Stat.Median, 1) }); len(rows) > 0 {
		w("portcullisd resident memory (MB):")
		w("")
		writeTable(&b, nHeader(cfg.Ns), rows)
		w("")
	}
	if rows := byN(r, mBPFMem, func(s Summary) string { return fmtValue(s.Stat.Median, 0) }); len(rows) > 0 {
		w("BPF map memory held by portcullisd (KB):")
		w("")
		writeTable(&b, nHeader(cfg.Ns), rows)
		w("")
	}
	w("Ruleset in the node, as iptables-save or nft list ruleset prints it (KB / rules or lines; references up to N=%d):", footprintMaxN)
	w("")
	writeTable(&b, nHeader(cfg.Ns), byN(r, mRulesetKB, func(s Summary) string {
		v := fmtValue(s.Stat.Median, 0)
		if rs, ok := r.find(s.Mode, s.N, mRules); ok {
			v += " / " + fmtValue(rs.Stat.Median, 0)
		}
		return v
	}))
	renderMemory(&b, r.Memory)
	renderFlows(&b, r.Flows, r.Churn)

	if fails := failures(r); len(fails) > 0 {
		w("")
		w("## Failed instances")
		w("")
		for _, f := range fails {
			w("- %s", f)
		}
	}
	w("")
	w("## Modes")
	w("")
	for _, mi := range r.Modes {
		w("- **%s**: %s", mi.Name, mi.Description)
	}
	return b.String()
}

func unavailableRow(mi ModeInfo, cols int) []string {
	row := make([]string, cols)
	row[0] = mi.Name
	why := firstLine(mi.Unavailable)
	if len(why) > 160 {
		why = why[:160] + "…"
	}
	row[1] = "unavailable: " + why
	return row
}

func nHeader(ns []int) []string {
	h := []string{"mode"}
	for _, n := range ns {
		h = append(h, "N="+strconv.Itoa(n))
	}
	return h
}

// byN returns one row per available mode with f of the metric at each N.
func byN(r *Results, metric string, f func(Summary) string) [][]string {
	var rows [][]string
	for _, mi := range r.Modes {
		if mi.Unavailable != "" {
			continue
		}
		row := []string{mi.Name}
		found := false
		for _, n := range r.Config.Ns {
			s, ok := r.find(mi.Name, n, metric)
			if !ok {
				row = append(row, "–")
				continue
			}
			found = true
			row = append(row, f(s))
		}
		if found {
			rows = append(rows, row)
		}
	}
	return rows
}

// cell formats a median with its spread.
func cell(s Summary, ok bool, metric string, rounds int) string {
	if !ok {
		return "–"
	}
	st := s.Stat
	if rounds < 2 {
		st.Min, st.Max = st.Median, st.Median // one round: no spread to show
	}
	m, _ := metricByKey(metric)
	return statCell(st, m.Digits)
}

// statCell prints s with the given decimals: the median, and [min–max]
// when the values differ.
func statCell(s Stat, digits int) string {
	if s.N == 0 {
		return "–"
	}
	v := fmtValue(s.Median, digits)
	if s.N > 1 && s.Min != s.Max {
		v += " [" + fmtValue(s.Min, digits) + "–" + fmtValue(s.Max, digits) + "]"
	}
	return v
}

func ratioCell(s *Stat) string {
	if s == nil || s.N == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f×", s.Median)
}

// ratioRange is ratioCell with the spread over the rounds.
func ratioRange(s *Stat) string {
	if s == nil || s.N < 2 {
		return ratioCell(s)
	}
	return fmt.Sprintf("%.2f× [%.2f–%.2f]", s.Median, s.Min, s.Max)
}

// fmtValue prints v with the given decimals, but keeps three significant
// digits for small values.
func fmtValue(v float64, digits int) string {
	if math.IsNaN(v) {
		return "–"
	}
	a := math.Abs(v)
	if a != 0 && a < 1 && digits < 3 {
		digits = 3
	}
	return strconv.FormatFloat(v, 'f', digits, 64)
}

func writeTable(b *strings.Builder, header []string, rows [][]string) {
	if len(rows) == 0 {
		b.WriteString("(no data)\n")
		return
	}
	line := func(cells []string) {
		b.WriteString("| " + strings.Join(cells, " | ") + " |\n")
	}
	line(header)
	sep := make([]string, len(header))
	for i := range sep {
		sep[i] = "---"
		if i > 0 {
			sep[i] = "---:"
		}
	}
	line(sep)
	for _, r := range rows {
		for len(r) < len(header) {
			r = append(r, "")
		}
		line(r)
	}
}

func joinInts(ns []int) string {
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ", ")
}

func failures(r *Results) []string {
	var out []string
	for _, s := range r.Samples {
		if s.Error != "" && !strings.HasPrefix(s.Error, "unavailable: ") && !strings.HasPrefix(s.Error, "skipped: ") {
			out = append(out, fmt.Sprintf("round %d, %s, N=%d: %s", s.Round, s.Mode, s.N, firstLine(s.Error)))
		}
	}
	return out
}

// renderSideBySide is the side-by-side comparison: each metric as median
// [min–max] over the rounds, and the ratio of the medians to none's with
// its 90% bootstrap interval.
func renderSideBySide(b *strings.Builder, sb *SideBySide, d time.Duration) {
	fmt.Fprintf(b, "\n## Side by side at N = %d: connection rate, one TCP stream out through masquerade\n\n", sb.N)
	fmt.Fprintf(b, "Every mode's instance alive at once; %d rounds, each measuring every mode back to back in a rotated order: "+
		"the connection rate for %v, then one %v stream two ways. "+
		"default: iperf3 as it comes (the node's congestion control, the scheduler's placement); "+
		"cpu-bound: iperf3 %s (a window-filling congestion control, client on CPU 0, server on CPU 1: the path's cost per byte sets the rate). "+
		"Values: median [min–max]; ×none: median over none's median [90%% interval, rounds resampled].\n\n",
		sb.Rounds, d, d, sb.Variants[variantCPUBound])
	digits := map[string]int{sideConnRate: 0, variantDefault: 2, variantCPUBound: 2}
	var rows [][]string
	index := map[string]int{}
	for _, s := range sb.Summary {
		col := 1 + 2*slices.Index(sideMetrics, s.Metric)
		if col < 1 {
			continue
		}
		i, ok := index[s.Mode]
		if !ok {
			i = len(rows)
			index[s.Mode] = i
			rows = append(rows, []string{s.Mode, "–", "–", "–", "–", "–", "–"})
		}
		rows[i][col] = statCell(s.Value, digits[s.Metric])
		rows[i][col+1] = ratioRange(s.VsNone)
	}
	writeTable(b, []string{"mode", "conn/s", "×none", "default Gbit/s", "×none", "cpu-bound Gbit/s", "×none"}, rows)
	for _, n := range sb.Notes {
		fmt.Fprintf(b, "\n- %s", n)
	}
	if len(sb.Notes) > 0 {
		b.WriteString("\n")
	}
}
