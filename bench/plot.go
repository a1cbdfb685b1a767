package bench

import (
	"fmt"
	"path/filepath"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// plotSpec is one PNG: a metric against N, one line per mode.
type plotSpec struct {
	file, title, ylabel, metric string
	log                         bool // logarithmic y axis (values must be > 0)
	scale                       float64
}

var plotSpecs = []plotSpec{
	{"conn_rate.png", "New TCP connections per second through a published port", "connections/s", mConnRate, true, 1},
	{"add_latency.png", "Time to add one more mapping", "ms", mAddMs, true, 1},
	{"program_bulk.png", "Time to program N mappings from empty (bulk path)", "s", mBulkS, true, 1},
}

// writePlots draws every plot with data; it returns the files written.
func writePlots(r *Results, dir string) ([]string, error) {
	var files []string
	for _, ps := range plotSpecs {
		p, ok := plotMetric(r, ps)
		if !ok {
			continue
		}
		path := filepath.Join(dir, ps.file)
		if err := p.Save(9*vg.Inch, 5.5*vg.Inch, path); err != nil {
			return files, fmt.Errorf("save %s: %w", path, err)
		}
		files = append(files, path)
	}
	return files, nil
}

// spreadXYs are medians at x with their [min, max] as error bars.
type spreadXYs struct {
	plotter.XYs
	low, high []float64
}

func (s spreadXYs) YError(i int) (float64, float64) {
	return s.XYs[i].Y - s.low[i], s.high[i] - s.XYs[i].Y
}

// plotMetric draws ps.metric against N. N is on an even categorical axis
// (0, 1k, 10k, 100k are equally spaced), since 0 has no logarithm.
func plotMetric(r *Results, ps plotSpec) (*plot.Plot, bool) {
	p := plot.New()
	p.Title.Text = ps.title
	p.X.Label.Text = "N: mappings published ahead of the measured one"
	p.Y.Label.Text = ps.ylabel
	var ticks []plot.Tick
	for i, n := range r.Config.Ns {
		ticks = append(ticks, plot.Tick{Value: float64(i), Label: shortN(n)})
	}
	p.X.Tick.Marker = plot.ConstantTicks(ticks)
	p.X.Min, p.X.Max = -0.3, float64(len(r.Config.Ns)-1)+0.3
	if ps.log {
		p.Y.Scale = plot.LogScale{}
		p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	}
	p.Legend.Top = true
	p.Add(plotter.NewGrid())
	drawn := false
	top := 0.0
	for i, mi := range r.Modes {
		var pts spreadXYs
		for x, n := range r.Config.Ns {
			s, ok := r.find(mi.Name, n, ps.metric)
			if !ok || s.Stat.N == 0 || (ps.log && s.Stat.Min <= 0) {
				continue
			}
			pts.XYs = append(pts.XYs, plotter.XY{X: float64(x), Y: s.Stat.Median * ps.scale})
			pts.low = append(pts.low, s.Stat.Min*ps.scale)
			pts.high = append(pts.high, s.Stat.Max*ps.scale)
		}
		if len(pts.XYs) == 0 {
			continue
		}
		l, sc, err := plotter.NewLinePoints(pts.XYs)
		if err != nil {
			continue
		}
		l.Color = plotutil.Color(i)
		l.Width = vg.Points(1.5)
		sc.Color = plotutil.Color(i)
		sc.Shape = plotutil.Shape(i)
		p.Add(l, sc)
		if r.Config.Rounds > 1 {
			if eb, err := plotter.NewYErrorBars(pts); err == nil {
				eb.Color = plotutil.Color(i)
				p.Add(eb)
			}
		}
		p.Legend.Add(mi.Name, l, sc)
		drawn = true
		for _, h := range pts.high {
			top = max(top, h)
		}
	}
	// Room above the highest point for the legend.
	if ps.log {
		p.Y.Max = max(p.Y.Max, top*3)
	} else {
		p.Y.Min, p.Y.Max = 0, max(p.Y.Max, top*1.3)
	}
	return p, drawn
}

// shortN prints 1000 as 1k and 100000 as 100k.
func shortN(n int) string {
	switch {
	case n >= 1000000 && n%1000000 == 0:
		return fmt.Sprintf("%dM", n/1000000)
	case n >= 1000 && n%1000 == 0:
		return fmt.Sprintf("%dk", n/1000)
	}
	return fmt.Sprint(n)
}
