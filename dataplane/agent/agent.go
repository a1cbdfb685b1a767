// Package agent wires portcullisd together: backend choice, state, the
// reconciler and the API server.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"time"

	"github.com/portcullis/portcullis/dataplane"
	"github.com/portcullis/portcullis/dataplane/api"
	"github.com/portcullis/portcullis/dataplane/docker"
	"github.com/portcullis/portcullis/dataplane/netdev"
	"github.com/portcullis/portcullis/dataplane/store"
)

// Config holds portcullisd's flags.
type Config struct {
	Socket   string
	StateDir string
	Backend  string // auto, ebpf, nftables
	BPFFS    string // bpffs directory for pins
	Attach   string // eBPF attach mode: auto, tcx, tc
	// FastPath lets the eBPF programs redirect translated traffic straight
	// between the uplink and the container, skipping the bridge and netfilter.
	FastPath bool
	// NATPorts is where eBPF SNAT picks source ports: "MIN-MAX", or "auto"
	// (or empty) for the longest run of unprivileged ports outside the
	// node's ephemeral ports (net.ipv4.ip_local_port_range).
	NATPorts string
	// JournalSync is how soon a change's journal line is fdatasynced; 0
	// syncs before the API answers. Either way the line is written before
	// the answer, so it survives the agent being killed.
	JournalSync time.Duration
	// CTEntries, CT6Entries and NAT6Entries size the eBPF flow tables
	// pc_flows4, pc_track6 and pc_flows6 (entries; 0 takes the default). They are
	// preallocated: their memory is taken at load, whatever they hold.
	CTEntries, CT6Entries, NAT6Entries uint64
	// MetricsAddr, when set, is a TCP address to serve Prometheus metrics on.
	MetricsAddr string
	// ResyncPeriod is how often the whole state is re-applied to repair
	// drift (dataplane.SyncRunner); 0 turns that off.
	ResyncPeriod time.Duration
	// Docker, when set, is a Docker engine's address (unix:///var/run/docker.sock)
	// to follow: its networks, containers, published ports and links.
	Docker string
	// DockerDefaults are icc and masquerade for docker0 (dockerd's --icc and
	// --ip-masq, which it cannot honour with its iptables off).
	DockerDefaults docker.Defaults
}

// agentGCPercent is the Go GC's percent unless GOGC is set.
const agentGCPercent = 50

// Run serves until ctx ends. On the way out it leaves the kernel state as it
// is, so a restart or an upgrade drops no flow.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	if os.Getenv("GOGC") == "" {
		// The agent's heap is nearly all live state (100,000 mappings:
		// some 35 MB); Go's default lets it grow to twice that between
		// collections. Half as much headroom, for collections twice as
		// often, each of a few milliseconds. GOGC in the environment wins.
		debug.SetGCPercent(agentGCPercent)
	}
	if cfg.Docker != "" {
		// Before anything is touched: with dockerd's own rules in place the
		// two would fight over every packet.
		if err := docker.CheckIPTables(); err != nil {
			return fmt.Errorf("--docker %s: %w", cfg.Docker, err)
		}
	}
	st, err := store.Open(cfg.StateDir, store.SyncInterval(cfg.JournalSync), store.Logger(log))
	if err != nil {
		return err
	}
	defer func() {
		if err := st.Close(); err != nil {
			log.Error("close state journal", "err", err)
		}
	}()
	be, info, err := chooseBackend(cfg, log)
	if err != nil {
		return err
	}
	dev, err := netdev.New()
	if err != nil {
		return err
	}
	defer dev.Close()
	dev.SysctlFile = filepath.Join(cfg.StateDir, netdev.SysctlFileName)
	rec, err := dataplane.NewReconciler(be, dev, st, log)
	if err != nil {
		return fmt.Errorf("load state from %s: %w", cfg.StateDir, err)
	}
	// Metrics and /healthz answer from here on: a probe sees a long first
	// sync as 503 "starting", not as nothing listening.
	h := &health{}
	addObserver(rec, h.observe)
	var runner *dataplane.SyncRunner
	if cfg.ResyncPeriod > 0 {
		if runner, err = dataplane.NewSyncRunner(rec, cfg.ResyncPeriod, time.Second); err != nil {
			return fmt.Errorf("--resync-period: %w", err)
		}
	}
	if cfg.MetricsAddr != "" {
		if err := serveMetrics(ctx, cfg.MetricsAddr, rec, runner, h, log); err != nil {
			return fmt.Errorf("--metrics-addr %s: %w", cfg.MetricsAddr, err)
		}
	}
	if err := rec.Start(ctx); err != nil {
		return fmt.Errorf("apply state at start: %w", tableMemoryHint(err))
	}
	if runner != nil {
		go runner.Run(ctx)
	}
	// Loading and the first full sync peak at several times the steady
	// heap (snapshot text, decoded and resolved state, every map entry
	// built at once); hand that back now rather than when the scavenger
	// gets to it.
	debug.FreeOSMemory()
	if cfg.Docker != "" {
		src, err := docker.New(docker.Config{Host: cfg.Docker, Defaults: cfg.DockerDefaults}, rec, log)
		if err != nil {
			return fmt.Errorf("--docker %s: %w", cfg.Docker, err)
		}
		rec.AddStatus("docker", func() any { return src.Status() })
		go src.Run(ctx)
	}
	l, err := api.Listen(cfg.Socket)
	if err != nil {
		return err
	}
	defer os.Remove(cfg.Socket)
	apiSrv := api.NewServer(rec, info, log)
	apiSrv.Health = h
	srv := &http.Server{Handler: apiSrv.Handler(), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	log.Info("serving", "socket", cfg.Socket, "backend", be.Name(), "why", info["backend_reason"])
	// The first full sync is done and the socket accepts: the runtimes
	// the unit orders after us may start.
	h.setReady()
	tellSystemd(log, "READY=1\nSTATUS=serving on "+cfg.Socket+", backend "+be.Name())
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	tellSystemd(log, "STOPPING=1")
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	log.Info("stopped; kernel state left in place")
	return nil
}

// Uninstall removes everything portcullisd ever created on this node: both
// backends' kernel objects, the interfaces it made, its state and socket.
func Uninstall(ctx context.Context, cfg Config, log *slog.Logger) error {
	var errs []error
	for _, be := range uninstallers(cfg, log) {
		if err := be.Uninstall(ctx); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", be.Name(), err))
		}
	}
	dev, err := netdev.New()
	if err == nil {
		gone, derr := dev.DeleteOwned()
		log.Info("removed interfaces", "names", gone)
		// Before the state directory goes: the values are kept there.
		dev.SysctlFile = filepath.Join(cfg.StateDir, netdev.SysctlFileName)
		err = errors.Join(derr, dev.RestoreForwarding())
		dev.Close()
	}
	errs = append(errs, err)
	if st, err := store.Open(cfg.StateDir); err == nil {
		errs = append(errs, st.Remove())
	}
	os.Remove(cfg.Socket)
	return errors.Join(errs...)
}
