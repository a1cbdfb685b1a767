package ebpf

import (
	"fmt"

	"github.com/cilium/ebpf/rlimit"
)

// Probe tells whether this kernel and process can run the eBPF backend: it
// loads the real programs (with small state maps) through the
// verifier, and checks for tcx. err says why not; tcx reports whether tcx
// links are available (without them the backend falls back to clsact).
// It attaches nothing and pins nothing.
func Probe() (tcx bool, err error) {
	if err := rlimit.RemoveMemlock(); err != nil {
		return false, fmt.Errorf("raise the memlock limit: %w", err)
	}
	cfg := DefaultConfig()
	cfg.Maps = MapSizes{CT: 1024, CT6: 1024, NAT6: 1024}
	dp, err := loadDatapath(cfg, loadOptions{})
	if err != nil {
		return false, fmt.Errorf("load the datapath: %w", err)
	}
	defer dp.Close()
	return probeTCX(dp.progs[progEndpointIngress]) == nil, nil
}
