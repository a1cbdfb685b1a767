package cni_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	types100 "github.com/containernetworking/cni/pkg/types/100"

	"github.com/portcullis/portcullis/cni"
	"github.com/portcullis/portcullis/internal/nstest"
)

// Chained mode, with the reference bridge and ptp plugins as the main
// plugin. One container (c1) is plugged by the main plugin alone through
// cnitool, then portcullis-cni runs on its own with that ADD's result as
// prevResult, exactly as libcni runs the next plugin of a list: so the
// node can be compared before and after portcullis-cni. A second
// container (c2) goes through the whole list (main plugin, then
// portcullis-cni) with cnitool: ADD, CHECK, DEL as a runtime does them.

const (
	chainBridge  = "cnichain0"
	chainNetwork = "chn"
	hostPort2    = 18081
)

// mainPlugin is the main plugin's configuration for host-local range
// start..end of cniSubnet (the two lists share the subnet, not addresses).
type mainPlugin func(ipamDir string, start, end int) map[string]any

func bridgePlugin(ipamDir string, start, end int) map[string]any {
	return map[string]any{"type": "bridge", "bridge": chainBridge, "isGateway": true, "isDefaultGateway": true,
		"ipMasq": false, "hairpinMode": true, "ipam": chainIPAM(ipamDir, start, end, false)}
}

func ptpPlugin(ipamDir string, start, end int) map[string]any {
	return map[string]any{"type": "ptp", "ipMasq": false, "ipam": chainIPAM(ipamDir, start, end, true)}
}

func chainIPAM(dir string, start, end int, route bool) map[string]any {
	base := strings.TrimSuffix(cniGateway, "1")
	m := map[string]any{"type": "host-local", "dataDir": dir, "ranges": [][]map[string]string{{{
		"subnet": cniSubnet, "gateway": cniGateway,
		"rangeStart": base + fmt.Sprint(start), "rangeEnd": base + fmt.Sprint(end)}}}}
	if route {
		m["routes"] = []map[string]string{{"dst": "0.0.0.0/0"}}
	}
	return m
}

// portcullisChained is portcullis-cni's entry in a chained list.
func (e *env) portcullisChained() map[string]any {
	return map[string]any{"type": "portcullis-cni", "socket": e.agent.Socket, "network": chainNetwork,
		"capabilities": map[string]bool{"portMappings": true}}
}

func TestChainedBridge(t *testing.T) { testChained(t, bridgePlugin, chainBridge) }

func TestChainedPtp(t *testing.T) {
	if *backend == "ebpf" {
		testRoutedRefused(t)
		return
	}
	testChained(t, ptpPlugin, "")
}

// testRoutedRefused: the eBPF backend does not handle routed networks
// (ptp) yet, and says so at ADD, which then leaves nothing behind and
// changes nothing of the main plugin's; DEL still works.
func testRoutedRefused(t *testing.T) {
	e := newEnv(t)
	name := e.netName() + "-main"
	e.writeFile("main.conflist", map[string]any{"cniVersion": "1.0.0", "name": name,
		"plugins": []any{ptpPlugin(e.ipamDir, 10, 19)}})
	c1 := e.topo.AddContainer("c1")
	t.Cleanup(func() { os.Remove(filepath.Join(cniCache, name+"-"+containerID(c1)+"-eth0")) })
	prev := e.mustCnitool("add", name, c1, "")
	veth := e.hostVethOf(c1)
	before := e.snapshot("", veth, c1)
	_, err := e.runChained("ADD", c1, name, prev, portCap(hostPort, ctrPort))
	if err == nil || !strings.Contains(err.Error(), "--backend=nftables") {
		t.Fatalf("chained ADD after ptp on eBPF: %v; want a refusal pointing to the nftables backend", err)
	}
	if n, err := e.api.Networks(e.ctx); err != nil || len(n) != 0 {
		t.Errorf("networks left after the refused ADD: %+v (%v)", n, err)
	}
	if after := e.snapshot("", veth, c1); after != before {
		t.Errorf("the refused ADD changed the main plugin's devices:\n%s", lineDiff(before, after))
	}
	if _, err := e.runChained("DEL", c1, name, prev, ""); err != nil {
		t.Errorf("DEL after the refused ADD: %v", err)
	}
	e.mustCnitool("del", name, c1, "")
}

