package agent

import (
	"fmt"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/dataplane/ebpf"
)

// TestNATPorts: --nat-ports takes auto or MIN-MAX outside the node's
// ephemeral ports; anything else is refused with the flag and its value.
func TestNATPorts(t *testing.T) {
	lo, hi, err := ebpf.LocalPorts()
	if err != nil {
		t.Skipf("no ephemeral port range to read here: %v", err)
	}
	cfg := Config{Backend: "ebpf"}
	dp := ebpfConfig(cfg)
	if err := natPorts(&dp, "auto"); err != nil {
		t.Fatalf("auto: %v", err)
	}
	if dp.LocalPortMin != lo || dp.LocalPortMax != hi {
		t.Errorf("local ports %d-%d, want the kernel's %d-%d", dp.LocalPortMin, dp.LocalPortMax, lo, hi)
	}
	if dp.NATPortMin <= hi && lo <= dp.NATPortMax {
		t.Errorf("auto SNAT ports %d-%d overlap the ephemeral ports %d-%d", dp.NATPortMin, dp.NATPortMax, lo, hi)
	}

	overlap := fmt.Sprintf("%d-%d", lo, lo)
	for _, bad := range []string{"1024", "9-x", "0-10", overlap} {
		dp := ebpfConfig(cfg)
		err := natPorts(&dp, bad)
		if err == nil || !strings.Contains(err.Error(), "--nat-ports") || !strings.Contains(err.Error(), bad) {
			t.Errorf("--nat-ports=%s: error %v, want one naming the flag and the value", bad, err)
		}
	}
	// And a bad flag stops the agent rather than falling back to nftables.
	if _, _, err := chooseBackend(Config{Backend: "auto", NATPorts: overlap}, nil); err == nil || !strings.Contains(err.Error(), "--nat-ports") {
		t.Errorf("backend auto with --nat-ports=%s: %v, want the flag's error", overlap, err)
	}
}
