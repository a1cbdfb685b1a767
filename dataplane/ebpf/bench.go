package ebpf

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/rlimit"

	"github.com/portcullis/portcullis/dataplane/model"
)

// BenchPaths prepares packet paths through the programs for micro-benchmarks
// with BPF_PROG_TEST_RUN (bench/bpf_bench_test.go). Each path is a program,
// maps seeded through the backend's own entry builders, and one frame; Run
// has the kernel run it many times and returns the time per run that the
// kernel measured, so the number is the program alone.
//
// The kernel runs every repetition on the same packet, as the previous one
// left it, so a path that rewrites the packet would measure something else
// from its second run on. The NAT paths therefore get a mirror half: a
// pc_flows4 entry keyed by the translated tuple that translates it back, with
// the same hooks and state as the real half. Runs alternate between the
// two, each doing an established flow's work: one lookup, the deadline
// pushed, the same rewrites. BenchPaths checks that before returning.
//
// BPF_PROG_TEST_RUN gives the packet the device with ifindex 1 of the
// calling thread's namespace (its loopback device), so the endpoint that
// sends and the uplink both sit on ifindex 1; call BenchPaths and Run from a
// namespace of the benchmark's own. The programs' FIB lookups find nothing
// there and the fast path is off, so redirects are not part of the numbers.
// Nothing is attached or pinned; Close releases everything.
type Bench struct {
	Paths []BenchPath
	dps   []*datapath
	noop  *ebpf.Program
}

// BenchPath is one way through the datapath.
type BenchPath struct {
	Name    string // e.g. "snat-established"
	Program string // the program it runs
	Verdict uint32 // the TC_ACT_* verdict every run must return

	prog  *ebpf.Program
	frame []byte
}

// Run runs the path repeat times in the kernel and returns the kernel's time
// per run. It fails when the verdict is not the path's.
func (p BenchPath) Run(repeat int) (time.Duration, error) {
	ret, d, err := p.prog.Benchmark(p.frame, repeat, nil)
	if err != nil {
		return 0, fmt.Errorf("run %s: %w", p.Name, err)
	}
	if ret != p.Verdict {
		return d, fmt.Errorf("%s: verdict %d, want %d", p.Name, ret, p.Verdict)
	}
	return d, nil
}

// Close releases the programs and maps.
func (b *Bench) Close() {
	for _, d := range b.dps {
		d.Close()
	}
	if b.noop != nil {
		b.noop.Close()
	}
}

// The paths' addresses: endpoints A (the sender, ifindex 1) and B on
// 172.17.0.0/16, the uplink (also ifindex 1) with the node address, and a
// remote host.
var (
	benchMACA  = net.HardwareAddr{0x02, 0x42, 0xac, 0x11, 0x00, 0x02}
	benchMACB  = net.HardwareAddr{0x02, 0x42, 0xac, 0x11, 0x00, 0x03}
	benchMACGW = net.HardwareAddr{0x02, 0x42, 0x00, 0x00, 0x00, 0x01}
	benchA     = netip.MustParseAddr("172.17.0.2")
	benchB     = netip.MustParseAddr("172.17.0.3")
	benchNode  = netip.MustParseAddr("192.0.2.1")
	benchExt   = netip.MustParseAddr("198.51.100.7")
)

const (
	benchIfA    = 1
	benchIfB    = 20
	benchNetID  = 0x7ff00010 // no interface has it: FIB lookups fail
	tcActOK     = 0
	tcActShot   = 2
	maxBenchMap = 100000
)

// BenchPaths loads two private copies of the datapath, one with an icc=true
// masquerading network and one with icc=false, and prepares the paths:
//
//	snat-established  uplink egress: a container's packet on an established masqueraded flow
//	snat-reply        uplink ingress: its reply, reverse SNAT
//	dnat-established  uplink ingress: a client's packet on an established published-port flow
//	policy-pass       endpoint ingress: container to container, icc=true (no flow state)
//	icc-drop          endpoint ingress: container to container, icc=false, not linked
//	spoof-drop        endpoint ingress: a source address that is not the endpoint's
//	baseline          a program that only returns: what running any program costs
//	                  the kernel's test loop, to subtract from the others
//
// fill (at most 100,000) adds that many published ports (to B, as pcbench's
// fillers) and that many other established flows, so lookups run in maps of
// pcbench's sizes.
func BenchPaths(fill int) (*Bench, error) {
	if fill < 0 || fill > maxBenchMap {
		return nil, fmt.Errorf("fill %d: want 0 to %d", fill, maxBenchMap)
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("raise the memlock limit: %w", err)
	}
	b := &Bench{}
	for _, icc := range []bool{true, false} {
		d, err := benchDatapath(icc, fill)
		if err != nil {
			b.Close()
			return nil, err
		}
		b.dps = append(b.dps, d)
		paths, err := benchPathsOn(d, icc)
		if err != nil {
			b.Close()
			return nil, err
		}
		b.Paths = append(b.Paths, paths...)
	}
	noop, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "pc_bench_noop", Type: ebpf.SchedCLS, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, tcActOK), asm.Return()}})
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("load the baseline program: %w", err)
	}
	b.noop = noop
	frame := tcpFrame(benchMACA, benchMACGW, netip.AddrPortFrom(benchA, 40000), netip.AddrPortFrom(benchExt, 443), tcpACK, 0)
	b.Paths = append(b.Paths, BenchPath{Name: "baseline", Program: "pc_bench_noop", Verdict: tcActOK, prog: noop, frame: frame})
	return b, nil
}

