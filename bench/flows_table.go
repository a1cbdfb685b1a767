package bench

import (
	"fmt"
	"sort"
	"strings"
)

// renderFlows writes the flow table scenario and the churn run, when they
// ran.
func renderFlows(b *strings.Builder, fb *FlowBench, ch *Churn) {
	w := func(format string, args ...any) { fmt.Fprintf(b, format+"\n", args...) }
	if fb != nil {
		w("")
		w("## %d concurrent NAT flows (eBPF)", fb.Flows)
		w("")
		w("UDP datagrams and TCP SYNs from %d containers to %d addresses × %d ports, one packet per flow, masqueraded; "+
			"pc_ct sized to %d entries (--ct-entries) so that the flows fill it to %.0f%%, with room for what the measurements add on top "+
			"(the connection-rate runs' and new-flow batches' flows).",
			flowContainers, flowDsts, flowDstPorts, fb.CTEntries, 100*flowFill)
		w("")
		w("New flows and connections are measured on this instance and on an empty one with a table of the same size, in turn, %d rounds "+
			"(median [min–max]; ×empty is the median of the rounds' ratios).", altRounds)
		w("")
		if fb.Error != "" {
			w("FAILED: %s", fb.Error)
		} else {
			rows := [][]string{
				{"agent start (N = 0), of it full sync", fmt.Sprintf("%.2f s, %.3f s", fb.StartSeconds, fb.FullSyncSeconds)},
				{"fill: time, flows/s of the first and the last tenth", fmt.Sprintf("%.1f s, %.0f/s, %.0f/s", fb.FillSeconds, first(fb.FillRates), last(fb.FillRates))},
				{"pc_ct entries after the fill, after the turns", fmt.Sprintf("%d of %d (%.1f%%), %d (%.1f%%)", fb.Entries, fb.CTEntries,
					100*float64(fb.Entries)/float64(fb.CTEntries), fb.EntriesAfter, 100*float64(fb.EntriesAfter)/float64(fb.CTEntries))},
				{"kernel memory: pc_ct, all maps", fmt.Sprintf("%.0f MB, %.0f MB", mb(fb.CTMemlock), mb(fb.MapsMemlock))},
				{"agent RSS: empty, held after a GC pass, peak", fmt.Sprintf("%.0f MB, %.0f MB, %.0f MB", mb(fb.RSSEmpty), mb(fb.RSSHeld), mb(fb.RSSPeak))},
				{"GC pass: agent CPU, entries read", fmt.Sprintf("%.2f s, %d", fb.GCPassCPU, fb.GCEntries)},
				{"agent CPU from the fill to the end of that pass", fmt.Sprintf("%.2f s in %.0f s (%.1f%% of a CPU; at one pass per 30 s: %.1f%%)", fb.GCCPU, fb.GCWindow, 100*ratio(fb.GCCPU, fb.GCWindow), 100*fb.GCPassCPU/30)},
				{"new flows/s (generator batches): empty, at the fill, ×empty", fmt.Sprintf("%s, %s, %.2f×", medRange(fb.NewFlowsEmpty), medRange(fb.NewFlowsFull), medianRatio(fb.NewFlowsFull, fb.NewFlowsEmpty))},
				{"conn/s through a published port: empty, at the fill, ×empty", fmt.Sprintf("%s, %s, %.2f×; %d failed at the fill", medRange(fb.ConnRatesEmpty), medRange(fb.ConnRatesFull), medianRatio(fb.ConnRatesFull, fb.ConnRatesEmpty), fb.ConnErrors)},
				{"overfill: flows sent past the room, conntrack-full drops", fmt.Sprintf("%d, %d", fb.Overfill, fb.FullDrops)},
				{"when full: held connections (in and out)", fb.Established},
				{"when full: a new connection, drops it added", fmt.Sprintf("%s; %d", fb.NewRefused, fb.RefusedCounted)},
			}
			writeTable(b, []string{"", "value"}, rows)
		}
		for _, n := range fb.Notes {
			w("- %s", n)
		}
	}
	if ch != nil {
		w("")
		w("## Short-lived connections for %s (eBPF)", fmtSeconds(ch.Seconds))
		w("")
		if ch.Error != "" {
			w("FAILED: %s", ch.Error)
			return
		}
		var drops []string
		for k, v := range ch.Drops {
			drops = append(drops, fmt.Sprintf("%s %d", k, v))
		}
		sort.Strings(drops)
		if len(drops) == 0 {
			drops = []string{"none"}
		}
		w("Connections opened and closed at full speed, in through a published port from the external host and out through masquerade from a container; "+
			"pc_ct (default size, %d entries) counted every second, from the agent's first garbage collection on.", ch.CTEntries)
		w("")
		rows := [][]string{
			{"connections in, out (conn/s)", fmt.Sprintf("%d, %d (%.0f/s)", ch.In, ch.Out, float64(ch.In+ch.Out)/ch.Seconds)},
			{"failed in, out", fmt.Sprintf("%d, %d", ch.InErrors, ch.OutErrors)},
			{"pc_ct peak: first, middle, last third", fmt.Sprintf("%d, %d, %d", ch.maxFill(0, 1.0/3), ch.maxFill(1.0/3, 2.0/3), ch.maxFill(2.0/3, 1.01))},
			{"bounded (last third's peak within 10% of the middle's)", ch.bounded()},
			{"drops during the run", strings.Join(drops, ", ")},
		}
		writeTable(b, []string{"", "value"}, rows)
		for _, n := range ch.Notes {
			w("- %s", n)
		}
	}
}

// medRange is median [min–max] of xs, whole numbers.
func medRange(xs []float64) string {
	if len(xs) == 0 {
		return "-"
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return fmt.Sprintf("%.0f [%.0f–%.0f]", median(s), s[0], s[len(s)-1])
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

func fmtSeconds(s float64) string {
	if s >= 60 {
		return fmt.Sprintf("%.0f minutes", s/60)
	}
	return fmt.Sprintf("%.0f s", s)
}
