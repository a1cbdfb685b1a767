package bench

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Every flow of a set has its own tuple, the containers take turns, and
// source ports stay in the SNAT range (so SNAT keeps them): the flows a
// scenario counts are as many as it sent.
func TestFlowTuplesDistinct(t *testing.T) {
	const n = 2 * flowDsts * flowDstPorts * flowContainers * 780
	type tuple struct {
		src   int
		proto uint8
		dst   netip.AddrPort
		sport uint16
	}
	seen := map[tuple]bool{}
	perSrc := make([]int, flowContainers)
	for i := range n {
		src, proto, dst, sport := flowTuple(i, flowContainers)
		k := tuple{src, proto, dst, sport}
		if seen[k] {
			t.Fatalf("flow %d repeats %+v", i, k)
		}
		seen[k] = true
		perSrc[src]++
		if sport < flowSportBase || sport > 32767 {
			t.Fatalf("flow %d: source port %d outside 1024-32767", i, sport)
		}
		if !netip.MustParsePrefix("198.51.100.0/24").Contains(dst.Addr()) {
			t.Fatalf("flow %d: destination %v outside TEST-NET-2", i, dst)
		}
	}
	for c, k := range perSrc {
		if k != n/flowContainers {
			t.Errorf("container %d opens %d flows, want %d", c, k, n/flowContainers)
		}
	}
}

// The generated packets carry valid L4 checksums: a checksum over the
// pseudo header and the segment, checksum included, folds to 0xffff.
func TestFlowPacketChecksums(t *testing.T) {
	src := netip.MustParseAddr("172.17.0.2")
	for _, proto := range []uint8{unix.IPPROTO_UDP, unix.IPPROTO_TCP} {
		pkt := flowPacket(make([]byte, 40), src, netip.MustParseAddrPort("198.51.100.7:5003"), proto, 4242, 99)
		l4 := pkt[20:]
		sum := checksumAdd(0, pkt[12:20]) + uint32(proto) + uint32(len(l4))
		if got := fold(checksumAdd(sum, l4)); got != 0xffff {
			t.Errorf("proto %d: checksum folds to %#x, want 0xffff", proto, got)
		}
		if pkt[9] != proto || int(pkt[2])<<8|int(pkt[3]) != len(pkt) {
			t.Errorf("proto %d: header %x", proto, pkt[:20])
		}
	}
}

// The table holds the flows at 90% plus the measurements' room.
func TestCTEntriesFor(t *testing.T) {
	n := ctEntriesFor(1000000, 3*time.Second)
	if n%1024 != 0 || n < 2222223 {
		t.Errorf("ctEntriesFor(1M) = %d: want a multiple of 1024 holding 2,000,000 entries at 90%%", n)
	}
}

func TestChurnBounded(t *testing.T) {
	run := func(secs float64, f func(t float64) int) *Churn {
		c := &Churn{Seconds: secs}
		for s := 1.0; s <= secs; s++ {
			c.Fill = append(c.Fill, FillSample{T: s, Entries: f(s)})
		}
		return c
	}
	flat := run(600, func(s float64) int { return 100000 + int(s)%7*1000 })
	growing := run(600, func(s float64) int { return int(s) * 1000 })
	short := run(30, func(s float64) int { return 1000 })
	if got := flat.bounded(); got != "yes" {
		t.Errorf("flat fill: bounded %q", got)
	}
	if got := growing.bounded(); got != "no" {
		t.Errorf("growing fill: bounded %q", got)
	}
	if got := short.bounded(); !strings.HasPrefix(got, "too short") {
		t.Errorf("30 s run: bounded %q", got)
	}
}

func TestRenderFlows(t *testing.T) {
	var b strings.Builder
	fb := &FlowBench{Flows: 1000, CTEntries: 4096, NewFlowsEmpty: []float64{100, 200}, NewFlowsFull: []float64{90, 180},
		Established: "ok", NewRefused: "refused: timeout", FullDrops: 7}
	renderFlows(&b, fb, &Churn{Seconds: 30, Drops: map[string]uint64{"nat-conflict": 3}})
	for _, want := range []string{"1000 concurrent NAT flows", "0.90×", "refused: timeout; 0", "nat-conflict 3", "too short to tell"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("rendered flows lack %q:\n%s", want, b.String())
		}
	}
}
