package nft

import (
	"context"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/portcullis/portcullis/dataplane/model"
)

// TestRenderGoldenLocal pins the local-mode ruleset for smallState:
// published-port maps with the full mode's elements, output DNAT,
// masquerade into bridges, the raw drop, and nothing else.
func TestRenderGoldenLocal(t *testing.T) {
	got := RenderMode(ModeLocal, smallState(t), 0)
	if got == goldenSmallStateLocal {
		return
	}
	g, w := strings.Split(got, "\n"), strings.Split(goldenSmallStateLocal, "\n")
	for i := range max(len(g), len(w)) {
		if at(g, i) != at(w, i) {
			t.Fatalf("rendering differs at line %d:\n got: %q\nwant: %q\n\nfull rendering:\n%s", i+1, at(g, i), at(w, i), got)
		}
	}
}

// TestLocalModeElementsAreFullModes: the published-port maps of the local
// table hold exactly the elements of the full table's maps (one encoding).
func TestLocalModeElementsAreFullModes(t *testing.T) {
	want := smallState(t)
	full, local := wantElems(ModeFull, want), wantElems(ModeLocal, want)
	for id, h := range local {
		f := full[id]
		if f == nil || f.e.String() != h.e.String() {
			t.Errorf("local element %s has no equal in the full mode", id)
		}
	}
	for id, h := range full {
		if ModeLocal.holds(h.e.set) && local[id] == nil {
			t.Errorf("full element %s of a shared set is missing in the local mode", id)
		}
	}
}

func TestModeAPI(t *testing.T) {
	for _, c := range []struct {
		s    string
		m    Mode
		name string
	}{{"full", ModeFull, "nftables"}, {"", ModeFull, "nftables"}, {"local", ModeLocal, "nftables-local"}} {
		m, err := ParseMode(c.s)
		if err != nil || m != c.m {
			t.Errorf("ParseMode(%q) = %v, %v; want %v", c.s, m, err, c.m)
		}
		b, err := New(Options{NetNS: -1, Mode: m})
		if err != nil {
			t.Fatal(err)
		}
		if b.Name() != c.name || b.Mode() != c.m {
			t.Errorf("mode %v: Name %q, Mode %v; want %q", m, b.Name(), b.Mode(), c.name)
		}
	}
	if _, err := ParseMode("bridge"); err == nil {
		t.Error("ParseMode accepted an unknown mode")
	}
	if _, err := New(Options{NetNS: -1, Mode: Mode(7)}); err == nil {
		t.Error("New accepted an unknown mode")
	}
}

// listAllTables returns the tables of namespace ns, one "family name" a line.
func listAllTables(t *testing.T, ns string) []string {
	t.Helper()
	var out []string
	for _, l := range strings.Split(inNSExec(t, ns, "nft", "list", "tables"), "\n") {
		if l = strings.TrimSpace(strings.TrimPrefix(l, "table ")); l != "" {
			out = append(out, l)
		}
	}
	slices.Sort(out)
	return out
}

func wantTables(t *testing.T, ns string, want ...string) {
	t.Helper()
	slices.Sort(want)
	if got := listAllTables(t, ns); !slices.Equal(got, want) {
		t.Errorf("tables in the namespace: %q, want %q", got, want)
	}
}

// TestKernelMatchesRenderLocal: the kernel decodes the local table into
// the rendering, which is all the local mode creates; Uninstall removes it
// and restores route_localnet.
func TestKernelMatchesRenderLocal(t *testing.T) {
	needRoot(t)
	rootLocalnet := readSysctl(t, "", "net.ipv4.conf.all.route_localnet")
	ns, h := newNS(t, "local")
	b := newBackendIn(t, h, ModeLocal)
	want := smallState(t)
	for range 2 { // the second full sync changes nothing
		if err := b.Apply(t.Context(), want, nil, true); err != nil {
			t.Fatal(err)
		}
		sameRulesetOf(t, ns, ModeLocal, RenderMode(ModeLocal, want, 0))
		wantTables(t, ns, "inet "+LocalTableName)
	}
	if v := readSysctl(t, ns, "net.ipv4.conf.all.route_localnet"); v != "1" {
		t.Errorf("route_localnet in the namespace = %s, want 1", v)
	}
	if v := readSysctl(t, "", "net.ipv4.conf.all.route_localnet"); v != rootLocalnet {
		t.Fatalf("route_localnet changed in the ROOT namespace: %s -> %s", rootLocalnet, v)
	}
	st := b.Status()
	if st["backend"] != "nftables-local" || !slices.Equal(st["tables"].([]string), []string{"inet " + LocalTableName}) {
		t.Errorf("status: %v", st)
	}
	fill := map[string]int{}
	for _, f := range b.Fill() {
		fill[f.Name] = f.Entries
	}
	if len(fill) != len(localSets) || fill["inet portcullis-local dnat4"] != 4 || fill["inet portcullis-local bridges"] != 2 {
		t.Errorf("fill: %v", fill)
	}
	if ds, err := b.Drops(t.Context()); err != nil || len(ds) != 1 || ds[0].Reason != "loopback" {
		t.Errorf("drops: %v, %v; want the loopback counter only", ds, err)
	}

	uninstallLeavesNothing(t, b, ns)
}

