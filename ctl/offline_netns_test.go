package ctl

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/dataplane"
	"github.com/portcullis/portcullis/dataplane/api"
	"github.com/portcullis/portcullis/dataplane/model"
	"github.com/portcullis/portcullis/internal/nstest"
)

// offlineWorld is an agent in a node namespace with a network, two
// containers, a published port, a link, open flows through the
// translations and some drops.
type offlineWorld struct {
	t    *testing.T
	topo *nstest.Topology
	ag   *nstest.Agent
	env  map[string]string
}

func newOfflineWorld(t *testing.T, backend string) *offlineWorld {
	topo := nstest.NewTopology(t, nstest.Options{})
	ag := topo.StartAgent(nstest.AgentOptions{Backend: backend})
	w := &offlineWorld{t: t, topo: topo, ag: ag, env: map[string]string{
		"PORTCULLIS_SOCKET": ag.Socket, "PORTCULLIS_STATE_DIR": ag.StateDir, "PORTCULLIS_BPFFS": ag.BPFFS,
	}}
	st, err := ag.Status()
	if err != nil {
		t.Fatal(err)
	}
	if st["backend"] != backend {
		t.Fatalf("agent runs backend %v, want %s", st["backend"], backend)
	}
	c := api.NewClient(ag.Socket)
	ctx := context.Background()
	if _, err := c.PutNetwork(ctx, model.Network{Name: "pc0", Bridge: "pc0", Subnet: "172.17.0.0/16"}); err != nil {
		t.Fatal(err)
	}
	for i, id := range []string{"c1", "c2"} {
		ns := topo.AddContainer(id)
		ip := netip.MustParseAddr(fmt.Sprintf("172.17.0.%d", i+2))
		ep := model.Endpoint{ID: id, Network: "pc0", IP: ip.String(), Netns: ns.Path, Name: id,
			Exposed: []model.PortProto{{Port: 80, Proto: "tcp"}}}
		if _, err := c.PutEndpoint(ctx, ep); err != nil {
			t.Fatal(err)
		}
		if err := ns.WaitInterface("eth0", ip, 5*time.Second); err != nil {
			t.Fatal(err)
		}
		nstest.ListenTCP(t, ns, id, "[::]:80")
	}
	if _, err := c.PutPort(ctx, model.PortMapping{ID: "web", Endpoint: "c1", Proto: "tcp", HostPort: 8080, Port: 80}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PutLink(ctx, model.Link{Parent: "c2", Child: "c1", Alias: "web"}); err != nil {
		t.Fatal(err)
	}
	nstest.ListenTCP(t, topo.Ext, "ext", "[::]:9000")
	// Flows that stay open: in through the published port (DNAT), out
	// from a container (SNAT).
	for _, f := range []struct {
		ns  *nstest.NS
		dst string
	}{{topo.Ext, "192.0.2.1:8080"}, {topo.Container("c2"), "192.0.2.2:9000"}} {
		conn, r := nstest.ConnectTCP(f.ns, f.dst, nstest.DialOptions{Timeout: 3 * time.Second})
		if !r.OK() {
			t.Fatalf("flow from %s to %s: %v", f.ns, f.dst, r)
		}
		t.Cleanup(func() { conn.Close() })
	}
	return w
}

// spoof sends from c2 with an address that is not its own: dropped at its
// veth, so the eBPF datapath counts the drop for endpoint c2.
func (w *offlineWorld) spoof() {
	c2 := w.topo.Container("c2")
	c2.MustIP(w.t, "addr", "add", "172.17.0.99/32", "dev", "eth0")
	for range 3 {
		nstest.SendUDP(c2, "192.0.2.2:9999", "spoofed", nstest.DialOptions{Local: netip.MustParseAddrPort("172.17.0.99:0")})
	}
	c2.MustIP(w.t, "addr", "del", "172.17.0.99/32", "dev", "eth0")
}

// unpublished tries the container's address from outside: dropped as
// inbound traffic nobody published.
func (w *offlineWorld) unpublished() {
	w.topo.ExtRoute("172.17.0.0/16", nstest.NodeAddr)
	if r := nstest.DialTCP(w.topo.Ext, "172.17.0.2:80", nstest.DialOptions{Timeout: 500 * time.Millisecond}); r.OK() {
		w.t.Errorf("unpublished port reached from outside: %v", r)
	}
}

// pcctl runs pcctl in the node namespace.
func (w *offlineWorld) pcctl(args ...string) (stdout, stderr string, err error) {
	w.t.Helper()
	w.topo.Node.Do(func() error {
		stdout, stderr, err = run(w.env, args...)
		return nil
	})
	return stdout, stderr, err
}

// outputs runs each command (with its arguments, space-separated) in JSON
// and returns stdout and stderr by command.
func (w *offlineWorld) outputs(cmds []string) (map[string]string, map[string]string) {
	w.t.Helper()
	out, errs := map[string]string{}, map[string]string{}
	for _, cmd := range cmds {
		o, e, err := w.pcctl(append([]string{"-o", "json"}, strings.Fields(cmd)...)...)
		if err != nil {
			w.t.Fatalf("pcctl %s: %v (stderr %s)", cmd, err, e)
		}
		out[cmd], errs[cmd] = o, e
	}
	return out, errs
}

// sameDown checks that the lists (cmds[:4]) print the same with the agent
// down as up, and the flows (cmds[4]) have the same tuples; it returns
// those.
func sameDown(t *testing.T, cmds []string, up, down map[string]string) []string {
	t.Helper()
	for _, cmd := range cmds[:4] {
		if down[cmd] != up[cmd] {
			t.Errorf("%s with the agent down:\n%s\nwith it up:\n%s", cmd, down[cmd], up[cmd])
		}
	}
	upFlows, downFlows := flowKeys(t, up[cmds[4]]), flowKeys(t, down[cmds[4]])
	if !slices.Equal(upFlows, downFlows) {
		t.Errorf("flows with the agent down:\n%s\nwith it up:\n%s", strings.Join(downFlows, "\n"), strings.Join(upFlows, "\n"))
	}
	return upFlows
}

// flowKeys is the flows of `pcctl -o json flows` without their timeouts,
// sorted.
func flowKeys(t *testing.T, js string) []string {
	t.Helper()
	var fl []dataplane.Flow
	if err := json.Unmarshal([]byte(js), &fl); err != nil {
		t.Fatalf("flows: %v\n%s", err, js)
	}
	var out []string
	for _, f := range fl {
		out = append(out, fmt.Sprintf("%s %s>%s reply %s>%s %s %v", f.Proto, f.Orig[0], f.Orig[1], f.Reply[0], f.Reply[1], f.State, f.NAT))
	}
	slices.Sort(out)
	return out
}

// sameDrops checks that the drops read directly are the agent's: the same
// reasons and endpoints, and counts that did not go down (the datapath
// keeps counting while the agent is down; background packets may add
// some).
func sameDrops(t *testing.T, up, down string) []dataplane.Drop {
	t.Helper()
	var a, b []dataplane.Drop
	if err := json.Unmarshal([]byte(up), &a); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(down), &b); err != nil {
		t.Fatal(err)
	}
	key := func(d dataplane.Drop) string { return d.Reason + "@" + d.Endpoint }
	if len(a) != len(b) {
		t.Fatalf("drops with the agent down:\n%s\nwith it up:\n%s", down, up)
	}
	for i := range a {
		if key(a[i]) != key(b[i]) || b[i].Packets < a[i].Packets || b[i].Bytes < a[i].Bytes {
			t.Errorf("drop %d with the agent down %+v, up %+v", i, b[i], a[i])
		}
	}
	return a
}

