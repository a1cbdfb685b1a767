package agent

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"runtime/debug"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/portcullis/portcullis/dataplane"
)

// collector reads the reconciler and the backend at scrape time.
type collector struct {
	rec                              *dataplane.Reconciler
	runner                           *dataplane.SyncRunner // nil: resync off
	resyncs, resyncFails, repairs    *prometheus.Desc
	changes, errors, fullSyncs       *prometheus.Desc
	objects, drops, flows, fill, max *prometheus.Desc
	buildInfo                        *prometheus.Desc
	latency                          *prometheus.HistogramVec
}

func newCollector(rec *dataplane.Reconciler, runner *dataplane.SyncRunner) *collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("portcullis_"+name, help, labels, nil)
	}
	c := &collector{
		rec:         rec,
		runner:      runner,
		resyncs:     d("resyncs_total", "Full resyncs of the whole state by the sync runner, by reason: periodic, failure (a change failed in the backend), retry.", "reason"),
		resyncFails: d("resync_failures_total", "Resyncs that failed (retried with backoff)."),
		repairs:     d("repairs_total", "Resyncs that put the dataplane back in order: after a failed change or resync, or finding it changed behind the agent's back (drift)."),
		changes:     d("changes_total", "Changes applied through the API."),
		errors:      d("reconcile_errors_total", "Changes that failed and were undone."),
		fullSyncs:   d("full_syncs_total", "Full resyncs of the backend."),
		objects:     d("objects", "Objects in the desired state.", "kind"),
		drops:       d("drops_total", "Packets dropped by the dataplane.", "reason", "endpoint"),
		buildInfo:   d("build_info", "Always 1: the agent's version, the Go it was built with, and the backend in use.", "version", "goversion", "backend"),
		flows:       d("flows", "Connection-tracking entries."),
		fill:        d("table_entries", "Entries in a backend table (map or set).", "table"),
		max:         d("table_max_entries", "Capacity of a backend table.", "table"),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "portcullis_programming_seconds",
			Help:    "Time from an API change to the kernel, by kind and result.",
			Buckets: prometheus.ExponentialBuckets(50e-6, 2, 18),
		}, []string{"kind", "result"}),
	}
	addObserver(rec, func(kind string, took time.Duration, err error) {
		result := "ok"
		if err != nil {
			result = "error"
		}
		c.latency.WithLabelValues(kind, result).Observe(took.Seconds())
	})
	return c
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.changes, c.errors, c.fullSyncs, c.objects, c.drops, c.flows, c.fill, c.max, c.buildInfo,
		c.resyncs, c.resyncFails, c.repairs} {
		ch <- d
	}
	c.latency.Describe(ch)
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	st := c.rec.Stats()
	ch <- prometheus.MustNewConstMetric(c.changes, prometheus.CounterValue, float64(st.Changes))
	ch <- prometheus.MustNewConstMetric(c.errors, prometheus.CounterValue, float64(st.Errors))
	ch <- prometheus.MustNewConstMetric(c.fullSyncs, prometheus.CounterValue, float64(st.FullSyncs))
	if c.runner != nil {
		ss := c.runner.Stats()
		for reason, n := range ss.Syncs {
			ch <- prometheus.MustNewConstMetric(c.resyncs, prometheus.CounterValue, float64(n), reason)
		}
		ch <- prometheus.MustNewConstMetric(c.resyncFails, prometheus.CounterValue, float64(ss.Failures))
		ch <- prometheus.MustNewConstMetric(c.repairs, prometheus.CounterValue, float64(ss.Repairs))
	}
	for kind, n := range c.rec.Counts() {
		ch <- prometheus.MustNewConstMetric(c.objects, prometheus.GaugeValue, float64(n), kind)
	}
	c.latency.Collect(ch)
	be := c.rec.Backend()
	ch <- prometheus.MustNewConstMetric(c.buildInfo, prometheus.GaugeValue, 1, version(), runtime.Version(), be.Name())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if dc, ok := be.(dataplane.DropCounter); ok {
		if drops, err := dc.Drops(ctx); err == nil {
			for _, d := range drops {
				ch <- prometheus.MustNewConstMetric(c.drops, prometheus.CounterValue, float64(d.Packets), d.Reason, d.Endpoint)
			}
		}
	}
	if ft, ok := be.(dataplane.FlowTable); ok {
		if flows, err := ft.Flows(ctx, dataplane.FlowFilter{}); err == nil {
			ch <- prometheus.MustNewConstMetric(c.flows, prometheus.GaugeValue, float64(len(flows)))
		}
	}
	if fr, ok := be.(dataplane.FillReporter); ok {
		for _, f := range fr.Fill() {
			ch <- prometheus.MustNewConstMetric(c.fill, prometheus.GaugeValue, float64(f.Entries), f.Name)
			if f.Max > 0 {
				ch <- prometheus.MustNewConstMetric(c.max, prometheus.GaugeValue, float64(f.Max), f.Name)
			}
		}
	}
}

// serveMetrics serves /metrics, and healthz on /healthz, on addr until ctx
// ends.
func serveMetrics(ctx context.Context, addr string, rec *dataplane.Reconciler, runner *dataplane.SyncRunner, healthz http.Handler, log *slog.Logger) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(newCollector(rec, runner), prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.Handle("GET /healthz", healthz)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	go func() {
		if err := srv.Serve(l); err != nil && err != http.ErrServerClosed {
			log.Error("metrics server", "err", err)
		}
	}()
	log.Info("serving metrics", "addr", l.Addr().String())
	return nil
}

// version is the agent's module version, or for a build from a work tree
// its commit ("devel+0123abcd4567", "-dirty" with uncommitted changes).
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	rev, dirty := "", ""
	for _, s := range bi.Settings {
		switch {
		case s.Key == "vcs.revision" && len(s.Value) >= 12:
			rev = "+" + s.Value[:12]
		case s.Key == "vcs.modified" && s.Value == "true":
			dirty = "-dirty"
		}
	}
	return "devel" + rev + dirty
}
