package ebpf

import (
	"context"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/portcullis/portcullis/dataplane"
)

// fixtureBackend is a Backend over the fixture's datapath, as if Apply had
// put endpoint A on its veth.
func fixtureBackend(f *fixture) *Backend {
	return &Backend{dp: f.d, epIDs: map[uint32]string{ifA: "a"}, attached: map[attachKey]*attachment{}}
}

func findFlow(flows []dataplane.Flow, orig0 netip.AddrPort) (dataplane.Flow, bool) {
	for _, fl := range flows {
		if fl.Orig[0] == orig0 {
			return fl, true
		}
	}
	return dataplane.Flow{}, false
}

func ap(a netip.Addr, p uint16) netip.AddrPort { return netip.AddrPortFrom(a, p) }

// TestFlowTable: the flows of pc_ct (masquerade, published port), pc_nat6
// (published port, masquerade) and pc_ct6 as dataplane.Flow, filtered and
// flushed.
func TestFlowTable(t *testing.T) {
	f := newFixture(t, fixtureOpts{icc: true, masquerade: true})
	f.put(uplinkEntries(ifUplink, []netip.Addr{ipNode, ipNode6}))
	f.port("web", f.a, ifA, 6, netip.Addr{}, 8080, 8080, 80)
	ctx := context.Background()
	b := fixtureBackend(f)

	f.pass(progUplinkEgress, pkt4{srcMAC: macA, src: ipA, dst: ipExt, proto: 6, sport: 40000, dport: 443, tcpFlags: 0x02}.frame())
	f.pass(progUplinkIngress, pkt4{src: ipExt, dst: ipNode, proto: 6, sport: 443, dport: 40000, tcpFlags: 0x12}.frame())
	f.pass(progUplinkIngress, pkt4{src: ipExt, dst: ipNode, proto: 6, sport: 50000, dport: 8080, tcpFlags: 0x02}.frame())
	f.pass6(progUplinkIngress, pkt6{src: ipExt6, dst: ipNode6, next: 6, sport: 50001, dport: 8080, tcpFlags: 0x02}.frame())
	remote := netip.MustParseAddr("2001:db8::99")
	f.pass6(progUplinkEgress, pkt6{srcMAC: macA, src: ipA6, dst: remote, next: 17, sport: 5353, dport: 53}.frame())
	// The same network routed (masquerade off): tracked in pc_ct6.
	routed := *f.n1
	routed.Masquerade = false
	f.put(netEntries(&routed, netID, macGW))
	f.passUnchanged(progUplinkEgress, pkt6{srcMAC: macA, src: ipA6, dst: remote, next: 17, sport: 5354, dport: 53}.frame())
	f.put(netEntries(f.n1, netID, macGW))

	flows, err := b.Flows(ctx, dataplane.FlowFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(flows) != 5 {
		t.Fatalf("%d flows, want 5: %+v", len(flows), flows)
	}
	for _, c := range []struct {
		name  string
		orig  [2]netip.AddrPort
		reply [2]netip.AddrPort
		nat   []string
		state string
		max   time.Duration
	}{
		{"masquerade", [2]netip.AddrPort{ap(ipA, 40000), ap(ipExt, 443)}, [2]netip.AddrPort{ap(ipExt, 443), ap(ipNode, 40000)},
			[]string{"snat"}, "established", 6 * time.Hour},
		{"published", [2]netip.AddrPort{ap(ipExt, 50000), ap(ipNode, 8080)}, [2]netip.AddrPort{ap(ipA, 80), ap(ipExt, 50000)},
			[]string{"dnat"}, "syn_sent", time.Minute},
		{"published6", [2]netip.AddrPort{ap(ipExt6, 50001), ap(ipNode6, 8080)}, [2]netip.AddrPort{ap(ipA6, 80), ap(ipExt6, 50001)},
			[]string{"dnat"}, "syn_sent", time.Minute},
		{"masquerade6", [2]netip.AddrPort{ap(ipA6, 5353), ap(remote, 53)}, [2]netip.AddrPort{ap(remote, 53), ap(ipNode6, 5353)},
			[]string{"snat"}, "", time.Minute},
		{"routed6", [2]netip.AddrPort{ap(ipA6, 5354), ap(remote, 53)}, [2]netip.AddrPort{ap(remote, 53), ap(ipA6, 5354)},
			nil, "", time.Minute},
	} {
		fl, ok := findFlow(flows, c.orig[0])
		if !ok {
			t.Errorf("%s: no flow from %v in %+v", c.name, c.orig[0], flows)
			continue
		}
		if fl.Orig != c.orig || fl.Reply != c.reply || !slices.Equal(fl.NAT, c.nat) || fl.State != c.state ||
			fl.Expires <= c.max-10*time.Second || fl.Expires > c.max {
			t.Errorf("%s: %+v, want orig %v reply %v nat %v state %q expiring in about %v", c.name, fl, c.orig, c.reply, c.nat, c.state, c.max)
		}
	}

	sel, err := b.Flows(ctx, dataplane.FlowFilter{Port: 8080, Proto: "tcp"})
	if err != nil || len(sel) != 2 {
		t.Fatalf("port 8080: %+v, %v", sel, err)
	}
	if sel, _ := b.Flows(ctx, dataplane.FlowFilter{Addr: ipNode}); len(sel) != 2 {
		t.Fatalf("node address (original destination or reply destination): %+v", sel)
	}
	n, err := b.FlushFlows(ctx, dataplane.FlowFilter{Port: 8080})
	if err != nil || n != 2 {
		t.Fatalf("flush port 8080: %d, %v", n, err)
	}
	if len(f.ct()) != 2 || len(f.nat6()) != 2 {
		t.Fatalf("after flush: pc_ct %v, pc_nat6 %v", f.ct(), f.nat6())
	}
	// The flushed flow's next packet opens a new one.
	f.pass(progUplinkIngress, pkt4{src: ipExt, dst: ipNode, proto: 6, sport: 50000, dport: 8080, tcpFlags: 0x10}.frame())
	if n, err := b.FlushFlows(ctx, dataplane.FlowFilter{}); err != nil || n != 4 {
		t.Fatalf("flush all: %d, %v", n, err)
	}
	if flows, _ := b.Flows(ctx, dataplane.FlowFilter{}); len(flows) != 0 {
		t.Fatalf("left after flushing everything: %+v", flows)
	}
}

// TestFlowOrphanHalf: a reverse half without its forward half (never left
// by the datapath for long) still lists as its flow, and flushes.
func TestFlowOrphanHalf(t *testing.T) {
	f := newFixture(t, fixtureOpts{icc: true, masquerade: true})
	rev := bpfCtEntry{Expires: monoNow(t) + uint64(time.Minute), Flags: ctSNAT | ctReverse, Hooks: hookUplinkIngress,
		Nat: ctKey(ipExt, 53, ipA, 4000, 17)}
	if err := f.d.maps[mapFlows4].Put(ctKey(ipExt, 53, ipNode, 33000, 17), rev); err != nil {
		t.Fatal(err)
	}
	b := fixtureBackend(f)
	flows, err := b.Flows(context.Background(), dataplane.FlowFilter{})
	if err != nil || len(flows) != 1 {
		t.Fatalf("%+v, %v", flows, err)
	}
	want := dataplane.Flow{Proto: "udp", Orig: [2]netip.AddrPort{ap(ipA, 4000), ap(ipExt, 53)},
		Reply: [2]netip.AddrPort{ap(ipExt, 53), ap(ipNode, 33000)}, NAT: []string{"snat"}}
	got := flows[0]
	got.Expires = 0
	if got.Proto != want.Proto || got.Orig != want.Orig || got.Reply != want.Reply || !slices.Equal(got.NAT, want.NAT) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	if n, err := b.FlushFlows(context.Background(), dataplane.FlowFilter{Addr: ipA}); err != nil || n != 1 || len(f.ct()) != 0 {
		t.Fatalf("flush: %d, %v, left %v", n, err, f.ct())
	}
}

// TestDropsAndFill: drop counters by reason and endpoint, with the names
// the nftables backend uses where they mean the same; map fill levels.
func TestDropsAndFill(t *testing.T) {
	f := newFixture(t, fixtureOpts{icc: false, masquerade: true})
	b := fixtureBackend(f)
	f.dropped(progEndpointIngress, pkt4{srcMAC: macA, src: ipB, dst: ipExt, proto: 6, sport: 1, dport: 2}.frame(), "spoof-ip")
	f.dropped(progEndpointIngress, pkt4{srcMAC: macA, src: ipB, dst: ipExt, proto: 6, sport: 1, dport: 2}.frame(), "spoof-ip")
	f.dropped(progEndpointIngress, pkt4{srcMAC: macA, dstMAC: macB, src: ipA, dst: ipB, proto: 6, sport: 1, dport: 22}.frame(), "icc")
	// Counters of interfaces that are no endpoint's (uplinks, endpoints
	// gone) add up without an endpoint.
	ncpu, err := ebpf.PossibleCPU()
	if err != nil {
		t.Fatal(err)
	}
	for _, ifindex := range []uint32{998, 999} {
		per := make([]uint64, ncpu)
		per[0] = 5
		if err := f.d.maps[mapDrops].Put(bpfDropKey{Reason: 14, Ifindex: ifindex}, per); err != nil {
			t.Fatal(err)
		}
	}
	drops, err := b.Drops(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []dataplane.Drop{
		{Reason: "icc", Endpoint: "a", Packets: 1},
		{Reason: "inbound", Packets: 10},
		{Reason: "spoof-ip", Endpoint: "a", Packets: 2},
	}
	if !slices.Equal(drops, want) {
		t.Fatalf("drops %+v, want %+v", drops, want)
	}

	fill := map[string]dataplane.TableFill{}
	for _, tf := range b.Fill() {
		fill[tf.Name] = tf
	}
	sizes := testConfig().Maps.byMap()
	for _, name := range []string{mapFlows4, mapPorts, mapPorts6, mapEndpoints, mapEpAddrs, mapLinks, mapDrops} {
		tf, ok := fill[name]
		if !ok || tf.Max == 0 {
			t.Errorf("fill of %s: %+v", name, tf)
		}
		if n, ok := sizes[name]; ok && tf.Max != int(n) {
			t.Errorf("%s: max %d, want %d", name, tf.Max, n)
		}
	}
	if got := fill[mapEndpoints].Entries; got != 3 {
		t.Errorf("pc_endpoints holds %d, want 3", got)
	}
	if got := fill[mapDrops].Entries; got != 4 {
		t.Errorf("pc_drops holds %d, want 4", got)
	}
	for _, name := range []string{mapStats, "pc_events", "pc_trace_cfg"} {
		if _, ok := fill[name]; ok {
			t.Errorf("%s (an array or ring buffer) reported", name)
		}
	}
}
