package ebpf

import (
	"errors"
	"os"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"
)

// requireBPF skips the test unless this process may load BPF programs. On a
// kernel that has BPF but refuses our objects the test fails instead.
func requireBPF(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_BPF, CAP_NET_ADMIN) to load programs")
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		t.Skipf("remove memlock rlimit: %v", err)
	}
}

// testConfig is DefaultConfig without the FIB, so test results do not
// depend on the machine's routes, and with a small CT map. Its node
// ephemeral ports are 61000-65535 and SNAT picks from 32768-60999, so that
// flows from the usual container ports (40000 in most tests) keep them;
// TestLocalPortsAvoided covers Linux's default ranges.
func testConfig() Config {
	c := DefaultConfig()
	c.NoFIBLocal = true
	c.Maps.CT = 4096
	c.NATPortMin, c.NATPortMax = 32768, 60999
	c.LocalPortMin, c.LocalPortMax = 61000, 65535
	return c
}

func loadTestDatapath(t *testing.T, cfg Config) *datapath {
	t.Helper()
	requireBPF(t)
	d, err := loadDatapath(cfg, loadOptions{})
	if errors.Is(err, ebpf.ErrNotSupported) {
		t.Skipf("kernel lacks a feature the datapath needs: %v", err)
	}
	if err != nil {
		t.Fatalf("load datapath: %v", err)
	}
	t.Cleanup(d.Close)
	return d
}
