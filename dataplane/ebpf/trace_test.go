package ebpf

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cilium/ebpf/ringbuf"
)

// tracedFixture is a fixture whose maps are pinned under root/maps, as the
// backend pins them under its PinDir.
func tracedFixture(t *testing.T, icc bool) (*fixture, string) {
	t.Helper()
	requireBPF(t)
	root := filepath.Join(privateBPFFS(t), "portcullis")
	if err := os.MkdirAll(pinPaths{root}.maps(), 0o700); err != nil {
		t.Fatal(err)
	}
	return newFixture(t, fixtureOpts{icc: icc, masquerade: true, pinDir: pinPaths{root}.maps()}), root
}

func nextEvent(t *testing.T, tr *Tracer) TraceEvent {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	ev, err := tr.Next(ctx)
	if err != nil {
		t.Fatalf("next event: %v", err)
	}
	return ev
}

// TestTraceEvents: with a tracer on, drops and new translated flows come
// out of the ring buffer, decoded; with it off, nothing is written.
func TestTraceEvents(t *testing.T) {
	f, root := tracedFixture(t, false)
	f.put(uplinkEntries(ifUplink, []netip.Addr{ipNode, ipNode6}))
	f.port("web", f.a, ifA, 6, netip.Addr{}, 8080, 8080, 80)
	tr, err := OpenTracer(root, TraceKinds{Drops: true, NAT: true})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	var cfg bpfTraceCfg
	if err := f.d.maps[mapTraceCfg].Lookup(uint32(0), &cfg); err != nil || cfg.Flags != traceDrops|traceNAT || cfg.Until <= monoNow(t) {
		t.Fatalf("trace switch %+v, %v", cfg, err)
	}
	ap := netip.AddrPortFrom
	before := time.Now()

	f.dropped(progEndpointIngress, pkt4{srcMAC: macA, src: ipB, dst: ipExt, proto: 6, sport: 1234, dport: 80}.frame(), "spoof-ip")
	ev := nextEvent(t, tr)
	if ev.Kind != "drop" || ev.Reason != "spoof-ip" || ev.Ifindex != ifA || ev.Proto != "tcp" ||
		ev.Src != ap(ipB, 1234) || ev.Dst != ap(ipExt, 80) || ev.NATSrc.IsValid() {
		t.Errorf("spoof drop: %+v", ev)
	}
	if ev.Time.Before(before.Add(-time.Second)) || ev.Time.After(time.Now().Add(time.Second)) {
		t.Errorf("event time %v, sent at %v", ev.Time, before)
	}

	f.pass(progUplinkEgress, pkt4{srcMAC: macA, src: ipA, dst: ipExt, proto: 17, sport: 5353, dport: 53}.frame())
	if ev := nextEvent(t, tr); ev.Kind != "snat" || ev.Proto != "udp" || ev.Src != ap(ipA, 5353) || ev.NATSrc != ap(ipNode, 5353) || ev.NATDst != ap(ipExt, 53) {
		t.Errorf("masquerade: %+v", ev)
	}
	f.pass(progUplinkIngress, pkt4{src: ipExt, dst: ipNode, proto: 6, sport: 50000, dport: 8080, tcpFlags: 0x02}.frame())
	if ev := nextEvent(t, tr); ev.Kind != "dnat" || ev.Src != ap(ipExt, 50000) || ev.Dst != ap(ipNode, 8080) || ev.NATDst != ap(ipA, 80) {
		t.Errorf("published port: %+v", ev)
	}
	f.pass6(progUplinkIngress, pkt6{src: ipExt6, dst: ipNode6, next: 6, sport: 50001, dport: 8080, tcpFlags: 0x02}.frame())
	if ev := nextEvent(t, tr); ev.Kind != "dnat" || ev.Src != ap(ipExt6, 50001) || ev.NATDst != ap(ipA6, 80) {
		t.Errorf("published port over IPv6: %+v", ev)
	}
	// Not IP: no addresses, the reason all the same.
	f.dropped(progEndpointIngress, arpFrame(macA, macA, ipB, ipGW), "spoof-arp")
	if ev := nextEvent(t, tr); ev.Reason != "spoof-arp" || ev.Proto != "" || ev.Src.IsValid() {
		t.Errorf("arp spoof: %+v", ev)
	}
	// icc=false, and no link at all.
	f.dropped(progEndpointIngress, pkt4{srcMAC: macA, dstMAC: macB, src: ipA, dst: ipB, proto: 6, sport: 1, dport: 22}.frame(), "icc")
	if ev := nextEvent(t, tr); ev.Reason != "icc" || ev.Dst != ap(ipB, 22) {
		t.Errorf("icc drop: %+v", ev)
	}
	if got := tr.EndpointAddrs(ifA); len(got) != 2 || got[0] != ipA || got[1] != ipA6 {
		t.Errorf("endpoint addresses of ifindex %d: %v", ifA, got)
	}

	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.d.maps[mapTraceCfg].Lookup(uint32(0), &cfg); err != nil || cfg.Flags != 0 {
		t.Fatalf("trace switch after close: %+v, %v", cfg, err)
	}
	rd, err := ringbuf.NewReader(f.d.maps[mapEvents])
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	f.dropped(progEndpointIngress, pkt4{srcMAC: macA, src: ipB, dst: ipExt, proto: 6, sport: 1, dport: 2}.frame(), "spoof-ip")
	if n := rd.AvailableBytes(); n != 0 {
		t.Fatalf("tracing off, yet %d bytes of events", n)
	}
	// A tracer that died leaves the switch on, with a lease that ends (the
	// datapath's clock is coarse: a second ago is over for it too).
	if err := f.d.maps[mapTraceCfg].Put(uint32(0), bpfTraceCfg{Flags: traceDrops, Until: monoNow(t) - uint64(time.Second)}); err != nil {
		t.Fatal(err)
	}
	f.dropped(progEndpointIngress, pkt4{srcMAC: macA, src: ipB, dst: ipExt, proto: 6, sport: 1, dport: 2}.frame(), "spoof-ip")
	if n := rd.AvailableBytes(); n != 0 {
		t.Fatalf("lease over, yet %d bytes of events", n)
	}
}

// TestTraceKinds: a tracer of drops only gets no flow events, and one that
// was not given a pin directory says what is missing.
func TestTraceKinds(t *testing.T) {
	f, root := tracedFixture(t, true)
	tr, err := OpenTracer(root, TraceKinds{Drops: true})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	f.pass(progUplinkEgress, pkt4{srcMAC: macA, src: ipA, dst: ipExt, proto: 17, sport: 5353, dport: 53}.frame())
	f.dropped(progEndpointIngress, pkt4{srcMAC: macB, src: ipA, dst: ipExt, proto: 6, sport: 1, dport: 2}.frame(), "spoof-mac")
	if ev := nextEvent(t, tr); ev.Reason != "spoof-mac" {
		t.Errorf("first event %+v, want the spoof-mac drop alone", ev)
	}
	if _, err := OpenTracer(filepath.Join(root, "nothing"), TraceKinds{Drops: true}); err == nil {
		t.Error("tracer opened without pins")
	}
}
