package ebpf

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/portcullis/portcullis/dataplane/model"
	"github.com/portcullis/portcullis/internal/nstest"
)

// testPinDir returns a fresh directory on the host's bpffs, mounting the
// bpffs first when it is not, and removes the directory afterwards.
func testPinDir(t *testing.T) string {
	t.Helper()
	const root = "/sys/fs/bpf"
	if err := checkBPFFS(root); err != nil {
		if err := unix.Mount("bpf", root, "bpf", 0, ""); err != nil {
			t.Skipf("no bpffs at %s and cannot mount one: %v", root, err)
		}
	}
	b := make([]byte, 4)
	rand.Read(b)
	dir := filepath.Join(root, "portcullis-test-"+hex.EncodeToString(b))
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// netnsTopo is a node namespace with a bridge, two endpoint veths (their
// peers stay in the namespace: only attachment matters here) and an uplink.
type netnsTopo struct {
	ns   *nstest.NS
	want *model.Resolved
	n    *model.RNetwork
	a, b *model.REndpoint
}

func newNetnsTopo(t *testing.T) *netnsTopo {
	t.Helper()
	requireBPF(t)
	nstest.RequireRoot(t)
	ns := nstest.NewNS(t, "ebpf", nstest.RandomSuffix())
	for _, args := range [][]string{
		{"link", "add", "pc0", "type", "bridge"},
		{"link", "set", "pc0", "up"},
		{"addr", "add", "172.17.0.1/16", "dev", "pc0"},
		{"link", "add", "veth-a", "type", "veth", "peer", "name", "ctr-a"},
		{"link", "add", "veth-b", "type", "veth", "peer", "name", "ctr-b"},
		{"link", "set", "veth-a", "master", "pc0", "up"},
		{"link", "set", "veth-b", "master", "pc0", "up"},
		{"link", "add", "up0", "type", "veth", "peer", "name", "up0-peer"},
		{"link", "set", "up0", "up"},
		{"addr", "add", "192.0.2.1/24", "dev", "up0"},
	} {
		ns.MustIP(t, args...)
	}
	n := &model.RNetwork{Name: "pc0", Bridge: "pc0", Subnet: netip.MustParsePrefix("172.17.0.0/16"), Gateway: ipGW, ICC: false, Masquerade: true}
	a := &model.REndpoint{ID: "a", Net: n, IP: ipA, MAC: macA, HostIfname: "veth-a", Exposed: []model.RPortProto{{Port: 80, Proto: 6}}}
	b := &model.REndpoint{ID: "b", Net: n, IP: ipB, MAC: macB, HostIfname: "veth-b", Exposed: []model.RPortProto{{Port: 5432, Proto: 6}}}
	want := &model.Resolved{
		Settings:  model.Settings{Uplinks: []string{"up0"}},
		Networks:  map[string]*model.RNetwork{"pc0": n},
		Endpoints: map[string]*model.REndpoint{"a": a, "b": b},
		Ports:     map[string]*model.RPort{},
		Links:     map[string]*model.RLink{"a/db": {Parent: a, Child: b, Alias: "db"}},
	}
	return &netnsTopo{ns: ns, want: want, n: n, a: a, b: b}
}

func (tp *netnsTopo) do(t *testing.T, f func() error) {
	t.Helper()
	if err := tp.ns.Do(f); err != nil {
		t.Fatal(err)
	}
}

func ifindex(name string) int {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return -1
	}
	return l.Attrs().Index
}

// attachedProgs lists the programs on a hook, in either mode.
func attachedProgs(name, dir string) ([]string, error) {
	idx := ifindex(name)
	if idx < 0 {
		return nil, errors.New("no interface " + name)
	}
	var out []string
	at := tcxAttachType(dir)
	res, err := link.QueryPrograms(link.QueryOptions{Target: idx, Attach: at})
	if err == nil {
		for _, p := range res.Programs {
			prog, err := ebpf.NewProgramFromID(p.ID)
			if err != nil {
				return nil, err
			}
			info, _ := prog.Info()
			prog.Close()
			out = append(out, "tcx:"+info.Name)
		}
	}
	l, _ := netlink.LinkByIndex(idx)
	fs, err := netlink.FilterList(l, tcParent(dir))
	if err == nil {
		for _, f := range fs {
			if bf, ok := f.(*netlink.BpfFilter); ok {
				out = append(out, "tc:"+bf.Name)
			}
		}
	}
	return out, nil
}

func requireAttached(t *testing.T, name, dir, prog, mode string) {
	t.Helper()
	got, err := attachedProgs(name, dir)
	if err != nil {
		t.Error(err)
		return
	}
	wantName := mode + ":" + prog
	if len(got) != 1 || got[0] != wantName {
		t.Errorf("%s %s: attached %v, want [%s]", name, dir, got, wantName)
	}
}

