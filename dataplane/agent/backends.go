package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"os"

	"golang.org/x/sys/unix"

	"github.com/portcullis/portcullis/dataplane"
	"github.com/portcullis/portcullis/dataplane/ebpf"
	"github.com/portcullis/portcullis/dataplane/nft"
)

// chooseBackend builds the backend that cfg asks for and says why it was
// chosen; the reason is shown in /v1/status. auto takes eBPF when its
// programs load here and falls back to nftables when they do not.
func chooseBackend(cfg Config, log *slog.Logger) (dataplane.Backend, map[string]any, error) {
	info := map[string]any{"backend_requested": cfg.Backend}
	dp := ebpfConfig(cfg)
	if cfg.Backend != "nftables" {
		// A bad flag is the operator's to fix, not a reason to fall back.
		if err := natPorts(&dp, cfg.NATPorts); err != nil {
			return nil, nil, err
		}
		if err := tableSizes(&dp, cfg); err != nil {
			return nil, nil, err
		}
	}
	switch cfg.Backend {
	case "ebpf":
		be, err := newEBPF(dp, log, false)
		if err != nil {
			return nil, nil, fmt.Errorf("--backend=ebpf: %w (use --backend=auto to fall back to nftables)", err)
		}
		info["backend_reason"] = "requested with --backend=ebpf"
		return be, info, nil
	case "nftables":
		info["backend_reason"] = "requested with --backend=nftables"
	case "auto", "":
		// The real programs are loaded (and pinned) here, once: a probe
		// of its own would double the verifier's time, most of the start.
		be, err := newEBPF(dp, log, true)
		if err == nil {
			info["backend_reason"] = "auto: the eBPF programs load on this kernel (" + attachNote(be) + ")"
			return be, info, nil
		}
		info["backend_reason"] = fmt.Sprintf("auto: eBPF cannot be used here (%v), so nftables", err)
		log.Warn("falling back to nftables", "err", err)
	default:
		return nil, nil, fmt.Errorf("--backend=%q: use auto, ebpf or nftables", cfg.Backend)
	}
	be, err := nft.New(nft.Options{Log: log})
	if err != nil {
		return nil, nil, err
	}
	return be, info, nil
}

// newEBPF returns the eBPF datapath stacked with the nftables local path:
// traffic the node itself sends to a published port never crosses the
// uplink's tc hooks, so nft output DNAT serves it (rows B10, B11). With
// load, the programs are loaded now (else at the first Apply).
func newEBPF(dp ebpfSetup, log *slog.Logger, load bool) (dataplane.Backend, error) {
	be, err := ebpf.New(ebpf.Options{PinDir: dp.pinDir, Attach: ebpf.AttachMode(dp.attach), Config: &dp.Config, Log: log})
	if err != nil {
		return nil, err
	}
	if load {
		if err := be.Load(); err != nil {
			return nil, err
		}
	}
	local, err := nft.New(nft.Options{Log: log, Mode: nft.ModeLocal})
	if err != nil {
		be.Close()
		return nil, fmt.Errorf("nftables local path: %w", err)
	}
	return dataplane.Stack{be, local}, nil
}

// attachNote says how the stacked eBPF backend attaches, for the reason
// status shows.
func attachNote(be dataplane.Backend) string {
	if st, ok := be.(dataplane.Stack); ok {
		if eb, ok := st[0].(*ebpf.Backend); ok {
			mode, why := eb.AttachInfo()
			return fmt.Sprintf("attach %s: %s", mode, why)
		}
	}
	return "attach mode unknown"
}

// ebpfSetup is the eBPF backend's configuration from the flags.
type ebpfSetup struct {
	ebpf.Config
	pinDir, attach string
}

