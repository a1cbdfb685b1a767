package bench

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/nstest"
)

func TestMain(m *testing.M) { nstest.Main(m) }

// TestSmokeNone runs the none mode for about a second: namespaces up,
// the connection-rate clients against c1, namespaces gone.
func TestSmokeNone(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("pcbench needs root to create network namespaces")
	}
	cfg := Config{Modes: []string{"none"}, Rounds: 1, Duration: time.Second, Ns: []int{0}, Clients: 2, skipSuite: true}
	res, err := Run(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Samples) != 1 {
		t.Fatalf("%d samples, want 1", len(res.Samples))
	}
	s := res.Samples[0]
	if s.Error != "" {
		t.Fatalf("none failed: %s\n%v", s.Error, s.Notes)
	}
	if s.Metrics[mConnRate] <= 0 || s.Metrics[mConnP99] <= 0 {
		t.Errorf("no connection rate measured: %v", s.Metrics)
	}
	if s.Metrics[mConnErrors] > 0 {
		t.Errorf("%v failed connections: %v", s.Metrics[mConnErrors], s.Notes)
	}
	left, _ := filepath.Glob(filepath.Join(nstest.NetnsDir, s.Netns))
	if s.Netns == "" || len(left) > 0 {
		t.Errorf("namespaces %q left behind: %v", s.Netns, left)
	}
	t.Logf("none: %.0f conn/s, p99 %.0f µs", s.Metrics[mConnRate], s.Metrics[mConnP99])
}