func (w *offlineWorld) statusDown() map[string]any {
	w.t.Helper()
	js, stderr, err := w.pcctl("-o", "json", "status")
	if err != nil {
		w.t.Fatalf("status with the agent down: %v", err)
	}
	if !strings.Contains(stderr, "not answering on "+w.ag.Socket) {
		w.t.Errorf("status stderr: %q", stderr)
	}
	var st map[string]any
	if err := json.Unmarshal([]byte(js), &st); err != nil {
		w.t.Fatal(err)
	}
	if st["agent"] != "not running (no answer on "+w.ag.Socket+")" {
		w.t.Errorf("status agent: %v", st["agent"])
	}
	counts, _ := st["counts"].(map[string]any)
	for k, n := range map[string]float64{"networks": 1, "endpoints": 2, "ports": 1, "links": 1} {
		if counts[k] != n {
			w.t.Errorf("status counts %v, want %s %v", counts, k, n)
		}
	}
	table, _, err := w.pcctl("status")
	w.t.Logf("pcctl status with the agent down:\n%s", table)
	if err != nil || !strings.Contains(table, "agent:") || !strings.Contains(table, "not running") {
		w.t.Errorf("status table: %v\n%s", err, table)
	}
	return st
}

// With the eBPF backend, every read-only command gives the same answer
// with the agent stopped, read from the state directory, the pinned maps
// and the companion's nft table.
func TestOfflineEBPF(t *testing.T) {
	w := newOfflineWorld(t, "ebpf")
	w.spoof()
	w.unpublished()
	cmds := []string{"networks", "endpoints", "ports", "links", "flows", "drops"}
	up, upErr := w.outputs(cmds)
	for cmd, e := range upErr {
		if e != "" {
			t.Errorf("%s with the agent up printed %q", cmd, e)
		}
	}
	if st, _, err := w.pcctl("status"); err != nil || !strings.Contains(st, "agent:") || !strings.Contains(st, "running (answering on") {
		t.Errorf("status with the agent up: %v\n%s", err, st)
	}
	if err := w.ag.Stop(); err != nil {
		t.Fatal(err)
	}
	down, downErr := w.outputs(cmds)
	upFlows := sameDown(t, cmds, up, down)
	for _, cmd := range cmds[:4] {
		if !strings.Contains(downErr[cmd], "reading the state in "+w.ag.StateDir) {
			t.Errorf("%s stderr: %q", cmd, downErr[cmd])
		}
	}
	nat := map[string]bool{}
	for _, f := range upFlows {
		nat[strings.Trim(f[strings.LastIndex(f, "["):], "[]")] = true
	}
	if !nat["snat"] || !nat["dnat"] {
		t.Errorf("want a SNAT and a DNAT flow, got:\n%s", strings.Join(upFlows, "\n"))
	}
	if !strings.Contains(downErr["flows"], "reading the pinned conntrack maps in "+w.ag.BPFFS) {
		t.Errorf("flows stderr: %q", downErr["flows"])
	}
	t.Logf("flows:\n%s\ndrops, agent down:\n%s", strings.Join(upFlows, "\n"), down["drops"])
	drops := sameDrops(t, up["drops"], down["drops"])
	if !slices.ContainsFunc(drops, func(d dataplane.Drop) bool { return d.Endpoint == "c2" && d.Packets >= 3 }) {
		t.Errorf("no drop attributed to c2: %+v", drops)
	}
	// The filters work as the agent's: one flow to the published port.
	got, _, err := w.pcctl("-o", "json", "flows", "-port", "8080", "-proto", "tcp")
	if err != nil {
		t.Fatal(err)
	}
	if k := flowKeys(t, got); len(k) != 1 || !strings.Contains(k[0], "192.0.2.1:8080") {
		t.Errorf("flows -port 8080 -proto tcp: %v", k)
	}
	if got, _, _ := w.pcctl("-o", "json", "flows", "-addr", "192.0.2.99"); strings.TrimSpace(got) != "[]" {
		t.Errorf("flows -addr 192.0.2.99: %s", got)
	}

	st := w.statusDown()
	if st["backend"] != "ebpf" || !strings.Contains(fmt.Sprint(st["backend_reason"]), "nftables-local") {
		t.Errorf("status: backend %v (%v)", st["backend"], st["backend_reason"])
	}
	bs, _ := st["backend_status"].(map[string]any)
	maps, _ := bs["maps"].(map[string]any)
	ct, _ := maps["pc_flows4"].(map[string]any)
	if n, _ := ct["entries"].(float64); n < 4 { // two flows, two halves each
		t.Errorf("status: pc_ct fill %v", ct)
	}
	if _, ok := bs["companion_nftables-local"]; !ok {
		t.Errorf("status: no companion in %v", bs)
	}
	// Commands that change state refuse.
	if _, _, err := w.pcctl("unpublish", "web"); err == nil || !strings.Contains(err.Error(), "portcullisd is not running") {
		t.Errorf("unpublish with the agent down: %v", err)
	}
}

