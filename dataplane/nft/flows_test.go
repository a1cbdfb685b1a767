package nft

import (
	"net"
	"net/netip"
	"slices"
	"testing"

	"github.com/portcullis/portcullis/dataplane"
	"github.com/portcullis/portcullis/dataplane/model"
)

// TestTrafficFlows: a connection to a published port is listed with its
// translation, in the backend's namespace; a flush by port removes it and
// leaves other flows alone.
func TestTrafficFlows(t *testing.T) {
	t.Parallel()
	tp := newTopo(t)
	serve(t, tp.c1H, ":80")
	serve(t, tp.extH, ":9000")
	tp.do(model.Op{Kind: "port", Port: &model.PortMapping{ID: "c1-http", Endpoint: "c1",
		Proto: "tcp", HostPort: 8080, Port: 80}})
	reaches(t, tp.extH, "", net.JoinHostPort(tp.nodeIP, "8080"), tp.extIP)
	reaches(t, tp.c1H, "", net.JoinHostPort(tp.extIP, "9000"), tp.nodeIP) // an unrelated flow

	published := dataplane.FlowFilter{Port: 8080, Proto: "tcp"}
	flows, err := tp.b.Flows(t.Context(), published)
	if err != nil {
		t.Fatal(err)
	}
	if len(flows) != 1 {
		t.Fatalf("flows to port 8080: %+v, want one", flows)
	}
	f := flows[0]
	ext, node, c1 := netip.MustParseAddr(tp.extIP), netip.MustParseAddr(tp.nodeIP), netip.MustParseAddr(tp.c1IP)
	client := f.Orig[0]
	switch {
	case f.Proto != "tcp":
		t.Errorf("proto %q, want tcp", f.Proto)
	case client.Addr() != ext || f.Orig[1] != netip.AddrPortFrom(node, 8080):
		t.Errorf("original tuple %v, want %s:* -> %s:8080", f.Orig, ext, node)
	case f.Reply != [2]netip.AddrPort{netip.AddrPortFrom(c1, 80), client}:
		t.Errorf("reply tuple %v, want %s:80 -> %v", f.Reply, c1, client)
	case !slices.Equal(f.NAT, []string{"dnat"}):
		t.Errorf("nat %q, want [dnat]", f.NAT)
	}

	n, err := tp.b.FlushFlows(t.Context(), dataplane.FlowFilter{Port: 8080})
	if err != nil || n != 1 {
		t.Fatalf("FlushFlows port 8080 = %d, %v; want 1", n, err)
	}
	if flows, err := tp.b.Flows(t.Context(), published); err != nil || len(flows) != 0 {
		t.Errorf("flows to port 8080 after the flush: %+v, %v", flows, err)
	}
	egress, err := tp.b.Flows(t.Context(), dataplane.FlowFilter{Addr: ext, Port: 9000})
	if err != nil || len(egress) != 1 || !slices.Equal(egress[0].NAT, []string{"snat"}) {
		t.Errorf("the egress flow after flushing port 8080: %+v, %v; want one, snat", egress, err)
	}
}

// TestFill: the element counts of every set and map, from what was applied.
func TestFill(t *testing.T) {
	needRoot(t)
	_, h := newNS(t, "fill")
	b := newBackend(t, h)
	want := smallState(t)
	if err := b.Apply(t.Context(), want, nil, true); err != nil {
		t.Fatal(err)
	}
	fill := map[string]int{}
	total := 0
	for _, f := range b.Fill() {
		if f.Max != 0 {
			t.Errorf("%s: max %d, want 0 (nft sets have no fixed size)", f.Name, f.Max)
		}
		fill[f.Name] = f.Entries
		total += f.Entries
	}
	if n := len(inetSets) + len(bridgeSets); len(fill) != n {
		t.Errorf("Fill reports %d tables, want %d", len(fill), n)
	}
	for name, n := range map[string]int{
		"inet portcullis dnat4":          4,
		"inet portcullis dnat4-any":      1,
		"inet portcullis dnat6-range":    0,
		"inet portcullis masq4":          1,
		"bridge portcullis ports":        3,
		"bridge portcullis links4-reply": 1,
	} {
		if fill[name] != n {
			t.Errorf("%s: %d entries, want %d", name, fill[name], n)
		}
	}
	if n := len(wantElems(ModeFull, want)) + 1; total != n { // + saved-route_localnet
		t.Errorf("%d entries in all, want %d", total, n)
	}
}
