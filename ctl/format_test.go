package ctl

import (
	"context"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/dataplane"
	"github.com/portcullis/portcullis/dataplane/dptest"
)

func TestHumanUnits(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "0s", 850 * time.Microsecond: "850µs", 923*time.Millisecond + 800*time.Microsecond: "923ms",
		4200 * time.Millisecond: "4.2s", 42 * time.Second: "42s", 119 * time.Second: "1m59s",
		2*time.Hour + 5*time.Minute: "2h05m", 76 * time.Hour: "3d04h", -2 * time.Second: "-2.0s",
	} {
		if got := humanDuration(d); got != want {
			t.Errorf("humanDuration(%v) = %q, want %q", d, got, want)
		}
	}
	for n, want := range map[uint64]string{
		0: "0 B", 999: "999 B", 1000: "1.0 kB", 58_700_000: "58.7 MB", 999_960: "1.0 MB", 262_144: "262.1 kB", 3 << 40: "3.3 TB",
	} {
		if got := humanSize(n); got != want {
			t.Errorf("humanSize(%d) = %q, want %q", n, got, want)
		}
	}
}

// counting is a backend with flows and drops: the nftables one counts
// bytes, the eBPF one packets only.
type counting struct{ *dptest.Recorder }

func (counting) Drops(context.Context) ([]dataplane.Drop, error) {
	return []dataplane.Drop{
		{Reason: "no-route", Packets: 41_000, Bytes: 58_700_000},
		{Reason: "spoof-ip", Endpoint: "web", Packets: 3},
		{Reason: "unpublished", Packets: 0, Bytes: 0},
	}, nil
}

func (counting) Flows(context.Context, dataplane.FlowFilter) ([]dataplane.Flow, error) {
	ap := netip.MustParseAddrPort
	return []dataplane.Flow{{Proto: "tcp", Orig: [2]netip.AddrPort{ap("192.0.2.9:40000"), ap("192.0.2.1:8080")},
		Reply: [2]netip.AddrPort{ap("172.17.0.2:80"), ap("192.0.2.9:40000")}, State: "established",
		Expires: 923*time.Millisecond + 400*time.Microsecond, NAT: []string{"dnat"}}}, nil
}

func (counting) FlushFlows(context.Context, dataplane.FlowFilter) (int, error) { return 0, nil }

// Tables show durations and sizes for people; JSON keeps the numbers.
func TestTableUnits(t *testing.T) {
	sock := dptest.StartAgent(t, t.TempDir(), counting{&dptest.Recorder{}})
	if err := putSetup(sock); err != nil {
		t.Fatal(err)
	}
	c := pcctlOK(t, sock)
	drops := c("drops")
	for _, line := range []string{"no-route     -         41000    58.7 MB", "spoof-ip     web       3        -", "unpublished  -         0        0 B"} {
		if !strings.Contains(drops, line) {
			t.Errorf("drops table lacks %q:\n%s", line, drops)
		}
	}
	if js := c("drops", "-o", "json"); !strings.Contains(js, `"bytes": 58700000`) {
		t.Errorf("drops json:\n%s", js)
	}
	if flows := c("flows"); !strings.Contains(flows, "established  dnat  923ms") {
		t.Errorf("flows table:\n%s", flows)
	}
	if js := c("flows", "-o", "json"); !strings.Contains(js, `"expires_ns": 923400000`) {
		t.Errorf("flows json:\n%s", js)
	}
	// The reconciler's last change took some microseconds: a duration,
	// named without its unit.
	st := c("status")
	if !regexp.MustCompile(`\n\s*last_duration:\s+\d+(\.\d)?(ns|µs|ms|s)\n`).MatchString(st) {
		t.Errorf("status table:\n%s", st)
	}
	if js := c("status", "-o", "json"); !strings.Contains(js, `"last_duration_ns": `) {
		t.Errorf("status json:\n%s", js)
	}
}
