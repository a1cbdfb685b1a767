package ebpf

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// privateBPFFS mounts a bpffs instance of the test's own in a temporary
// directory: whatever the test pins goes away with the unmount.
func privateBPFFS(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := unix.Mount("bpf", dir, "bpf", 0, ""); err != nil {
		t.Skipf("cannot mount a bpffs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	return dir
}

// TestPinnedMapResize: a size changed between two loads (an upgrade, a new
// Config) replaces the pinned map with one of the new size, entries copied,
// instead of failing the load.
func TestPinnedMapResize(t *testing.T) {
	requireBPF(t)
	pins := filepath.Join(privateBPFFS(t), "maps")
	if err := os.MkdirAll(pins, 0o700); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig()
	cfg.Maps = MapSizes{CT: 64, Ports: 16}
	d, err := loadDatapath(cfg, loadOptions{mapPinDir: pins})
	if err != nil {
		t.Fatal(err)
	}
	for i := uint16(0); i < 10; i++ {
		k := bpfPortKey{Prefixlen: 80, Proto: 6, Port: be16(1000 + i)}
		if err := d.maps[mapPorts].Put(k, bpfPortTarget{Addr: be32(ipA), PortLo: i}); err != nil {
			t.Fatal(err)
		}
		if err := d.maps[mapFlows4].Put(ctKey(ipA, 1000+i, ipExt, 80, 6), bpfCtEntry{Ifindex: uint32(i)}); err != nil {
			t.Fatal(err)
		}
	}
	ncpu, _ := ebpf.PossibleCPU()
	per := make([]uint64, ncpu)
	per[0] = 7
	if err := d.maps[mapDrops].Put(bpfDropKey{Reason: 6, Ifindex: 3}, per); err != nil {
		t.Fatal(err)
	}
	d.Close()

	// Ports grows; CT shrinks below what it holds.
	cfg.Maps = MapSizes{CT: 4, Ports: 1024}
	d, err = loadDatapath(cfg, loadOptions{mapPinDir: pins})
	if err != nil {
		t.Fatalf("load over pins of other sizes: %v", err)
	}
	defer d.Close()
	if m := d.maps[mapPorts]; m.MaxEntries() != 1024 {
		t.Fatalf("pc_ports max entries %d, want 1024", m.MaxEntries())
	}
	if n, _ := countEntries(d.maps[mapPorts]); n != 10 {
		t.Fatalf("pc_ports holds %d entries after the resize, want 10", n)
	}
	var v bpfPortTarget
	if err := d.maps[mapPorts].Lookup(bpfPortKey{Prefixlen: 80, Proto: 6, Port: be16(1007)}, &v); err != nil || v.PortLo != 7 {
		t.Fatalf("copied entry: %+v, %v", v, err)
	}
	if n, _ := countEntries(d.maps[mapFlows4]); n != 4 || d.maps[mapFlows4].MaxEntries() != 4 {
		t.Fatalf("pc_ct holds %d of %d, want 4 of 4", n, d.maps[mapFlows4].MaxEntries())
	}
	drops, err := readDrops(d.maps[mapDrops])
	if err != nil || len(drops) != 1 || drops[0].packets != 7 {
		t.Fatalf("drop counters after the load: %+v, %v", drops, err)
	}
	// The pins are the maps the programs use.
	pinned, err := ebpf.LoadPinnedMap(filepath.Join(pins, mapPorts), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer pinned.Close()
	if pinned.MaxEntries() != 1024 {
		t.Fatalf("pinned pc_ports has %d max entries", pinned.MaxEntries())
	}
	if _, err := os.Stat(filepath.Join(pins, mapPorts+"-resized")); !os.IsNotExist(err) {
		t.Fatalf("temporary pin left: %v", err)
	}
}

// TestPinsRenamedOnUpgrade: an agent upgraded from one that pinned the
// flow tables under their old names (pc_ct, pc_nat6, pc_ct6) finds them
// under the new ones, entries and all, the old pins and the retired
// pc_nat6_scratch gone, and an established flow keeps being translated.
func TestPinsRenamedOnUpgrade(t *testing.T) {
	requireBPF(t)
	pins := filepath.Join(privateBPFFS(t), "maps")
	if err := os.MkdirAll(pins, 0o700); err != nil {
		t.Fatal(err)
	}
	// The old agent: a masqueraded flow, established, and a routed IPv6 one.
	f := newFixture(t, fixtureOpts{icc: true, masquerade: true, pinDir: pins})
	out := pkt4{srcMAC: macA, src: ipA, dst: ipExt, proto: 6, sport: 41000, dport: 443, tcpFlags: 0x02}
	want(t, f.pass(progUplinkEgress, out.frame()), ipNode, 41000, ipExt, 443)
	back := pkt4{src: ipExt, dst: ipNode, proto: 6, sport: 443, dport: 41000, tcpFlags: 0x12}
	want(t, f.pass(progUplinkIngress, back.frame()), ipExt, 443, ipA, 41000)
	k6 := ct6Key(ipExt6, 443, ipA6, 40000, 6)
	if err := f.d.maps[mapTrack6].Put(k6, bpfTrack6Entry{Expires: monoNow(t) + uint64(time.Hour), State: ctReplied}); err != nil {
		t.Fatal(err)
	}
	f.d.Close()
	for _, r := range renamedPins {
		if err := os.Rename(filepath.Join(pins, r.new), filepath.Join(pins, r.old)); err != nil {
			t.Fatal(err)
		}
	}
	scratch, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 8, MaxEntries: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := scratch.Pin(filepath.Join(pins, "pc_nat6_scratch")); err != nil {
		t.Fatal(err)
	}
	scratch.Close()

	// The new agent.
	f = newFixture(t, fixtureOpts{icc: true, masquerade: true, pinDir: pins})
	for _, name := range []string{"pc_ct", "pc_nat6", "pc_ct6", "pc_nat6_scratch"} {
		if _, err := os.Stat(filepath.Join(pins, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("old pin %s still there (%v)", name, err)
		}
	}
	if _, ok := f.ct()[ctKey(ipA, 41000, ipExt, 443, 6)]; !ok {
		t.Errorf("the IPv4 flow is not in %s: %v", mapFlows4, f.ct())
	}
	var e6 bpfTrack6Entry
	if err := f.d.maps[mapTrack6].Lookup(k6, &e6); err != nil || e6.State != ctReplied {
		t.Errorf("the IPv6 flow in %s: %+v, %v", mapTrack6, e6, err)
	}
	// Established: the next reply is translated back, the next segment out
	// keeps its port (a new flow would too; the pair shows it is the old one).
	back.tcpFlags = 0x10
	want(t, f.pass(progUplinkIngress, back.frame()), ipExt, 443, ipA, 41000)
	out.tcpFlags = 0x10
	want(t, f.pass(progUplinkEgress, out.frame()), ipNode, 41000, ipExt, 443)
	if fe := f.ct()[ctKey(ipA, 41000, ipExt, 443, 6)]; fe.State&ctReplied == 0 {
		t.Errorf("the flow carried over lost its state: %+v", fe)
	}
}
