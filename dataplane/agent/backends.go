package agent

import (
	"fmt"
	"log/slog"

	"github.com/portcullis/portcullis/dataplane"
	"github.com/portcullis/portcullis/dataplane/nft"
)

// chooseBackend builds the backend that cfg asks for and says why it was
// chosen; the reason is shown in /v1/status.
func chooseBackend(cfg Config, log *slog.Logger) (dataplane.Backend, map[string]any, error) {
	info := map[string]any{"backend_requested": cfg.Backend}
	switch cfg.Backend {
	case "nftables":
		info["backend_reason"] = "requested with --backend=nftables"
	case "auto", "":
		info["backend_reason"] = "auto: the eBPF backend is not part of this build yet, so nftables"
	case "ebpf":
		return nil, nil, fmt.Errorf("--backend=ebpf: the eBPF backend is not part of this build yet; use --backend=nftables or auto")
	default:
		return nil, nil, fmt.Errorf("--backend=%q: use auto, ebpf or nftables", cfg.Backend)
	}
	be, err := nft.New(nft.Options{Log: log})
	if err != nil {
		return nil, nil, err
	}
	return be, info, nil
}

// uninstallers returns every backend whose kernel objects may exist.
func uninstallers(cfg Config, log *slog.Logger) []dataplane.Backend {
	var out []dataplane.Backend
	if be, err := nft.New(nft.Options{Log: log}); err == nil {
		out = append(out, be)
	} else {
		log.Warn("nftables backend unavailable for uninstall", "err", err)
	}
	return out
}