func testChained(t *testing.T, main mainPlugin, bridge string) {
	e := newEnv(t)
	mainOnly, full := e.netName()+"-main", e.netName()+"-full"
	e.writeFile("main.conflist", map[string]any{"cniVersion": "1.0.0", "name": mainOnly,
		"plugins": []any{main(e.ipamDir, 10, 19)}})
	e.writeFile("full.conflist", map[string]any{"cniVersion": "1.0.0", "name": full,
		"plugins": []any{main(e.ipamDir, 20, 29), e.portcullisChained()}})
	t.Cleanup(func() {
		for _, n := range []string{mainOnly, full} {
			left, _ := filepath.Glob(filepath.Join(cniCache, n+"-*"))
			for _, f := range left {
				os.Remove(f)
			}
		}
	})

	c1 := e.topo.AddContainer("c1")
	prevOut := e.mustCnitool("add", mainOnly, c1, "")
	_, ip1 := e.addResult(prevOut)
	hostVeth := e.hostVethOf(c1)
	before := e.snapshot(bridge, hostVeth, c1)

	// portcullis-cni after the main plugin: the result passes through.
	capArgs := portCap(hostPort, ctrPort)
	out, err := e.runChained("ADD", c1, mainOnly, prevOut, capArgs)
	if err != nil {
		t.Fatalf("chained ADD: %v", err)
	}
	if !sameResult(t, prevOut, out) {
		t.Errorf("chained ADD result differs from prevResult:\n got %s\nwant %s", out, prevOut)
	}
	if after := e.snapshot(bridge, hostVeth, c1); after != before {
		t.Errorf("the main plugin's devices changed with chained ADD:\n%s", lineDiff(before, after))
	}
	epID := cni.EndpointID(containerID(c1), "eth0")
	ep, err := e.api.Endpoint(e.ctx, epID)
	if err != nil || ep.HostIfname != hostVeth || ep.IP != ip1.String() || ep.Network != chainNetwork {
		t.Fatalf("endpoint in the agent: %+v (%v); want host_ifname %s, ip %s on %s", ep, err, hostVeth, ip1, chainNetwork)
	}
	if n, err := e.api.Network(e.ctx, chainNetwork); err != nil || !n.External || n.Bridge != bridge || n.Subnet != cniSubnet || n.Gateway != cniGateway {
		t.Errorf("network in the agent: %+v (%v); want external, bridge %q, %s via %s", n, err, bridge, cniSubnet, cniGateway)
	}

	srv1 := nstest.ListenTCP(t, c1, "c1", fmt.Sprintf(":%d", ctrPort))
	c2 := e.topo.AddContainer("c2")
	out2 := e.mustCnitool("add", full, c2, portCap(hostPort2, ctrPort))
	_, ip2 := e.addResult(out2)
	srv2 := nstest.ListenTCP(t, c2, "c2", fmt.Sprintf(":%d", ctrPort))
	e.checkTraffic(c1, ip1, c2, ip2)
	e.mustCnitool("check", full, c2, portCap(hostPort2, ctrPort))
	if _, err := e.cnitool("check", full, c2, portCap(hostPort2+1, ctrPort)); err == nil {
		t.Error("CHECK with a port mapping the agent does not have passed")
	}

	// DEL (twice, the second without prevResult, as after a lost cache)
	// removes the mapping and leaves the main plugin's devices alone.
	for i, prev := range []string{prevOut, ""} {
		if _, err := e.runChained("DEL", c1, mainOnly, prev, capArgs); err != nil {
			t.Fatalf("chained DEL #%d: %v", i+1, err)
		}
	}
	if _, err := e.api.Endpoint(e.ctx, epID); err == nil {
		t.Errorf("endpoint %s still in the agent after DEL", epID)
	}
	if after := e.snapshot(bridge, hostVeth, c1); after != before {
		t.Errorf("the main plugin's devices changed with chained DEL:\n%s", lineDiff(before, after))
	}
	e.checkUnpublished(srv1, c2)

	// The agent starts although a container went while it was down (the
	// main plugin's veth with it); what that container published is free.
	if err := e.agent.Stop(); err != nil {
		t.Fatal(err)
	}
	veth2 := e.hostVethOf(c2)
	srv2.Close() // its socket would keep the namespace alive
	c2.Delete()
	// The kernel takes the veth down with the namespace, a little later.
	for i := 0; i < 100 && e.linkExists(veth2); i++ {
		time.Sleep(100 * time.Millisecond)
	}
	if e.linkExists(veth2) {
		t.Fatalf("host veth %s of c2 still there 10 s after its namespace was deleted", veth2)
	}
	if err := e.agent.Start(); err != nil {
		t.Fatalf("agent start after a chained container went: %v\n%s", err, e.agent.Logs())
	}
	if _, err := e.api.Endpoint(e.ctx, cni.EndpointID(containerID(c2), "eth0")); err == nil {
		t.Error("endpoint of the vanished container still in the agent after restart")
	}
	out, err = e.runChained("ADD", c1, mainOnly, prevOut, portCap(hostPort2, ctrPort))
	if err != nil {
		t.Fatalf("chained ADD of c1 publishing %d, freed by the vanished c2: %v", hostPort2, err)
	}
	dst := netip.AddrPortFrom(nstest.NodeAddr, hostPort2).String()
	if r := nstest.DialTCP(e.topo.Ext, dst, nstest.DialOptions{Timeout: 3 * time.Second}); !r.OK() || r.Server != "c1" {
		t.Errorf("ext -> %s after the restart: %v; want c1", dst, r)
	}
	e.mustCnitool("del", full, c2, portCap(hostPort2, ctrPort))
	if _, err := e.runChained("DEL", c1, mainOnly, "", ""); err != nil {
		t.Fatal(err)
	}
	e.mustCnitool("del", mainOnly, c1, "")
	if eps, err := e.api.Endpoints(e.ctx); err != nil || len(eps) != 0 {
		t.Errorf("endpoints left: %+v (%v)", eps, err)
	}
}