// benchDatapath loads a datapath and seeds it with the network, A and B,
// the uplink, and fill ports and flows.
func benchDatapath(icc bool, fill int) (*datapath, error) {
	cfg := DefaultConfig()
	cfg.NoFIBLocal = true
	cfg.Maps = MapSizes{CT: uint32(2*fill + 4096), CT6: 1024, NAT6: 1024}
	d, err := loadDatapath(cfg, loadOptions{})
	if err != nil {
		return nil, err
	}
	n := &model.RNetwork{Name: "pc0", Bridge: "pc0", Subnet: netip.MustParsePrefix("172.17.0.0/16"),
		Gateway: netip.MustParseAddr("172.17.0.1"), ICC: icc, Masquerade: true}
	a := &model.REndpoint{ID: "a", Net: n, IP: benchA, MAC: benchMACA}
	bb := &model.REndpoint{ID: "b", Net: n, IP: benchB, MAC: benchMACB}
	es := netEntries(n, benchNetID, benchMACGW)
	es = append(es, epEntries(a, benchIfA, benchNetID)...)
	es = append(es, epEntries(bb, benchIfB, benchNetID)...)
	es = append(es, uplinkEntries(benchIfA, []netip.Addr{benchNode})...)
	es = append(es, portEntries(&model.RPort{EP: a, Proto: model.ProtoTCP, HostLo: 8080, HostHi: 8080, Lo: 80}, benchIfA)...)
	for i := 0; i < fill; i++ {
		proto := uint8(model.ProtoTCP)
		if i >= 50000 {
			proto = model.ProtoUDP
		}
		port := uint16(10000 + i%50000)
		es = append(es, portEntries(&model.RPort{EP: bb, Proto: proto, HostLo: port, HostHi: port, Lo: port}, benchIfB)...)
	}
	for _, e := range es {
		if err := d.maps[e.m].Update(e.key, e.val, ebpf.UpdateAny); err != nil {
			d.Close()
			return nil, fmt.Errorf("seed %s: %w", e.m, err)
		}
	}
	if err := fillFlows(d.maps[mapFlows4], fill); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

// fillFlows adds n established masqueraded flows from addresses of
// 10.0.0.0/8 (no endpoint's), both halves each.
func fillFlows(m *ebpf.Map, n int) error {
	exp := monotonicNow() + uint64(time.Hour)
	for i := 0; i < n; i++ {
		src := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		fwd := bpfCtKey{Saddr: be32(src), Daddr: be32(benchExt), Sport: be16(40000), Dport: be16(443), Proto: 6}
		nat := fwd
		nat.Saddr, nat.Sport = be32(benchNode), be16(uint16(1024+i%60000))
		nat.Daddr = be32(netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}))
		fe := bpfCtEntry{Expires: exp, Nat: nat, Flags: ctSNAT, Hooks: hookUplinkEgress, State: ctReplied}
		re := bpfCtEntry{Expires: exp, Nat: partner(bpfCtEntry{Nat: fwd}), Flags: ctSNAT | ctReverse,
			Hooks: hookUplinkIngress, State: ctReplied}
		if err := m.Update(fwd, fe, ebpf.UpdateAny); err != nil {
			return fmt.Errorf("fill conntrack: %w", err)
		}
		if err := m.Update(partner(fe), re, ebpf.UpdateAny); err != nil {
			return fmt.Errorf("fill conntrack: %w", err)
		}
	}
	return nil
}