// ebpfConfig is the eBPF datapath configuration of cfg, with the default
// SNAT and local port ranges (natPorts sets them from the kernel).
func ebpfConfig(cfg Config) ebpfSetup {
	dp := ebpfSetup{Config: ebpf.DefaultConfig(), pinDir: cfg.BPFFS, attach: cfg.Attach}
	dp.FastPath = cfg.FastPath
	return dp
}

// natPorts sets the node's ephemeral ports, read from the kernel, and the
// SNAT port range (flag value spec) outside them.
func natPorts(dp *ebpfSetup, spec string) error {
	lo, hi, err := ebpf.LocalPorts()
	if err != nil {
		return err
	}
	dp.LocalPortMin, dp.LocalPortMax = lo, hi
	if spec == "" || spec == "auto" {
		dp.NATPortMin, dp.NATPortMax, err = ebpf.NATPortsOutside(lo, hi)
		return err
	}
	if dp.NATPortMin, dp.NATPortMax, err = ebpf.ParsePortRange(spec); err != nil {
		return fmt.Errorf("--nat-ports=%s", err)
	}
	if err := dp.Validate(); err != nil {
		return fmt.Errorf("--nat-ports=%q: %w", spec, err)
	}
	return nil
}

// Bounds of the flow table flags. Below minTableEntries a table holds too
// few flows to be of use (and the probe's own tables are that size); above
// maxTableEntries pc_flows4 alone would take 7.5 GB of kernel memory, which is
// more likely a typo than a plan.
const (
	minTableEntries = 1024
	maxTableEntries = 1 << 26
)

// tableFlag is one flow table flag: its name, what one entry holds, and
// where its value goes.
type tableFlag struct {
	name, holds string
	val         uint64
	dst         *uint32
}

// tableSizes sets the sizes of the flow tables from the flags, refusing a
// value out of bounds with the flag's name; 0 leaves the default.
func tableSizes(dp *ebpfSetup, cfg Config) error {
	for _, f := range []tableFlag{
		{"--ct-entries", "two per IPv4 flow", cfg.CTEntries, &dp.Maps.CT},
		{"--ct6-entries", "one per routed IPv6 flow", cfg.CT6Entries, &dp.Maps.CT6},
		{"--nat6-entries", "two per translated IPv6 flow", cfg.NAT6Entries, &dp.Maps.NAT6},
	} {
		if f.val == 0 {
			continue
		}
		if f.val < minTableEntries || f.val > maxTableEntries {
			return fmt.Errorf("%s=%d: want between %d and %d entries (%s)", f.name, f.val, minTableEntries, maxTableEntries, f.holds)
		}
		*f.dst = uint32(f.val)
	}
	return nil
}

// tableMemoryHint says what to do when the kernel could not allocate the
// eBPF maps: the flow tables are preallocated, and their flags set how much
// they take.
func tableMemoryHint(err error) error {
	if !errors.Is(err, unix.ENOMEM) {
		return err
	}
	return fmt.Errorf("%w (the eBPF flow tables are allocated whole at load: give smaller --ct-entries, --ct6-entries or --nat6-entries, "+
		"or check the memory cgroup's limit)", err)
}

// uninstallers returns every backend whose kernel objects may exist: the
// agent may have run with either over time.
func uninstallers(cfg Config, log *slog.Logger) []dataplane.Backend {
	var out []dataplane.Backend
	if be, err := nft.New(nft.Options{Log: log}); err == nil {
		out = append(out, be)
	} else {
		log.Warn("nftables backend unavailable for uninstall", "err", err)
	}
	// Uninstalling needs no port ranges: the defaults do.
	if be, err := newEBPF(ebpfConfig(cfg), log, false); err == nil {
		out = append(out, be)
	} else {
		// Without eBPF here nothing can be attached, but pins may remain.
		log.Warn("eBPF backend unavailable for uninstall; removing its pins only", "err", err)
		if err := os.RemoveAll(cfg.BPFFS); err != nil {
			log.Error("remove pins", "dir", cfg.BPFFS, "err", err)
		}
	}
	return out
}
