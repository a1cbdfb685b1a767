package nft

import (
	"net"
	"slices"
	"testing"
)

// drops returns the backend's drop counters by reason.
func drops(t *testing.T, b *Backend) map[string]uint64 {
	t.Helper()
	ds, err := b.Drops(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]uint64{}
	for _, d := range ds {
		if d.Endpoint != "" {
			t.Errorf("drop %+v attributed to an endpoint", d)
		}
		out[d.Reason] = d.Packets
	}
	return out
}

// dropsGrow runs blocked traffic and asserts that it raised the counter of
// reason.
func dropsGrow(t *testing.T, b *Backend, reason string, traffic func()) {
	t.Helper()
	before := drops(t, b)
	traffic()
	after := drops(t, b)
	if after[reason] <= before[reason] {
		t.Errorf("drop-%s did not count the blocked traffic: %d before, %d after", reason, before[reason], after[reason])
	}
}

// TestTrafficDropCounters: each kind of blocked traffic counts in the
// counter of its reason, and the counters survive a full sync (an agent
// restart re-creates the tables).
func TestTrafficDropCounters(t *testing.T) {
	t.Parallel()
	tp := newTopo(t)
	serve(t, tp.c1H, ":80")
	c1http := net.JoinHostPort(tp.c1IP, "80")

	reasons := []string{"loopback", "inbound", "stale", "internal", "spoof", "icc"}
	ds, err := tp.b.Drops(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range ds {
		got = append(got, d.Reason)
	}
	if !slices.Equal(got, reasons) {
		t.Errorf("drop reasons %q, want %q", got, reasons)
	}

	t.Run("B17 spoofed source counts in drop-spoof", func(t *testing.T) {
		sh(t, "ip", "-n", tp.c2, "addr", "add", "172.18.0.99/16", "dev", "eth0")
		defer sh(t, "ip", "-n", tp.c2, "addr", "del", "172.18.0.99/16", "dev", "eth0")
		dropsGrow(t, tp.b, "spoof", func() { blocked(t, tp.c2H, "172.18.0.99", c1http) })
	})
	t.Run("B15 icc=false counts in drop-icc", func(t *testing.T) {
		tp.setICC(false)
		defer tp.setICC(true)
		dropsGrow(t, tp.b, "icc", func() { blocked(t, tp.c2H, "", c1http) })
	})
	t.Run("B12 direct access from outside counts in drop-inbound", func(t *testing.T) {
		sh(t, "ip", "-n", tp.ext, "route", "add", "172.18.0.0/16", "via", tp.nodeIP)
		defer sh(t, "ip", "-n", tp.ext, "route", "del", "172.18.0.0/16", "via", tp.nodeIP)
		dropsGrow(t, tp.b, "inbound", func() { blocked(t, tp.extH, "", c1http) })
	})
	t.Run("counters survive a full sync", func(t *testing.T) {
		before := drops(t, tp.b)
		restarted := newBackend(t, tp.nodeH)
		if err := restarted.Apply(t.Context(), tp.want, nil, true); err != nil {
			t.Fatal(err)
		}
		tp.b = restarted
		after := drops(t, restarted)
		for _, r := range reasons {
			if after[r] < before[r] {
				t.Errorf("drop-%s went from %d to %d over a full sync", r, before[r], after[r])
			}
		}
		if before["spoof"] == 0 {
			t.Error("nothing counted before the full sync: the test proves nothing")
		}
	})
}

// TestDropsBeforeInstall: without tables there is nothing to count, and
// that is not an error.
func TestDropsBeforeInstall(t *testing.T) {
	needRoot(t)
	_, h := newNS(t, "nodrops")
	b := newBackend(t, h)
	ds, err := b.Drops(t.Context())
	if err != nil || len(ds) != 0 {
		t.Fatalf("Drops before the first sync = %v, %v; want nothing", ds, err)
	}
}