// benchPathsOn opens the flows the NAT paths need (icc) or prepares the
// policy drops (!icc), and checks each path.
func benchPathsOn(d *datapath, icc bool) ([]BenchPath, error) {
	ap := netip.AddrPortFrom
	path := func(name, prog string, verdict uint32, frame []byte) BenchPath {
		return BenchPath{Name: name, Program: prog, Verdict: verdict, prog: d.progs[prog], frame: frame}
	}
	if !icc {
		paths := []BenchPath{
			path("icc-drop", progEndpointIngress, tcActShot,
				tcpFrame(benchMACA, benchMACB, ap(benchA, 40001), ap(benchB, 5432), tcpACK, 0)),
			path("spoof-drop", progEndpointIngress, tcActShot,
				tcpFrame(benchMACA, benchMACGW, ap(netip.MustParseAddr("172.17.0.99"), 40001), ap(benchExt, 443), tcpACK, 0)),
		}
		return paths, checkPaths(paths, false)
	}

	// A masqueraded flow, A:40000 -> ext:443, and a published-port flow,
	// ext:50000 -> node:8080 -> A:80, both established the datapath's way.
	open := []struct {
		prog  string
		frame []byte
	}{
		{progUplinkEgress, tcpFrame(benchMACA, benchMACGW, ap(benchA, 40000), ap(benchExt, 443), tcpSYN, 0)},
		{progUplinkIngress, tcpFrame(benchMACGW, benchMACGW, ap(benchExt, 50000), ap(benchNode, 8080), tcpSYN, 0)},
		{progEndpointIngress, tcpFrame(benchMACA, benchMACGW, ap(benchA, 80), ap(benchExt, 50000), tcpSYN|tcpACK, 0)},
	}
	for _, o := range open {
		if _, err := d.progs[o.prog].Run(&ebpf.RunOptions{Data: o.frame}); err != nil {
			return nil, fmt.Errorf("open bench flows: %w", err)
		}
	}
	snat := bpfCtKey{Saddr: be32(benchA), Daddr: be32(benchExt), Sport: be16(40000), Dport: be16(443), Proto: 6}
	var fwd bpfCtEntry
	if err := d.maps[mapFlows4].Lookup(snat, &fwd); err != nil {
		return nil, fmt.Errorf("masqueraded bench flow: %w", err)
	}
	reply := partner(fwd)
	// The reply marks the flow established on both halves.
	replyFrame := tcpFrame(benchMACGW, benchMACGW, ap(benchExt, 443), ap(benchNode, portFromBE16(reply.Dport)), tcpSYN|tcpACK, 0)
	if _, err := d.progs[progUplinkIngress].Run(&ebpf.RunOptions{Data: replyFrame}); err != nil {
		return nil, err
	}
	dnat := bpfCtKey{Saddr: be32(benchExt), Daddr: be32(benchNode), Sport: be16(50000), Dport: be16(8080), Proto: 6}
	for _, k := range []bpfCtKey{snat, reply, dnat} {
		if err := mirror(d.maps[mapFlows4], k); err != nil {
			return nil, err
		}
	}
	paths := []BenchPath{
		path("snat-established", progUplinkEgress, tcActOK,
			tcpFrame(benchMACA, benchMACGW, ap(benchA, 40000), ap(benchExt, 443), tcpACK, 0)),
		path("snat-reply", progUplinkIngress, tcActOK,
			tcpFrame(benchMACGW, benchMACGW, ap(benchExt, 443), ap(benchNode, portFromBE16(reply.Dport)), tcpACK, 0)),
		path("dnat-established", progUplinkIngress, tcActOK,
			tcpFrame(benchMACGW, benchMACGW, ap(benchExt, 50000), ap(benchNode, 8080), tcpACK, 0)),
	}
	if err := checkPaths(paths, true); err != nil {
		return nil, err
	}
	pass := []BenchPath{path("policy-pass", progEndpointIngress, tcActOK,
		tcpFrame(benchMACA, benchMACB, ap(benchA, 40001), ap(benchB, 5432), tcpACK, 0))}
	if err := checkPaths(pass, false); err != nil {
		return nil, err
	}
	return append(paths, pass...), nil
}

// mirror adds the half that translates the packet back after the half
// keyed by k translated it (see Bench).
func mirror(m *ebpf.Map, k bpfCtKey) error {
	var e bpfCtEntry
	if err := m.Lookup(k, &e); err != nil {
		return fmt.Errorf("bench flow half %+v: %w", k, err)
	}
	if e.State&ctReplied == 0 {
		return fmt.Errorf("bench flow half %+v is not established", k)
	}
	back := e
	back.Nat = k
	// A published-port half is checked against its mapping on every
	// packet (ct_lookup), which the mirror, keyed by the container's
	// address, would fail: it is no such half. So dnat-established pays
	// that check on every other run, the real half's.
	back.Flags &^= ctDNAT
	return m.Update(e.Nat, back, ebpf.UpdateNoExist)
}

// checkPaths runs each path once and twice: the verdict must be the
// path's, and a translating path must change the packet on the first run
// and restore it on the second (others must leave it alone).
func checkPaths(paths []BenchPath, translates bool) error {
	for _, p := range paths {
		for _, repeat := range []uint32{1, 2} {
			out := make([]byte, len(p.frame))
			ret, err := p.prog.Run(&ebpf.RunOptions{Data: p.frame, DataOut: out, Repeat: repeat})
			if err != nil {
				return fmt.Errorf("check %s: %w", p.Name, err)
			}
			if ret != p.Verdict {
				return fmt.Errorf("check %s: verdict %d, want %d", p.Name, ret, p.Verdict)
			}
			changed := !bytes.Equal(out, p.frame)
			if changed != (translates && repeat == 1) {
				return errors.New("check " + p.Name + ": the packet does not come back to itself every second run")
			}
		}
	}
	return nil
}
