package ebpf

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/portcullis/portcullis/dataplane/model"
)

// manyPorts returns n single-port wildcard mappings to ep, as pcbench's
// fillers: tcp 10000-59999, then udp 10000-59999.
func manyPorts(ep *model.REndpoint, n int) map[string]*model.RPort {
	out := make(map[string]*model.RPort, n)
	for i := 0; i < n; i++ {
		proto := uint8(model.ProtoTCP)
		if i >= 50000 {
			proto = model.ProtoUDP
		}
		port := uint16(10000 + i%50000)
		id := fmt.Sprintf("f%d", i)
		out[id] = &model.RPort{ID: id, EP: ep, Proto: proto, HostLo: port, HostHi: port, Lo: port}
	}
	return out
}

// TestApplyManyPorts: the maps hold pcbench's largest N, 100,000 published
// ports over IPv4 and IPv6 (pc_ports filled up at 65,536 before), and one
// more mapping on top is one small incremental Apply. Maps only: no
// traffic. The times are logged, not asserted (the machine decides them;
// pcbench measures them properly).
func TestApplyManyPorts(t *testing.T) {
	const n = 100000
	tp := newNetnsTopo(t)
	tp.a.IP6 = netip.MustParseAddr("fd00:17::2")
	tp.n.Subnet6 = netip.MustParsePrefix("fd00:17::/64")
	tp.want.Ports = manyPorts(tp.a, n)
	cfg := testConfig()
	be, err := New(Options{Attach: AttachTC, Config: &cfg, GCInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tp.ns.Do(func() error { return be.Uninstall(context.Background()) }) })
	ctx := context.Background()

	start := time.Now()
	tp.do(t, func() error { return be.Apply(ctx, tp.want, nil, true) })
	t.Logf("full apply of %d mappings: %v", n, time.Since(start))
	for _, name := range []string{mapPorts, mapPorts6} {
		got, err := countEntries(be.dp.maps[name])
		if err != nil || got != n {
			t.Fatalf("%s holds %d entries (%v), want %d", name, got, err, n)
		}
	}

	var times []time.Duration
	for i := 0; i < 5; i++ {
		p := &model.RPort{ID: fmt.Sprintf("a%d", i), EP: tp.a, Proto: model.ProtoTCP, HostLo: uint16(61000 + i), HostHi: uint16(61000 + i), Lo: 80}
		tp.want.Ports[p.ID] = p
		start = time.Now()
		tp.do(t, func() error {
			return be.Apply(ctx, tp.want, &model.Delta{Ports: []model.PortChange{{New: p}}}, false)
		})
		times = append(times, time.Since(start))
		var v bpfPortTarget
		k := bpfPortKey{Prefixlen: 80, Proto: model.ProtoTCP, Port: be16(p.HostLo)}
		if err := be.dp.maps[mapPorts].Lookup(k, &v); err != nil || v.Addr != be32(ipA) {
			t.Fatalf("mapping %s: %+v, %v", p.ID, v, err)
		}
	}
	t.Logf("one more mapping with %d present: %v (incremental apply, 5 times)", n, times)

	start = time.Now()
	fill := be.Fill()
	t.Logf("fill levels (%d maps): %v", len(fill), time.Since(start))
	requireCounted(t, be)
	for _, f := range fill {
		if f.Name == mapPorts && (f.Entries != n+5 || f.Max != int(DefaultMapSizes().Ports)) {
			t.Errorf("fill of %s: %+v", mapPorts, f)
		}
	}

	// The same again over the maps in place: a restart's full resync.
	start = time.Now()
	tp.do(t, func() error { return be.Apply(ctx, tp.want, nil, true) })
	t.Logf("full resync over %d mappings already in place: %v", n+5, time.Since(start))
}
