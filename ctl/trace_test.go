package ctl

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	pcebpf "github.com/portcullis/portcullis/dataplane/ebpf"
	"github.com/portcullis/portcullis/dataplane/model"
	"github.com/portcullis/portcullis/internal/nstest"
)

// traceTopo is a node namespace with bridge pc0 and one container, a, whose
// veth the eBPF backend serves, its maps pinned in a bpffs of the test's
// own: what pcctl trace finds on a node, with no agent running.
type traceTopo struct {
	node, ctr *nstest.NS
	bpffs     string // the -bpffs directory
	mac       net.HardwareAddr
}

func newTraceTopo(t *testing.T) *traceTopo {
	t.Helper()
	nstest.RequireRoot(t)
	if err := rlimit.RemoveMemlock(); err != nil {
		t.Skipf("remove memlock rlimit: %v", err)
	}
	mnt := t.TempDir()
	if err := unix.Mount("bpf", mnt, "bpf", 0, ""); err != nil {
		t.Skipf("cannot mount a bpffs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) })
	sfx := nstest.RandomSuffix()
	tp := &traceTopo{
		node:  nstest.NewNS(t, "trnode", sfx),
		ctr:   nstest.NewNS(t, "trctr", sfx),
		bpffs: filepath.Join(mnt, "portcullis"),
		mac:   net.HardwareAddr{0x02, 0x42, 0xac, 0x11, 0x00, 0x02},
	}
	tp.node.MustIP(t, "link", "add", "pc0", "type", "bridge")
	tp.node.MustIP(t, "addr", "add", "172.17.0.1/16", "dev", "pc0")
	tp.node.MustIP(t, "link", "set", "pc0", "up")
	tp.node.MustIP(t, "link", "add", "veth-a", "type", "veth", "peer", "name", "eth0", "netns", tp.ctr.Name)
	tp.node.MustIP(t, "link", "set", "veth-a", "master", "pc0", "up")
	tp.ctr.MustIP(t, "link", "set", "eth0", "address", tp.mac.String())
	tp.ctr.MustIP(t, "addr", "add", "172.17.0.2/16", "dev", "eth0")
	tp.ctr.MustIP(t, "link", "set", "eth0", "up")

	n := &model.RNetwork{Name: "pc0", Bridge: "pc0", Subnet: netip.MustParsePrefix("172.17.0.0/16"),
		Gateway: netip.MustParseAddr("172.17.0.1"), ICC: true, Masquerade: true}
	a := &model.REndpoint{ID: "a", Net: n, IP: netip.MustParseAddr("172.17.0.2"), MAC: tp.mac, HostIfname: "veth-a"}
	want := &model.Resolved{
		Networks:  map[string]*model.RNetwork{"pc0": n},
		Endpoints: map[string]*model.REndpoint{"a": a},
		Ports:     map[string]*model.RPort{},
		Links:     map[string]*model.RLink{},
	}
	cfg := pcebpf.DefaultConfig()
	cfg.NoFIBLocal = true
	cfg.Maps = pcebpf.MapSizes{CT: 4096, CT6: 1024, NAT6: 1024}
	be, err := pcebpf.New(pcebpf.Options{PinDir: tp.bpffs, Config: &cfg, GCInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tp.node.Do(func() error { return be.Uninstall(context.Background()) }) })
	if err := tp.node.Do(func() error { return be.Apply(context.Background(), want, nil, true) }); err != nil {
		t.Fatal(err)
	}
	// The agent is gone: only the pins are left (and the programs attached).
	be.Close()
	return tp
}

// traceSwitch reads the datapath's trace switch from the pins.
func (tp *traceTopo) traceSwitch(t *testing.T) uint32 {
	t.Helper()
	m, err := ebpf.LoadPinnedMap(filepath.Join(tp.bpffs, "maps", "pc_trace_cfg"), &ebpf.LoadPinOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	var v struct {
		Flags, Pad uint32
		Until      uint64
	}
	if err := m.Lookup(uint32(0), &v); err != nil {
		t.Fatal(err)
	}
	return v.Flags
}

// spoof sends, from the container, a packet whose source is not its own.
func (tp *traceTopo) spoof(t *testing.T) {
	t.Helper()
	src, dst := netip.MustParseAddr("10.9.9.9"), netip.MustParseAddr("172.17.0.1")
	ip := nstest.IPv4(src, dst, 17, 64, 1, nstest.UDP(src, dst, 1234, 53, []byte("x")))
	bcast := net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	if err := nstest.SendFrame(tp.ctr, "eth0", nstest.Ethernet(bcast, tp.mac, 0x0800, ip)); err != nil {
		t.Fatal(err)
	}
}

// startTrace runs pcctl trace -bpffs DIR args... in the node namespace
// (interface names are looked up there), and returns once tracing is on;
// the channel gives its output and error when it ends.
func (tp *traceTopo) startTrace(t *testing.T, args ...string) <-chan [2]string {
	return tp.startPcctl(t, append([]string{"trace", "-bpffs", tp.bpffs}, args...)...)
}

// startPcctl is startTrace with pcctl's whole command line.
func (tp *traceTopo) startPcctl(t *testing.T, args ...string) <-chan [2]string {
	t.Helper()
	done := make(chan [2]string, 1)
	go func() {
		var out, errb bytes.Buffer
		env := Env{Stdout: &out, Stderr: &errb, Getenv: func(k string) string {
			if k == "PORTCULLIS_SOCKET" {
				return filepath.Join(tp.bpffs, "no-agent.sock")
			}
			return ""
		}}
		err := tp.node.Do(func() error {
			return Run(context.Background(), args, env)
		})
		res := [2]string{out.String(), ""}
		if err != nil {
			res[1] = err.Error() + ": " + errb.String()
		}
		done <- res
	}()
	for start := time.Now(); tp.traceSwitch(t) == 0; time.Sleep(20 * time.Millisecond) {
		select {
		case res := <-done:
			t.Fatalf("trace ended before tracing: %q, %s", res[0], res[1])
		default:
		}
		if time.Since(start) > 10*time.Second {
			t.Fatal("tracing never switched on")
		}
	}
	return done
}

func waitTrace(t *testing.T, done <-chan [2]string) string {
	t.Helper()
	select {
	case res := <-done:
		if res[1] != "" {
			t.Fatalf("pcctl trace: %s", res[1])
		}
		return res[0]
	case <-time.After(30 * time.Second):
		t.Fatal("pcctl trace did not end")
	}
	return ""
}

// TestTrace: with the backend applied and pinned and no agent, pcctl
// trace -count 1 prints the drop of a spoofed packet, naming the reason,
// the interface and the addresses, and switches tracing off when it ends.
func TestTrace(t *testing.T) {
	tp := newTraceTopo(t)
	done := tp.startTrace(t, "-count", "1", "-timeout", "20s")
	tp.spoof(t)
	out := waitTrace(t, done)
	t.Logf("pcctl trace -count 1:\n%s", out)
	for _, want := range []string{"drop spoof-ip", "veth-a", "udp 10.9.9.9:1234 -> 172.17.0.1:53"} {
		if !strings.Contains(out, want) {
			t.Errorf("trace output lacks %q:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "\n"); n != 1 {
		t.Errorf("-count 1 printed %d lines:\n%s", n, out)
	}
	if f := tp.traceSwitch(t); f != 0 {
		t.Errorf("tracing still on after pcctl trace ended: flags %#x", f)
	}

	t.Run("filters", func(t *testing.T) {
		// Another reason, another address: nothing until the timeout.
		for _, args := range [][]string{{"-reason", "icc"}, {"-addr", "192.0.2.99"}, {"-type", "nat"}} {
			done := tp.startTrace(t, append(args, "-timeout", "1s")...)
			tp.spoof(t)
			if out := waitTrace(t, done); out != "" {
				t.Errorf("%v printed:\n%s", args, out)
			}
		}
		// A reason family, the endpoint by its veth (no agent), JSON.
		done := tp.startTrace(t, "-reason", "spoof", "-endpoint", "veth-a", "-addr", "10.9.9.9", "-count", "1", "-timeout", "20s")
		tp.spoof(t)
		if out := waitTrace(t, done); !strings.Contains(out, "spoof-ip") {
			t.Errorf("filtered trace:\n%s", out)
		}
		done = tp.startPcctl(t, "-o", "json", "trace", "-bpffs", tp.bpffs, "-count", "1", "-timeout", "20s")
		tp.spoof(t)
		out := waitTrace(t, done)
		var ev struct {
			Kind, Reason, Interface string
			Src                     netip.AddrPort
		}
		if err := json.Unmarshal([]byte(out), &ev); err != nil || ev.Reason != "spoof-ip" || ev.Interface != "veth-a" ||
			ev.Src != netip.MustParseAddrPort("10.9.9.9:1234") {
			t.Errorf("json: %+v, %v\n%s", ev, err, out)
		}
	})
	t.Run("errors", func(t *testing.T) {
		for _, args := range [][]string{
			{"trace", "-bpffs", filepath.Join(tp.bpffs, "none")},
			{"trace", "-bpffs", tp.bpffs, "-type", "flows"},
			{"trace", "-bpffs", tp.bpffs, "-endpoint", "nobody"},
			{"trace", "-bpffs", tp.bpffs, "-type", "nat", "-reason", "icc"},
		} {
			if _, err := pcctl(t, filepath.Join(tp.bpffs, "no-agent.sock"), args...); err == nil {
				t.Errorf("pcctl %v: no error", args)
			}
		}
	})
}