func requireDetached(t *testing.T, name, dir string) {
	t.Helper()
	got, err := attachedProgs(name, dir)
	if err != nil {
		t.Error(err)
		return
	}
	if len(got) != 0 {
		t.Errorf("%s %s: still attached: %v", name, dir, got)
	}
}

// TestBackendAttach runs the backend's life cycle in a fresh namespace, with
// tcx and with the clsact fallback: full apply, incremental changes, a
// failing change that must leave everything as it was, a restart that
// swaps the programs under the pinned links, and uninstall.
func TestBackendAttach(t *testing.T) {
	for _, mode := range []AttachMode{AttachTCX, AttachTC} {
		t.Run(string(mode), func(t *testing.T) {
			if mode == AttachTCX {
				requireTCX(t)
			}
			tp := newNetnsTopo(t)
			pins := testPinDir(t)
			cfg := testConfig()
			opts := Options{PinDir: pins, Attach: mode, Config: &cfg, GCInterval: -1}
			be, err := New(opts)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { tp.ns.Do(func() error { return be.Uninstall(context.Background()) }) })
			ctx := context.Background()
			m := string(mode)

			tp.do(t, func() error { return be.Apply(ctx, tp.want, nil, true) })
			tp.do(t, func() error {
				requireAttached(t, "veth-a", dirIngress, progEndpointIngress, m)
				requireAttached(t, "veth-b", dirIngress, progEndpointIngress, m)
				requireAttached(t, "up0", dirIngress, progUplinkIngress, m)
				requireAttached(t, "up0", dirEgress, progUplinkEgress, m)
				var ep bpfEndpoint
				if err := be.dp.maps[mapEndpoints].Lookup(uint32(ifindex("veth-a")), &ep); err != nil || ep.Ip4 != be32(ipA) {
					t.Errorf("endpoint a in the map: %+v, %v", ep, err)
				}
				var up bpfUplink
				if err := be.dp.maps[mapUplinks].Lookup(uint32(ifindex("up0")), &up); err != nil || up.Addr4 != be32(ipNode) {
					t.Errorf("uplink in the map: %+v, %v", up, err)
				}
				var lk uint8
				lkey := bpfLinkKey{Parent: uint32(ifindex("veth-a")), Child: uint32(ifindex("veth-b")), Port: 5432, Proto: 6}
				if err := be.dp.maps[mapLinks].Lookup(lkey, &lk); err != nil {
					t.Errorf("link entry: %v", err)
				}
				// Drop counters are named after the endpoints.
				if id := be.epIDs[uint32(ifindex("veth-b"))]; id != "b" || len(be.epIDs) != 2 {
					t.Errorf("endpoints by veth: %v", be.epIDs)
				}
				return nil
			})
			if st := be.Status(); st["attach_mode"] != m {
				t.Fatalf("status %v", st)
			}

			// Incremental: publish a port range.
			p := &model.RPort{ID: "web", EP: tp.a, Proto: 6, HostLo: 8000, HostHi: 8099, Lo: 8000}
			tp.want.Ports["web"] = p
			tp.do(t, func() error { return be.Apply(ctx, tp.want, &model.Delta{Ports: []model.PortChange{{New: p}}}, false) })
			before := dumpConfig(t, be)
			if n := len(before[mapPorts]); n != len(portBlocks(8000, 8099)) {
				t.Fatalf("%d port entries, want %d", n, len(portBlocks(8000, 8099)))
			}

			// A change that cannot be made (its veth does not exist) leaves
			// the maps and the attachments exactly as they were (B20).
			c := &model.REndpoint{ID: "c", Net: tp.n, IP: netip.MustParseAddr("172.17.0.9"), HostIfname: "veth-missing"}
			q := &model.RPort{ID: "q", EP: tp.b, Proto: 17, HostLo: 53, HostHi: 53, Lo: 53}
			bad := &model.Delta{
				Ports:     []model.PortChange{{New: q}},
				Endpoints: []model.EndpointChange{{New: c}},
			}
			var aerr error
			tp.do(t, func() error { aerr = be.Apply(ctx, tp.want, bad, false); return nil })
			if aerr == nil {
				t.Fatal("apply with a missing veth succeeded")
			}
			if after := dumpConfig(t, be); !sameConfig(before, after) {
				t.Fatalf("failed apply changed the maps:\nbefore %v\nafter  %v", before, after)
			}
			requireCounted(t, be)

			// Remove endpoint b (and its link): detached, entries gone.
			delete(tp.want.Endpoints, "b")
			l := tp.want.Links["a/db"]
			delete(tp.want.Links, "a/db")
			tp.do(t, func() error {
				return be.Apply(ctx, tp.want, &model.Delta{
					Endpoints: []model.EndpointChange{{Old: tp.b}},
					Links:     []model.LinkChange{{Old: l}},
				}, false)
			})
			tp.do(t, func() error {
				requireDetached(t, "veth-b", dirIngress)
				requireAttached(t, "veth-a", dirIngress, progEndpointIngress, m)
				return nil
			})
			for _, id := range be.epIDs {
				if id == "b" || len(be.epIDs) != 1 {
					t.Fatalf("endpoints by veth after removing b: %v", be.epIDs)
				}
			}
			requireCounted(t, be)
			if n := len(dumpConfig(t, be)[mapLinks]); n != 0 {
				t.Fatalf("%d link entries left", n)
			}
			afterRemoval := dumpConfig(t, be)
			dumpConfigAfterRemoval := func(map[string]map[string]string) map[string]map[string]string { return afterRemoval }

			// Junk that nothing wants, as a crashed agent could leave: the
			// full resync at restart must remove it.
			junk := bpfPortKey{Prefixlen: 80, Proto: 6, Port: be16(1)}
			if err := be.dp.maps[mapPorts].Update(junk, bpfPortTarget{}, 0); err != nil {
				t.Fatal(err)
			}

			// Restart: a new backend on the same pins swaps its programs in.
			be.Close()
			be2, err := New(opts)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { tp.ns.Do(func() error { return be2.Uninstall(context.Background()) }) })
			tp.do(t, func() error { return be2.Apply(ctx, tp.want, nil, true) })
			tp.do(t, func() error {
				requireAttached(t, "veth-a", dirIngress, progEndpointIngress, m)
				requireAttached(t, "up0", dirEgress, progUplinkEgress, m)
				requireDetached(t, "veth-b", dirIngress)
				return nil
			})
			if after := dumpConfig(t, be2); !sameConfig(dumpConfigAfterRemoval(before), after) {
				t.Fatalf("after restart:\n%v\nwant\n%v", after, dumpConfigAfterRemoval(before))
			}

			// Uninstall leaves nothing (B22), and may be repeated.
			for i := 0; i < 2; i++ {
				tp.do(t, func() error { return be2.Uninstall(ctx) })
			}
			tp.do(t, func() error {
				for _, h := range [][2]string{{"veth-a", dirIngress}, {"up0", dirIngress}, {"up0", dirEgress}} {
					requireDetached(t, h[0], h[1])
				}
				return nil
			})
			if _, err := os.Stat(pins); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("pin directory left behind: %v", err)
			}
		})
	}
}

