package agent

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/portcullis/portcullis/dataplane"
	"github.com/portcullis/portcullis/dataplane/ebpf"
	"github.com/portcullis/portcullis/dataplane/nft"
)

// chooseBackend builds the backend that cfg asks for and says why it was
// chosen; the reason is shown in /v1/status. auto takes eBPF when its
// programs load here and falls back to nftables when they do not.
func chooseBackend(cfg Config, log *slog.Logger) (dataplane.Backend, map[string]any, error) {
	info := map[string]any{"backend_requested": cfg.Backend}
	switch cfg.Backend {
	case "ebpf":
		be, err := newEBPF(cfg, log)
		if err != nil {
			return nil, nil, fmt.Errorf("--backend=ebpf: %w (use --backend=auto to fall back to nftables)", err)
		}
		info["backend_reason"] = "requested with --backend=ebpf"
		return be, info, nil
	case "nftables":
		info["backend_reason"] = "requested with --backend=nftables"
	case "auto", "":
		tcx, err := ebpf.Probe()
		if err == nil {
			be, err2 := newEBPF(cfg, log)
			if err2 == nil {
				info["backend_reason"] = fmt.Sprintf("auto: the eBPF programs load on this kernel (tcx: %v)", tcx)
				return be, info, nil
			}
			err = err2
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
// uplink's tc hooks, so nft output DNAT serves it (rows B10, B11).
func newEBPF(cfg Config, log *slog.Logger) (dataplane.Backend, error) {
	dp := ebpf.DefaultConfig()
	dp.FastPath = cfg.FastPath
	be, err := ebpf.New(ebpf.Options{PinDir: cfg.BPFFS, Attach: ebpf.AttachMode(cfg.Attach), Config: &dp, Log: log})
	if err != nil {
		return nil, err
	}
	local, err := nft.New(nft.Options{Log: log, Mode: nft.ModeLocal})
	if err != nil {
		be.Close()
		return nil, fmt.Errorf("nftables local path: %w", err)
	}
	return dataplane.Stack{be, local}, nil
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
	if be, err := newEBPF(cfg, log); err == nil {
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
