package nft

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/google/nftables/expr"
	"github.com/ti-mo/conntrack"

	"github.com/portcullis/portcullis/dataplane/model"
)

// TestNATRegisterLayout: the lookup writes `addr . port` from register 1,
// and the nat expression must read the port right after the address: the
// 4-byte slot NFT_REG32_01 (9) for IPv4, the 16-byte NFT_REG_2 for IPv6.
func TestNATRegisterLayout(t *testing.T) {
	cases := []struct {
		r         rule
		wantProto uint32
		wantKey   []uint32 // registers the key fields are loaded into
	}{
		{mkRule(famInet, natMap(expr.NATTypeDestNAT, depIP4, mapDNAT4, fIPDaddr, fL4proto, fThDport)), 9, []uint32{1, 9, 10}},
		{mkRule(famInet, natMap(expr.NATTypeDestNAT, depIP6, mapDNAT6, fIP6Daddr, fL4proto, fThDport)), 2, []uint32{1, 2, 13}},
		{mkRule(famInet, natMap(expr.NATTypeDestNAT, depIP4, mapDNAT4Range, fIPDaddr, fL4proto, fThDport)), 0, []uint32{1, 9, 10}},
	}
	for _, c := range cases {
		var loads []uint32
		var nat *expr.NAT
		for _, e := range c.r.exprs {
			switch e := e.(type) {
			case *expr.Payload:
				loads = append(loads, e.DestRegister)
			case *expr.Meta:
				if e.Key != expr.MetaKeyNFPROTO {
					loads = append(loads, e.Register)
				}
			case *expr.NAT:
				nat = e
			}
		}
		if nat == nil || nat.RegAddrMin != 1 || nat.RegProtoMin != c.wantProto {
			t.Errorf("%s: nat %+v, want addr reg 1, proto reg %d", c.r.text, nat, c.wantProto)
		}
		if !equalU32(loads, c.wantKey) {
			t.Errorf("%s: key loaded into %v, want %v", c.r.text, loads, c.wantKey)
		}
	}
}

