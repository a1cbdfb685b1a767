package ebpf

import (
	"fmt"
	"strings"
	"testing"
)

func TestNATPortsOutside(t *testing.T) {
	for _, tc := range []struct {
		lo, hi, a, z uint16
		err          bool
	}{
		{32768, 60999, 1024, 32767, false}, // Linux's default
		{10000, 20000, 20001, 65535, false},
		{1024, 60999, 61000, 65535, false},
		{500, 40000, 40001, 65535, false},
		{1024, 65000, 0, 0, true}, // 535 ports left above
		{1, 65535, 0, 0, true},
	} {
		a, z, err := NATPortsOutside(tc.lo, tc.hi)
		if (err != nil) != tc.err || a != tc.a || z != tc.z {
			t.Errorf("NATPortsOutside(%d, %d) = %d-%d, %v; want %d-%d, error %v", tc.lo, tc.hi, a, z, err, tc.a, tc.z, tc.err)
		}
	}
}

func TestParsePortRange(t *testing.T) {
	if a, z, err := ParsePortRange("1024-32767"); err != nil || a != 1024 || z != 32767 {
		t.Errorf("1024-32767: %d-%d, %v", a, z, err)
	}
	for _, bad := range []string{"", "1024", "0-100", "200-100", "1-70000", "a-b", "-5"} {
		if _, _, err := ParsePortRange(bad); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("%q", bad)) {
			t.Errorf("%q: error %v, want one naming the value", bad, err)
		}
	}
}

// TestConfigPortOverlap: a SNAT range that overlaps the node's ephemeral
// ports is refused, naming both.
func TestConfigPortOverlap(t *testing.T) {
	c := DefaultConfig()
	c.NATPortMin, c.NATPortMax = 30000, 40000
	_, err := c.rodata()
	if err == nil || !strings.Contains(err.Error(), "30000-40000") || !strings.Contains(err.Error(), "32768-60999") {
		t.Fatalf("overlapping ranges: %v", err)
	}
	if _, err := DefaultConfig().rodata(); err != nil {
		t.Fatalf("default: %v", err)
	}
}