// requireCounted checks that the state's entry counts (what Fill reports
// for the configuration maps) are what the maps hold.
func requireCounted(t *testing.T, be *Backend) {
	t.Helper()
	for _, name := range configMaps {
		n, err := countEntries(be.dp.maps[name])
		if err != nil || n != be.st.entries[name] {
			t.Errorf("%s holds %d entries (%v), the state counts %d", name, n, err, be.st.entries[name])
		}
	}
}

// dumpConfig reads every configuration map as raw bytes.
func dumpConfig(t *testing.T, be *Backend) map[string]map[string]string {
	t.Helper()
	out := map[string]map[string]string{}
	for _, name := range configMaps {
		m := be.dp.maps[name]
		entries := map[string]string{}
		var prev any
		for {
			k := make([]byte, m.KeySize())
			if err := m.NextKey(prev, k); err != nil {
				break
			}
			v := make([]byte, m.ValueSize())
			if err := m.Lookup(k, v); err != nil {
				t.Fatal(err)
			}
			entries[string(k)] = string(v)
			prev = k
		}
		out[name] = entries
	}
	return out
}

func sameConfig(a, b map[string]map[string]string) bool {
	for name := range a {
		if len(a[name]) != len(b[name]) {
			return false
		}
		for k, v := range a[name] {
			if b[name][k] != v {
				return false
			}
		}
	}
	return true
}

var _ = net.HardwareAddr(nil)

// TestBackendResync: a full Apply over a live state (the reconciler's
// recovery after a failed Apply) swaps programs in place and attaches
// nothing twice, with and without pins.
func TestBackendResync(t *testing.T) {
	for _, pinned := range []bool{false, true} {
		t.Run(map[bool]string{false: "unpinned", true: "pinned"}[pinned], func(t *testing.T) {
			requireTCX(t)
			tp := newNetnsTopo(t)
			cfg := testConfig()
			opts := Options{Attach: AttachTCX, Config: &cfg, GCInterval: -1}
			if pinned {
				opts.PinDir = testPinDir(t)
			}
			be, err := New(opts)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { tp.ns.Do(func() error { return be.Uninstall(context.Background()) }) })
			for i := 0; i < 3; i++ {
				tp.do(t, func() error { return be.Apply(context.Background(), tp.want, nil, true) })
			}
			tp.do(t, func() error {
				requireAttached(t, "veth-a", dirIngress, progEndpointIngress, "tcx")
				requireAttached(t, "up0", dirEgress, progUplinkEgress, "tcx")
				return nil
			})
		})
	}
}
