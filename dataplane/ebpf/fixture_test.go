package ebpf

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/portcullis/portcullis/dataplane/model"
	"github.com/portcullis/portcullis/internal/nstest"
)

// Verdicts.
const (
	actOK   = 0
	actShot = 2
)

// The test topology. BPF_PROG_TEST_RUN runs every packet as if it arrived on
// ifindex 1 (the loopback device of the test's namespace), so endpoint A and
// the uplink both live there; the other endpoints only exist in the maps,
// except when a test sends as them (fixture.as).
const (
	ifA      = 1
	ifB      = 20
	ifC      = 21
	ifUplink = 1
	// Network ids are bridge ifindexes, used for FIB lookups: pick ones
	// no interface has, so lookups fail and packets stay with the test.
	netID  = 0x7ff00010
	net2ID = 0x7ff00011
)

var (
	ipA     = netip.MustParseAddr("172.17.0.2")
	ipB     = netip.MustParseAddr("172.17.0.3")
	ipGW    = netip.MustParseAddr("172.17.0.1")
	ipA6    = netip.MustParseAddr("fd00:17::2")
	ipB6    = netip.MustParseAddr("fd00:17::3")
	ipOther = netip.MustParseAddr("172.18.0.2") // a container on the second network
	ipGW2   = netip.MustParseAddr("172.18.0.1")
	ipNode  = netip.MustParseAddr("192.0.2.1") // the uplink's address
	ipNode2 = netip.MustParseAddr("192.0.2.5") // another node address
	ipExt   = netip.MustParseAddr("198.51.100.7")
	ipRtr   = netip.MustParseAddr("203.0.113.1")
)

type fixture struct {
	t *testing.T
	d *datapath
	// ifindex the packets arrive on (0: 1, the loopback device), and the
	// namespace that has a device with that index.
	ifindex uint32
	devs    **nstest.NS
	n1      *model.RNetwork
	n2      *model.RNetwork
	a       *model.REndpoint
	b       *model.REndpoint
	c       *model.REndpoint
}

type fixtureOpts struct {
	icc        bool
	masquerade bool
	internal   bool // the first network
	netSNAT    netip.Addr
	epSNAT     netip.Addr
	cfg        func(*Config)
	pinDir     string // maps pinned there (a directory on a bpffs), as the backend does
}

// newFixture loads the datapath and seeds it, through the same entry
// builders the backend uses, with two networks, three endpoints (A, B on
// the first, C on the second) and an uplink.
func newFixture(t *testing.T, o fixtureOpts) *fixture {
	cfg := testConfig()
	if o.cfg != nil {
		o.cfg(&cfg)
	}
	var d *datapath
	if o.pinDir == "" {
		d = loadTestDatapath(t, cfg)
	} else {
		requireBPF(t)
		var err error
		if d, err = loadDatapath(cfg, loadOptions{mapPinDir: o.pinDir}); err != nil {
			t.Fatalf("load datapath: %v", err)
		}
		t.Cleanup(d.Close)
	}
	f := &fixture{t: t, d: d, devs: new(*nstest.NS)}
	f.n1 = &model.RNetwork{
		Name: "pc0", Bridge: "pc0", Subnet: netip.MustParsePrefix("172.17.0.0/16"),
		Subnet6: netip.MustParsePrefix("fd00:17::/64"), Gateway: ipGW, Gateway6: netip.MustParseAddr("fd00:17::1"),
		ICC: o.icc, Masquerade: o.masquerade, SNATIP: o.netSNAT, Internal: o.internal,
	}
	f.n2 = &model.RNetwork{
		Name: "pc1", Bridge: "pc1", Subnet: netip.MustParsePrefix("172.18.0.0/16"), Gateway: ipGW2,
		ICC: true, Masquerade: true,
	}
	f.a = &model.REndpoint{ID: "a", Net: f.n1, IP: ipA, IP6: ipA6, MAC: macA, SNATIP: o.epSNAT, HostIfname: "veth-a"}
	f.b = &model.REndpoint{ID: "b", Net: f.n1, IP: ipB, IP6: ipB6, MAC: macB, HostIfname: "veth-b"}
	f.c = &model.REndpoint{ID: "c", Net: f.n2, IP: ipOther, MAC: macExt, HostIfname: "veth-c"}
	f.put(netEntries(f.n1, netID, macGW))
	f.put(netEntries(f.n2, net2ID, macGW))
	f.put(epEntries(f.a, ifA, netID))
	f.put(epEntries(f.b, ifB, netID))
	f.put(epEntries(f.c, ifC, net2ID))
	f.put(uplinkEntries(ifUplink, []netip.Addr{ipNode}))
	return f
}

func (f *fixture) put(es []entry) {
	f.t.Helper()
	for _, e := range es {
		if err := f.d.maps[e.m].Update(e.key, e.val, ebpf.UpdateAny); err != nil {
			f.t.Fatalf("seed %s %+v: %v", e.m, e.key, err)
		}
	}
}

func (f *fixture) del(es []entry) {
	f.t.Helper()
	for _, e := range es {
		if err := f.d.maps[e.m].Delete(e.key); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			f.t.Fatalf("delete %s %+v: %v", e.m, e.key, err)
		}
	}
}