// checkUnpublished checks that hostPort no longer reaches srv (nothing
// arrives there within the timeout), while a port still published on c2
// works (positive control).
func (e *env) checkUnpublished(srv *nstest.TCPServer, c2 *nstest.NS) {
	e.t.Helper()
	seen := len(srv.Peers())
	dst := netip.AddrPortFrom(nstest.NodeAddr, hostPort).String()
	if r := nstest.DialTCP(e.topo.Ext, dst, nstest.DialOptions{Timeout: 2 * time.Second}); r.OK() {
		e.t.Errorf("ext -> %s after DEL: %v; want no answer", dst, r)
	}
	if n := len(srv.Peers()); n != seen {
		e.t.Errorf("ext -> %s after DEL reached the container (%d connections, %d before)", dst, n, seen)
	}
	ctl := netip.AddrPortFrom(nstest.NodeAddr, hostPort2).String()
	if r := nstest.DialTCP(e.topo.Ext, ctl, nstest.DialOptions{Timeout: 3 * time.Second}); !r.OK() || r.Server != "c2" {
		e.t.Errorf("control: ext -> %s (published by c2): %v; want answered by c2", ctl, r)
	}
}

// runChained runs portcullis-cni as the next plugin of list name: the
// network configuration with name, cniVersion, runtimeConfig and the main
// plugin's result as prevResult (none when prev is empty).
func (e *env) runChained(cmd string, ctr *nstest.NS, name, prev, capArgs string) (string, error) {
	conf := e.portcullisChained()
	conf["cniVersion"], conf["name"] = "1.0.0", name
	delete(conf, "capabilities")
	if capArgs != "" {
		var rc map[string]any
		if err := json.Unmarshal([]byte(capArgs), &rc); err != nil {
			return "", err
		}
		conf["runtimeConfig"] = rc
	}
	if prev != "" {
		conf["prevResult"] = json.RawMessage(prev)
	}
	stdin, err := json.Marshal(conf)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmdx := exec.CommandContext(ctx, "ip", "netns", "exec", e.topo.Node.Name, filepath.Join(tools.binDir, "portcullis-cni"))
	cmdx.Env = append(os.Environ(), "CNI_COMMAND="+cmd, "CNI_CONTAINERID="+containerID(ctr),
		"CNI_NETNS="+ctr.Path, "CNI_IFNAME=eth0", "CNI_PATH="+tools.binDir+string(os.PathListSeparator)+tools.pluginDir)
	var stdout, stderr bytes.Buffer
	cmdx.Stdin, cmdx.Stdout, cmdx.Stderr = bytes.NewReader(stdin), &stdout, &stderr
	if err := cmdx.Run(); err != nil {
		return stdout.String(), fmt.Errorf("portcullis-cni %s: %w: %s %s", cmd, err, strings.TrimSpace(stdout.String()), strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// sameResult compares two results as results (not as text).
func sameResult(t *testing.T, a, b string) bool {
	t.Helper()
	ra, err1 := types100.NewResult([]byte(a))
	rb, err2 := types100.NewResult([]byte(b))
	if err1 != nil || err2 != nil {
		t.Fatalf("parse results: %v, %v", err1, err2)
	}
	ja, _ := json.Marshal(ra)
	jb, _ := json.Marshal(rb)
	return bytes.Equal(ja, jb)
}

func (e *env) linkExists(name string) bool {
	_, err := e.topo.Node.IP("link", "show", "dev", name)
	return err == nil
}

// hostVethOf is the node end of ctr's eth0.
func (e *env) hostVethOf(ctr *nstest.NS) string {
	e.t.Helper()
	out := ctr.MustIP(e.t, "-o", "link", "show", "eth0")
	_, peer, ok := strings.Cut(strings.Fields(out)[1], "@if")
	if !ok {
		e.t.Fatalf("eth0 of %s is not a veth: %s", ctr.Name, out)
	}
	out = e.topo.Node.MustIP(e.t, "-o", "link", "show")
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) > 1 && strings.TrimSuffix(f[0], ":") == strings.TrimSuffix(peer, ":") {
			name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
			return name
		}
	}
	e.t.Fatalf("no node interface with index %s", peer)
	return ""
}

// snapshot is what the main plugin made, as a user would list it: the
// bridge (when there is one) and the host veth with their details (bridge
// port flags among them), IPv4 addresses and per-device IPv4 settings,
// the node's IPv4 routes through them, and the container's addresses and
// routes. Timers that run by themselves are left out, and so is what
// belongs to other containers' veths.
func (e *env) snapshot(bridge, veth string, ctr *nstest.NS) string {
	e.t.Helper()
	var sb strings.Builder
	devs := []string{veth}
	if bridge != "" {
		devs = append(devs, bridge)
	}
	for _, d := range devs {
		sb.WriteString(e.topo.Node.MustIP(e.t, "-d", "-4", "addr", "show", "dev", d))
		sb.WriteString(e.topo.Node.MustExec(e.t, "sysctl", "net.ipv4.conf."+d))
	}
	sb.WriteString(e.topo.Node.MustExec(e.t, "bridge", "-d", "link", "show", "dev", veth))
	for _, l := range strings.Split(e.topo.Node.MustIP(e.t, "-4", "route", "show", "table", "all"), "\n") {
		if !strings.Contains(l, "dev veth") || strings.Contains(l, "dev "+veth+" ") {
			sb.WriteString(l + "\n")
		}
	}
	sb.WriteString(ctr.MustIP(e.t, "-d", "-4", "addr", "show"))
	sb.WriteString(ctr.MustIP(e.t, "-4", "route", "show", "table", "all"))
	// ip prints this when another namespace of the machine goes while it
	// names the veth's peer namespace: not a property of the devices.
	out := strings.ReplaceAll(sb.String(), "Error: Peer netns reference is invalid.\n", "")
	return timerRE.ReplaceAllString(out, "")
}

var timerRE = regexp.MustCompile(`\S+_timer\s+[0-9.]+ ?`)

func lineDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	var out []string
	for _, l := range al {
		if !slices.Contains(bl, l) {
			out = append(out, "- "+l)
		}
	}
	for _, l := range bl {
		if !slices.Contains(al, l) {
			out = append(out, "+ "+l)
		}
	}
	return strings.Join(out, "\n")
}