func equalU32(a, b []uint32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestDependencyBeforeConcat: a protocol dependency uses register 1, so it
// must come before the first field of a concatenation, not between fields.
func TestDependencyBeforeConcat(t *testing.T) {
	r := mkRule(famBridge, inSet(setPortIP4, fIifname, fIPSaddr), accept)
	if m, ok := r.exprs[0].(*expr.Meta); !ok || m.Key != expr.MetaKeyPROTOCOL {
		t.Fatalf("first expression %#v, want the meta protocol dependency", r.exprs[0])
	}
	if r.text != "iifname . ip saddr @port-ip4 accept" {
		t.Errorf("text %q", r.text)
	}
}

func TestKernelElems(t *testing.T) {
	// A concatenation pads every field to 4 bytes.
	e := el(mapDNAT4, vAddr(netip.MustParseAddr("192.0.2.1")), vProto(model.ProtoTCP), vPort(8080)).
		to(vAddr(netip.MustParseAddr("172.18.0.2")), vPort(80))
	k := e.kernelElems()
	wantKey := []byte{192, 0, 2, 1, 6, 0, 0, 0, 0x1f, 0x90, 0, 0}
	wantVal := []byte{172, 18, 0, 2, 0, 80, 0, 0}
	if len(k) != 1 || !bytes.Equal(k[0].Key, wantKey) || !bytes.Equal(k[0].Val, wantVal) {
		t.Errorf("dnat4 element %+v, want key %v val %v", k, wantKey, wantVal)
	}
	// A plain interval is a start and an end one past the last address.
	k = el(setMasq4, vPrefix(netip.MustParsePrefix("172.18.0.0/16"))).kernelElems()
	if len(k) != 2 || !bytes.Equal(k[0].Key, []byte{172, 18, 0, 0}) ||
		!bytes.Equal(k[1].Key, []byte{172, 19, 0, 0}) || !k[1].IntervalEnd {
		t.Errorf("masq4 element %+v", k)
	}
	// A concatenated interval has an inclusive key end.
	k = el(mapDNAT4AnyRange, vProto(model.ProtoUDP), vPortRange(8000, 8999)).
		to(vAddr(netip.MustParseAddr("172.18.0.2"))).kernelElems()
	if len(k) != 1 || !bytes.Equal(k[0].KeyEnd, []byte{17, 0, 0, 0, 0x23, 0x27, 0, 0}) {
		t.Errorf("range element %+v", k)
	}
}

func TestPortElemShapes(t *testing.T) {
	want := smallState(t)
	count := func(id string) int { return len(portElems(want.Ports[id])) }
	// Each dnat element has its twin in a dnat*-targets set (stale.go).
	cases := map[string]int{
		"web-http":  2 * 2, // wildcard, endpoint with IPv6: dnat4-any and dnat6-any
		"web-range": 2 * 2, // one interval element per family
		"app-sctp":  3 * 2, // shifted range: one element per port
		"db-dns":    1 * 2, // 127.0.0.1 only
		"web-tls6":  1 * 2, // IPv6 host address only
	}
	for id, n := range cases {
		if got := count(id); got != n {
			t.Errorf("%s: %d elements, want %d", id, got, n)
		}
	}
}

// TestPlanDelta: reference counts keep an element two links share, and an
// endpoint re-resolved without change costs nothing.
func TestPlanDelta(t *testing.T) {
	want := smallState(t)
	refs := refsOf(wantElems(ModeFull, want))
	apply := func(op model.Op) *plan {
		t.Helper()
		d, err := want.Do(op)
		if err != nil {
			t.Fatal(err)
		}
		p := planDelta(ModeFull, refs, d)
		p.commit(refs, map[string]int{})
		return p
	}
	p := apply(model.Op{Kind: "link", Link: &model.Link{Parent: "web", Alias: "db2", Child: "db"}})
	if len(p.adds)+len(p.dels) != 0 {
		t.Errorf("second link between the same endpoints: %d adds, %d dels, want none", len(p.adds), len(p.dels))
	}
	p = apply(model.Op{Kind: "link", Delete: true, Key: "web/db"})
	if len(p.adds)+len(p.dels) != 0 {
		t.Errorf("deleting one of two equal links: %d adds, %d dels, want none", len(p.adds), len(p.dels))
	}
	p = apply(model.Op{Kind: "link", Delete: true, Key: "web/db2"})
	if len(p.dels) != 2 || len(p.adds) != 0 {
		t.Errorf("deleting the last link: %d adds, %d dels, want 0 and 2", len(p.adds), len(p.dels))
	}
	// Re-putting an endpoint as it is re-resolves its ports and links: no kernel work.
	p = apply(model.Op{Kind: "endpoint", Endpoint: &want.Endpoints["web"].Spec})
	if len(p.adds)+len(p.dels) != 0 {
		t.Errorf("unchanged endpoint: %d adds, %d dels, want none", len(p.adds), len(p.dels))
	}
	// Moving a mapping to another container port changes the data under
	// the same key: delete then add, in one transaction; and its target
	// (the stale-flow guard's key) is replaced in the same one.
	spec := want.Ports["db-dns"].Spec()
	spec.Port = 5353
	p = apply(model.Op{Kind: "port", Port: &spec})
	if len(p.dels) != 2 || len(p.adds) != 2 || p.dels[0].id() != p.adds[0].id() ||
		p.dels[1].String() != "udp . 5353 . 172.18.0.3 . 53" || p.adds[1].String() != "udp . 5353 . 172.18.0.3 . 5353" {
		t.Errorf("changed mapping: dels %v adds %v, want the dnat element replaced under its key and the target replaced", p.dels, p.adds)
	}
	if got := wantElems(ModeFull, want); len(got) != len(refs) {
		t.Errorf("after the deltas refs hold %d elements, a full sync would hold %d", len(refs), len(got))
	}
}

func flow(proto uint8, src, dst string, sport, dport uint16, rsrc string, rsport uint16, status conntrack.Status) conntrack.Flow {
	f := conntrack.NewFlow(proto, status, netip.MustParseAddr(src), netip.MustParseAddr(dst), sport, dport, 30, 0)
	f.TupleReply.IP.SourceAddress = netip.MustParseAddr(rsrc)
	f.TupleReply.Proto.SourcePort = rsport
	return f
}

func TestConntrackMatch(t *testing.T) {
	want := smallState(t)
	p := want.Ports["web-http"] // tcp *:8080 -> 172.18.0.2:80
	local := func(a netip.Addr) bool { return a == netip.MustParseAddr("192.0.2.1") }
	removed, added := matchFor(p, true), matchFor(p, false)
	const tcp = model.ProtoTCP
	natted := flow(tcp, "192.0.2.2", "192.0.2.1", 40000, 8080, "172.18.0.2", 80, conntrack.StatusDstNAT)
	plain := flow(tcp, "192.0.2.2", "192.0.2.1", 40000, 8080, "192.0.2.1", 8080, 0)
	outbound := flow(tcp, "192.0.2.1", "198.51.100.7", 40000, 8080, "198.51.100.7", 8080, 0)
	other := flow(tcp, "192.0.2.2", "192.0.2.1", 40000, 8081, "192.0.2.1", 8081, 0)
	cases := []struct {
		name string
		m    ctMatch
		f    conntrack.Flow
		want bool
	}{
		{"removed: translated flow", removed, natted, true},
		{"removed: untranslated flow to the port", removed, plain, true},
		{"removed: node's own flow to a remote :8080", removed, outbound, false},
		{"removed: other port", removed, other, false},
		{"added: stale untranslated flow", added, plain, true},
		{"added: flow already going to the endpoint", added, natted, false},
		{"added: node's own flow to a remote :8080", added, outbound, false},
	}
	for _, c := range cases {
		if got := c.m.stale(c.f, local); got != c.want {
			t.Errorf("%s: stale = %v, want %v", c.name, got, c.want)
		}
	}
}
