package ebpf

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf"
)

func TestPortBlocks(t *testing.T) {
	for _, tc := range []struct {
		lo, hi uint16
		n      int
	}{{80, 80, 1}, {8000, 8999, 6}, {0, 65535, 1}, {1, 65535, 16}, {1024, 2047, 1}, {8080, 8081, 1}, {8081, 8082, 2}} {
		bs := portBlocks(tc.lo, tc.hi)
		if len(bs) != tc.n {
			t.Errorf("%d-%d: %d blocks %v, want %d", tc.lo, tc.hi, len(bs), bs, tc.n)
		}
		// The blocks tile the range exactly.
		next := uint32(tc.lo)
		for _, b := range bs {
			if uint32(b.first) != next {
				t.Fatalf("%d-%d: block %v starts at %d, want %d", tc.lo, tc.hi, b, b.first, next)
			}
			next += 1 << (16 - b.bits)
		}
		if next != uint32(tc.hi)+1 {
			t.Fatalf("%d-%d: blocks end at %d", tc.lo, tc.hi, next-1)
		}
	}
}

func (f *fixture) age(keys ...bpfCtKey) {
	f.t.Helper()
	m := f.d.maps[mapFlows4]
	for _, k := range keys {
		var e bpfCtEntry
		if err := m.Lookup(k, &e); err != nil {
			f.t.Fatal(err)
		}
		e.Expires = 1
		if err := m.Update(k, e, 0); err != nil {
			f.t.Fatal(err)
		}
	}
}

// TestConntrackGC: a pair goes when both halves expired, not before.
func TestConntrackGC(t *testing.T) {
	f := newFixture(t, fixtureOpts{icc: true, masquerade: true})
	f.pass(progUplinkEgress, pkt4{srcMAC: macA, src: ipA, dst: ipExt, proto: 17, sport: 1000, dport: 53}.frame())
	f.pass(progUplinkEgress, pkt4{srcMAC: macA, src: ipA, dst: ipExt, proto: 17, sport: 1001, dport: 53}.frame())
	f.pass(progUplinkEgress, pkt4{srcMAC: macA, src: ipA, dst: ipExt, proto: 17, sport: 1002, dport: 53}.frame())
	f.age(ctKey(ipA, 1000, ipExt, 53, 17), ctKey(ipExt, 53, ipNode, 1000, 17)) // both halves
	f.age(ctKey(ipA, 1001, ipExt, 53, 17))                                     // one half only

	res, err := ctTable(f.d.maps[mapFlows4]).collect(monoNow(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Entries != 6 || res.Deleted != 2 {
		t.Fatalf("gc %+v, want 2 of 6 deleted", res)
	}
	ct := f.ct()
	if _, ok := ct[ctKey(ipA, 1000, ipExt, 53, 17)]; ok {
		t.Fatal("expired pair still there")
	}
	if _, ok := ct[ctKey(ipA, 1001, ipExt, 53, 17)]; !ok {
		t.Fatal("half-expired pair was collected")
	}

	// IPv6 flows of a routed network (masquerade off): one entry each,
	// gone once expired.
	f.n1.Masquerade = false
	f.put(netEntries(f.n1, netID, macGW))
	remote := netip.MustParseAddr("2001:db8::99")
	for _, port := range []uint16{1, 2} {
		f.passUnchanged(progUplinkEgress, pkt6{srcMAC: macA, src: ipA6, dst: remote, next: 17, sport: port, dport: 53}.frame())
	}
	m6 := f.d.maps[mapTrack6]
	k := bpfCt6Key{Saddr: remote.As16(), Daddr: ipA6.As16(), Sport: be16(53), Dport: be16(1), Proto: 17}
	var e bpfTrack6Entry
	if err := m6.Lookup(k, &e); err != nil {
		t.Fatalf("ipv6 flow: %v", err)
	}
	e.Expires = 1
	if err := m6.Update(k, e, 0); err != nil {
		t.Fatal(err)
	}
	res, err = collectGarbage6(m6, monoNow(t))
	if err != nil || res.Entries != 2 || res.Deleted != 1 {
		t.Fatalf("gc6 %+v, %v", res, err)
	}
}

// TestFlushCT is the state side of B13: removing a mapping forgets its flows,
// removing an endpoint forgets all of its flows, and nothing else goes.
func TestFlushCT(t *testing.T) {
	f := newFixture(t, fixtureOpts{icc: true, masquerade: true})
	f.port("dns", f.a, ifA, 17, netip.Addr{}, 5353, 5353, 53)
	f.pass(progUplinkIngress, pkt4{src: ipExt, dst: ipNode, proto: 17, sport: 999, dport: 5353}.frame())
	f.pass(progUplinkEgress, pkt4{srcMAC: macA, src: ipA, dst: ipExt, proto: 17, sport: 2000, dport: 53}.frame())
	f.pass(progUplinkEgress, pkt4{srcMAC: macB, src: ipB, dst: ipExt, proto: 17, sport: 2000, dport: 53}.frame())
	if n := len(f.ct()); n != 6 {
		t.Fatalf("%d entries", n)
	}
	n, err := flushCT(f.d.maps[mapFlows4], []flushRule{{port: true, addr: ipA, proto: 17, lo: 5353, hi: 5353}})
	if err != nil || n != 2 {
		t.Fatalf("port flush removed %d (%v), want 2", n, err)
	}
	if _, ok := f.ct()[ctKey(ipExt, 999, ipNode, 5353, 17)]; ok {
		t.Fatal("the mapping's flow survived")
	}
	n, err = flushCT(f.d.maps[mapFlows4], []flushRule{{addr: ipA}})
	if err != nil || n != 2 {
		t.Fatalf("endpoint flush removed %d (%v), want 2", n, err)
	}
	if got := len(f.ct()); got != 2 {
		t.Fatalf("%d entries left, want B's pair", got)
	}
}

// BenchmarkCollect is one garbage-collection pass over 50,000 live halves
// (nothing to delete), with the collector's kept buffers and without:
// what a pass allocates.
func BenchmarkCollect(b *testing.B) {
	requireBPF(b)
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Hash, KeySize: uint32(binary.Size(bpfCtKey{})),
		ValueSize: uint32(binary.Size(bpfCtEntry{})), MaxEntries: 65536})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	far := monotonicNow() + uint64(time.Hour)
	for i := range 25000 {
		k := bpfCtKey{Saddr: uint32(i), Daddr: 7, Sport: 1, Dport: 2, Proto: 6}
		e := bpfCtEntry{Expires: far, Nat: bpfCtKey{Saddr: uint32(i), Daddr: 8, Sport: 1, Dport: 2, Proto: 6}}
		if err := m.Put(k, e); err != nil {
			b.Fatal(err)
		}
		if err := m.Put(partner(e), bpfCtEntry{Expires: far, Nat: partner(bpfCtEntry{Nat: k})}); err != nil {
			b.Fatal(err)
		}
	}
	for _, kept := range []bool{true, false} {
		b.Run(fmt.Sprintf("kept=%v", kept), func(b *testing.B) {
			var buf *gcBuffers[bpfCtKey, bpfCtEntry]
			if kept {
				buf = &gcBuffers[bpfCtKey, bpfCtEntry]{}
			}
			b.ReportAllocs()
			for b.Loop() {
				res, err := ctTable(m).collect(monotonicNow(), buf)
				if err != nil || res.Entries != 50000 || res.Deleted != 0 {
					b.Fatalf("%+v, %v", res, err)
				}
			}
		})
	}
}
