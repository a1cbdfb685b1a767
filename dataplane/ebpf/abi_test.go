package ebpf

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

// TestDropReasonNames: the names the Go side derives from the C enum are
// the ones users have seen in /v1/drops and pcctl trace since before they
// were derived, and bpf/README.md's table describes every one.
func TestDropReasonNames(t *testing.T) {
	want := map[uint32]string{
		1: "malformed", 2: "vlan", 3: "non-ip", 4: "no-endpoint", 5: "spoof-mac", 6: "spoof-ip",
		7: "spoof-arp", 8: "icc", 9: "icc-link-port", 10: "isolation", 11: "fragment",
		12: "nat-ports-exhausted", 13: "conntrack-full", 14: "inbound", 15: "no-snat-address",
		16: "rewrite-failed", 17: "nat-conflict", 18: "spoof-nd", 19: "spoof-router",
	}
	if got := DropReasons(); !reflect.DeepEqual(got, want) {
		t.Errorf("DropReasons() = %v, want %v", got, want)
	}
	if got := dropReasonName(uint32(bpfPcDropReasonPC_DROP_ICC_LINK_PORT)); got != "icc-link-port" {
		t.Errorf("PC_DROP_ICC_LINK_PORT is named %q, want icc-link-port", got)
	}
	if got := dropReasonName(999); got != "reason-999" {
		t.Errorf("an unknown reason is named %q, want reason-999", got)
	}
	readme, err := os.ReadFile("../../bpf/README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range want {
		if !strings.Contains(string(readme), "| `"+name+"` |") {
			t.Errorf("bpf/README.md's table of drop reasons has no row for %s", name)
		}
	}
}

// TestStatNames: the counters by their index in pc_stats, as /v1/status
// has always shown them.
func TestStatNames(t *testing.T) {
	want := []string{"ct_created", "nat_port_retries", "ct_reclaimed", "icmp_errors_translated", "fast_path"}
	if got := statNames(); !reflect.DeepEqual(got, want) {
		t.Errorf("statNames() = %v, want %v", got, want)
	}
}