func (f *fixture) port(id string, ep *model.REndpoint, epIf uint32, proto uint8, hostIP netip.Addr, hostLo, hostHi, lo uint16) *model.RPort {
	p := &model.RPort{ID: id, EP: ep, Proto: proto, HostIP: hostIP, HostLo: hostLo, HostHi: hostHi, Lo: lo}
	f.put(portEntries(p, epIf))
	return p
}

// skbContext is struct __sk_buff as BPF_PROG_TEST_RUN takes it: only the
// ifindex is set.
type skbContext struct {
	_       [10]uint32
	Ifindex uint32
	_       [37]uint32
}

// as returns the fixture sending as the endpoint on ifindex (ifB, ifC):
// BPF_PROG_TEST_RUN gives the packet the device with that index, so the
// first use makes a namespace with devices (veths) numbered ifB and ifC,
// and packets are run from a thread inside it.
func (f *fixture) as(ifindex uint32) *fixture {
	f.t.Helper()
	if *f.devs == nil {
		nstest.RequireRoot(f.t)
		ns := nstest.NewNS(f.t, "bpfrun", nstest.RandomSuffix())
		for _, idx := range []int{ifB, ifC} {
			ns.MustIP(f.t, "link", "add", "name", fmt.Sprintf("ep%d", idx), "index", fmt.Sprint(idx),
				"type", "veth", "peer", "name", fmt.Sprintf("peer%d", idx), "index", fmt.Sprint(idx+100))
		}
		*f.devs = ns
	}
	g := *f
	g.ifindex = ifindex
	return &g
}

// run sends frame through prog and returns the verdict and the frame as the
// program left it.
func (f *fixture) run(prog string, frame []byte) (uint32, []byte) {
	f.t.Helper()
	out := make([]byte, len(frame)+256)
	opts := &ebpf.RunOptions{Data: frame, DataOut: out}
	var (
		ret uint32
		err error
	)
	if f.ifindex > 1 {
		opts.Context = skbContext{Ifindex: f.ifindex}
		err = (*f.devs).Do(func() (err error) {
			ret, err = f.d.progs[prog].Run(opts)
			return err
		})
	} else {
		ret, err = f.d.progs[prog].Run(opts)
	}
	if err != nil {
		f.t.Fatalf("run %s: %v", prog, err)
	}
	return ret, out[:len(frame)]
}

// pass runs the frame, requires TC_ACT_OK and returns the decoded result.
func (f *fixture) pass(prog string, frame []byte) *decoded {
	f.t.Helper()
	ret, out := f.run(prog, frame)
	if ret != actOK {
		f.t.Fatalf("%s: verdict %d, want pass; drops %v", prog, ret, f.drops())
	}
	d, err := decode4(out)
	if err != nil {
		f.t.Fatalf("%s: output: %v", prog, err)
	}
	return d
}

// pass6 is pass for IPv6 frames.
func (f *fixture) pass6(prog string, frame []byte) *decoded {
	f.t.Helper()
	ret, out := f.run(prog, frame)
	if ret != actOK {
		f.t.Fatalf("%s: verdict %d, want pass; drops %v", prog, ret, f.drops())
	}
	d, err := decode6(out)
	if err != nil {
		f.t.Fatalf("%s: output: %v", prog, err)
	}
	return d
}

// passUnchanged requires TC_ACT_OK and the frame untouched.
func (f *fixture) passUnchanged(prog string, frame []byte) {
	f.t.Helper()
	ret, out := f.run(prog, frame)
	if ret != actOK {
		f.t.Fatalf("%s: verdict %d, want pass; drops %v", prog, ret, f.drops())
	}
	if !bytes.Equal(out, frame) {
		f.t.Fatalf("%s: frame was changed:\n got %x\nwant %x", prog, out, frame)
	}
}

// dropped requires TC_ACT_SHOT with the given reason counted once more.
func (f *fixture) dropped(prog string, frame []byte, reason string) {
	f.t.Helper()
	before := f.drops()[reason]
	ret, _ := f.run(prog, frame)
	if ret != actShot {
		f.t.Fatalf("%s: verdict %d, want drop (%s)", prog, ret, reason)
	}
	if got := f.drops()[reason]; got != before+1 {
		f.t.Fatalf("%s: drop counter %q = %d, want %d; all: %v", prog, reason, got, before+1, f.drops())
	}
}

// drops sums the per-CPU drop counters by reason name.
func (f *fixture) drops() map[string]uint64 {
	res, err := readDrops(f.d.maps[mapDrops])
	if err != nil {
		f.t.Fatalf("read drops: %v", err)
	}
	out := map[string]uint64{}
	for _, r := range res {
		out[r.reason] += r.packets
	}
	return out
}

func (f *fixture) ct() map[bpfCtKey]bpfCtEntry {
	f.t.Helper()
	out := map[bpfCtKey]bpfCtEntry{}
	var k bpfCtKey
	var v bpfCtEntry
	it := f.d.maps[mapFlows4].Iterate()
	for it.Next(&k, &v) {
		out[k] = v
	}
	if err := it.Err(); err != nil {
		f.t.Fatalf("iterate ct: %v", err)
	}
	return out
}

func ctKey(src netip.Addr, sport uint16, dst netip.Addr, dport uint16, proto uint8) bpfCtKey {
	return bpfCtKey{Saddr: be32(src), Daddr: be32(dst), Sport: be16(sport), Dport: be16(dport), Proto: proto}
}

var modelPort8000 = model.RPort{EP: &model.REndpoint{IP: ipA}, Proto: 17, HostLo: 8000, HostHi: 8999, Lo: 9000}