// TestModeSwitch: a full sync in one mode replaces the other mode's tables
// and keeps the route_localnet value from before either; Uninstall in any
// mode removes the tables of both.
func TestModeSwitch(t *testing.T) {
	needRoot(t)
	ns, h := newNS(t, "switch")
	want := smallState(t)
	apply := func(m Mode) *Backend {
		t.Helper()
		b := newBackendIn(t, h, m)
		if err := b.Apply(t.Context(), want, nil, true); err != nil {
			t.Fatalf("%v: %v", m, err)
		}
		return b
	}
	apply(ModeFull)
	wantTables(t, ns, "inet "+TableName, "bridge "+TableName)
	apply(ModeLocal) // saved-route_localnet comes from the full table: 0, not 1
	wantTables(t, ns, "inet "+LocalTableName)
	sameRulesetOf(t, ns, ModeLocal, RenderMode(ModeLocal, want, 0))
	full := apply(ModeFull)
	wantTables(t, ns, "inet "+TableName, "bridge "+TableName)
	sameRuleset(t, ns, Render(want, 0))

	// Both present (as no full sync leaves them): either Uninstall removes both.
	inNSExec(t, ns, "nft", "add", "table", "inet", LocalTableName)
	if err := full.Uninstall(t.Context()); err != nil {
		t.Fatal(err)
	}
	wantTables(t, ns)
	if v := readSysctl(t, ns, "net.ipv4.conf.all.route_localnet"); v != "0" {
		t.Errorf("route_localnet after the switches and Uninstall = %s, want 0", v)
	}
	local := apply(ModeLocal)
	inNSExec(t, ns, "nft", "add", "table", "inet", TableName)
	inNSExec(t, ns, "nft", "add", "table", "bridge", TableName)
	if err := local.Uninstall(t.Context()); err != nil {
		t.Fatal(err)
	}
	wantTables(t, ns)
	if v := readSysctl(t, ns, "net.ipv4.conf.all.route_localnet"); v != "0" {
		t.Errorf("route_localnet after local Uninstall = %s, want 0", v)
	}
}

// TestIncrementalLocal: a delta touches only the elements of the local
// table: mappings and bridges, never endpoints or links.
func TestIncrementalLocal(t *testing.T) {
	needRoot(t)
	ns, h := newNS(t, "ldelta")
	b := newBackendIn(t, h, ModeLocal)
	want := smallState(t)
	if err := b.Apply(t.Context(), want, nil, true); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		op     model.Op
		events []string
	}{
		{model.Op{Kind: "port", Port: &model.PortMapping{ID: "app-http", Endpoint: "app",
			Proto: "tcp", HostPort: 9090, Port: 80}},
			[]string{"add element inet portcullis-local dnat4-any { tcp . 9090 : 172.19.0.2 . 80 }"}},
		{model.Op{Kind: "endpoint", Endpoint: &model.Endpoint{ID: "app2", Network: "net1", IP: "172.19.0.3",
			HostIfname: "pcv-app2", MAC: "02:42:ac:13:00:03"}}, nil},
		{model.Op{Kind: "link", Link: &model.Link{Parent: "web", Alias: "db2", Child: "db"}}, nil},
		{model.Op{Kind: "network", Network: &model.Network{Name: "net2", Bridge: "pc2",
			Subnet: "172.20.0.0/16"}},
			[]string{`add element inet portcullis-local bridges { "pc2" }`}},
		{model.Op{Kind: "port", Delete: true, Key: "app-http"},
			[]string{"delete element inet portcullis-local dnat4-any { tcp . 9090 : 172.19.0.2 . 80 }"}},
	}
	for _, s := range steps {
		d, err := want.Do(s.op)
		if err != nil {
			t.Fatal(err)
		}
		stop := monitor(t, ns)
		if err := b.Apply(t.Context(), want, d, false); err != nil {
			t.Fatal(err)
		}
		if events := stop(); !slices.Equal(events, s.events) {
			t.Errorf("events for %s %v:\n got %q\nwant %q", s.op.Kind, s.op.Key, events, s.events)
		}
		sameRulesetOf(t, ns, ModeLocal, RenderMode(ModeLocal, want, 0))
	}
	if st := b.Status(); st["incremental_syncs"] != uint64(len(steps)) {
		t.Errorf("status after %d incremental syncs: %v", len(steps), st)
	}
}