// With the nftables backend, the answers come from the state directory,
// the tables' named counters and the kernel's conntrack table.
func TestOfflineNftables(t *testing.T) {
	w := newOfflineWorld(t, "nftables")
	w.unpublished()
	// Only TCP flows: the bridge's IGMP reports come and go in the
	// conntrack table.
	cmds := []string{"networks", "endpoints", "ports", "links", "flows -proto tcp", "drops"}
	up, _ := w.outputs(cmds)
	if err := w.ag.Stop(); err != nil {
		t.Fatal(err)
	}
	down, downErr := w.outputs(cmds)
	upFlows := sameDown(t, cmds, up, down)
	if len(upFlows) != 2 {
		t.Errorf("want 2 TCP flows, got:\n%s", strings.Join(upFlows, "\n"))
	}
	if !strings.Contains(downErr[cmds[4]], "reading the kernel's conntrack table") {
		t.Errorf("flows stderr: %q", downErr[cmds[4]])
	}
	t.Logf("flows:\n%s\ndrops, agent down:\n%s", strings.Join(upFlows, "\n"), down["drops"])
	drops := sameDrops(t, up["drops"], down["drops"])
	if !slices.ContainsFunc(drops, func(d dataplane.Drop) bool { return d.Reason == "inbound" && d.Packets > 0 }) {
		t.Errorf("no inbound drop counted: %+v", drops)
	}
	if !strings.Contains(downErr["drops"], "reading the drop counters of nft tables inet portcullis, bridge portcullis") {
		t.Errorf("drops stderr: %q", downErr["drops"])
	}
	st := w.statusDown()
	if st["backend"] != "nftables" {
		t.Errorf("status: backend %v (%v)", st["backend"], st["backend_reason"])
	}
	// trace reads the eBPF event ring: with nftables it says what to use.
	if _, _, err := w.pcctl("trace", "-timeout", "1s"); err == nil || !strings.Contains(err.Error(), "nftables backend is in use") {
		t.Errorf("trace with the nftables backend: %v", err)
	}
}