// udpEcho answers each datagram received in namespace h on addr with the
// client's address as it sees it.
func udpEcho(t *testing.T, h netns.NsHandle, addr string) {
	t.Helper()
	var pc net.PacketConn
	if err := inNS(h, func() (err error) { pc, err = net.ListenPacket("udp", addr); return err }); err != nil {
		t.Fatalf("listen udp %s: %v", addr, err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			host, _, _ := net.SplitHostPort(from.String())
			_, _ = pc.WriteTo([]byte(host), from)
		}
	}()
}

// udpAsk sends a datagram from namespace h to raddr and returns the answer
// of a udpEcho: the client address the server saw.
func udpAsk(h netns.NsHandle, raddr string, timeout time.Duration) (string, error) {
	var seen string
	err := inNS(h, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		c, err := (&net.Dialer{}).DialContext(ctx, "udp", raddr)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(timeout))
		if _, err := c.Write([]byte("ask")); err != nil {
			return err
		}
		buf := make([]byte, 100)
		n, err := c.Read(buf)
		seen = string(buf[:n])
		return err
	})
	return seen, err
}

func udpReaches(t *testing.T, h netns.NsHandle, raddr, wantSeen string) {
	t.Helper()
	seen, err := udpAsk(h, raddr, okTimeout)
	if err != nil {
		t.Errorf("udp to %s: %v", raddr, err)
		return
	}
	if seen != wantSeen {
		t.Errorf("udp to %s: server saw client %s, want %s", raddr, seen, wantSeen)
	}
}

func udpBlocked(t *testing.T, h netns.NsHandle, raddr string) {
	t.Helper()
	if seen, err := udpAsk(h, raddr, failTimeout); err == nil {
		t.Errorf("udp to %s got an answer (server saw %s)", raddr, seen)
	}
}

// TestTrafficLocalMode (B10, B11) with the local mode alone, no full-mode
// table and no eBPF: the node reaches a container's published port through
// 127.0.0.1 and through its own address, over TCP and UDP, and gets the
// answers (the plain bridge and routing path carries them); the container
// sees the bridge's address. A packet to 127.0.0.1 from another host is
// dropped.
func TestTrafficLocalMode(t *testing.T) {
	t.Parallel()
	tp := newTopoIn(t, ModeLocal)
	wantTables(t, tp.node, "inet "+LocalTableName)
	serve(t, tp.c1H, ":80")
	udpEcho(t, tp.c1H, ":80")
	for _, p := range []string{"tcp", "udp"} {
		tp.do(model.Op{Kind: "port", Port: &model.PortMapping{ID: "c1-" + p, Endpoint: "c1",
			Proto: p, HostPort: 8080, Port: 80}})
		tp.do(model.Op{Kind: "port", Port: &model.PortMapping{ID: "c1-local-" + p, Endpoint: "c1",
			Proto: p, HostIP: "127.0.0.1", HostPort: 8081, Port: 80}})
	}
	sameRulesetOf(t, tp.node, ModeLocal, RenderMode(ModeLocal, tp.want, 0))
	node8080, node8081 := net.JoinHostPort(tp.nodeIP, "8080"), net.JoinHostPort(tp.nodeIP, "8081")

	t.Run("B10 from the node", func(t *testing.T) {
		for _, dst := range []string{"127.0.0.1:8080", node8080, "127.0.0.1:8081"} {
			reaches(t, tp.nodeH, "", dst, tp.bridgeGateway4)
			udpReaches(t, tp.nodeH, dst, tp.bridgeGateway4)
		}
		// The mapping bound to 127.0.0.1 is only there.
		blocked(t, tp.nodeH, "", node8081)
		udpBlocked(t, tp.nodeH, node8081)
	})
	t.Run("nothing for traffic from outside", func(t *testing.T) {
		// That is the datapath's next to this one (eBPF on the uplink).
		blocked(t, tp.extH, "", node8080)
		udpBlocked(t, tp.extH, node8080)
	})
	t.Run("B11 127.0.0.1 from another host is dropped", func(t *testing.T) {
		got := udpServe(t, tp.nodeH, "127.0.0.1:8081")
		c := loopbackFromExt(t, tp)
		dropsGrow(t, tp.b, "loopback", func() {
			send(c, "blocked")
			notReceived(t, got, "blocked")
		})
		rawDropIsOurs(t, tp, LocalTableName, c, got)
	})
	t.Run("removed mapping stops at once", func(t *testing.T) {
		tp.do(model.Op{Kind: "port", Delete: true, Key: "c1-udp"})
		udpBlocked(t, tp.nodeH, "127.0.0.1:8080")
		reaches(t, tp.nodeH, "", "127.0.0.1:8080", tp.bridgeGateway4)
	})
	wantTables(t, tp.node, "inet "+LocalTableName)
}

const goldenSmallStateLocal = `table inet portcullis-local {
	counter drop-loopback {
		packets 0 bytes 0
	}

	set bridges {
		type ifname
		elements = { "pc0",
			     "pc1" }
	}

	map dnat4 {
		type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service
		elements = { 127.0.0.1 . udp . 5353 : 172.18.0.3 . 53,
			     192.0.2.1 . sctp . 9000 : 172.19.0.2 . 7000,
			     192.0.2.1 . sctp . 9001 : 172.19.0.2 . 7001,
			     192.0.2.1 . sctp . 9002 : 172.19.0.2 . 7002 }
	}

	map dnat4-range {
		type ipv4_addr . inet_proto . inet_service : ipv4_addr
		flags interval
	}

	map dnat4-any {
		type inet_proto . inet_service : ipv4_addr . inet_service
		elements = { tcp . 8080 : 172.18.0.2 . 80 }
	}

	map dnat4-any-range {
		type inet_proto . inet_service : ipv4_addr
		flags interval
		elements = { tcp . 8000-8009 : 172.18.0.2 }
	}

	map dnat6 {
		type ipv6_addr . inet_proto . inet_service : ipv6_addr . inet_service
		elements = { 2001:db8::1 . tcp . 443 : fd00:18::2 . 443 }
	}

	map dnat6-range {
		type ipv6_addr . inet_proto . inet_service : ipv6_addr
		flags interval
	}

	map dnat6-any {
		type inet_proto . inet_service : ipv6_addr . inet_service
		elements = { tcp . 8080 : fd00:18::2 . 80 }
	}

	map dnat6-any-range {
		type inet_proto . inet_service : ipv6_addr
		flags interval
		elements = { tcp . 8000-8009 : fd00:18::2 }
	}

	set saved-route_localnet {
		type mark
		elements = { 0x00000000 }
	}

	chain raw-prerouting {
		type filter hook prerouting priority raw; policy accept;
		iifname != "lo" ip daddr 127.0.0.0/8 counter name "drop-loopback" drop
	}

	chain nat-prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		iifname @bridges dnat ip6 to ip6 daddr . meta l4proto . th dport map @dnat6
		iifname @bridges dnat ip6 to ip6 daddr . meta l4proto . th dport map @dnat6-range
		iifname @bridges meta nfproto ipv6 fib daddr type local dnat ip6 to meta l4proto . th dport map @dnat6-any
		iifname @bridges meta nfproto ipv6 fib daddr type local dnat ip6 to meta l4proto . th dport map @dnat6-any-range
	}

	chain nat-output {
		type nat hook output priority -100; policy accept;
		dnat ip to ip daddr . meta l4proto . th dport map @dnat4
		dnat ip to ip daddr . meta l4proto . th dport map @dnat4-range
		dnat ip6 to ip6 daddr . meta l4proto . th dport map @dnat6
		dnat ip6 to ip6 daddr . meta l4proto . th dport map @dnat6-range
		meta nfproto ipv4 fib daddr type local dnat ip to meta l4proto . th dport map @dnat4-any
		meta nfproto ipv4 fib daddr type local dnat ip to meta l4proto . th dport map @dnat4-any-range
		meta nfproto ipv6 fib daddr type local dnat ip6 to meta l4proto . th dport map @dnat6-any
		meta nfproto ipv6 fib daddr type local dnat ip6 to meta l4proto . th dport map @dnat6-any-range
	}

	chain nat-postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		oifname @bridges ip saddr 127.0.0.0/8 masquerade
		oifname @bridges ct status dnat fib saddr type local masquerade
		meta nfproto ipv6 oifname @bridges ct status dnat masquerade
	}
}
`
