package cni_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/cni"
	"github.com/portcullis/portcullis/ctl"
	"github.com/portcullis/portcullis/dataplane/api"
	"github.com/portcullis/portcullis/dataplane/model"
	"github.com/portcullis/portcullis/internal/nstest"
)

// Podman tests: a real Podman 4.3 with the CNI backend (nstest.Podman)
// runs busybox containers in the node namespace of an nstest topology,
// on a network of portcullis-cni (built from this tree) backed by a real
// portcullisd, and, as the reference each behaviour is compared with, on
// Podman's own bridge + portmap + firewall + tuning chain. Users check
// what a published port answers from another host: the tests do the same
// from the topology's external host.

// podmanEnv is one test's world.
type podmanEnv struct {
	t      *testing.T
	topo   *nstest.Topology
	agent  *nstest.Agent
	api    *api.Client
	podman *nstest.Podman
}

func newPodmanEnv(t *testing.T, agentBackend string, agentArgs ...string) *podmanEnv {
	t.Helper()
	nstest.RequirePodman(t)
	tools.once.Do(findTools)
	if tools.err != nil {
		t.Fatal(tools.err)
	}
	topo := nstest.NewTopology(t, nstest.Options{})
	e := &podmanEnv{t: t, topo: topo}
	if agentBackend != "" {
		e.agent = topo.StartAgent(nstest.AgentOptions{Backend: agentBackend, Args: agentArgs})
		e.api = api.NewClient(e.agent.Socket)
	}
	// Registered after the agent: Podman's cleanup (which DELs every
	// container) runs first, while the agent still answers.
	e.podman = nstest.StartPodman(t, topo.Node, nstest.PodmanOptions{PluginDirs: []string{tools.binDir}})
	return e
}

// chain is a CNI configuration under test.
type chain struct {
	name string
	// conf returns the conflist for network net on subnet.
	conf func(e *podmanEnv, net, subnet string) map[string]any
}

// refChain is what `podman network create --subnet S` writes for the
// bridge driver, with host-local's data in the test's directory.
var refChain = chain{name: "bridge-portmap", conf: func(e *podmanEnv, net, subnet string) map[string]any {
	return map[string]any{"cniVersion": "0.4.0", "name": net, "plugins": []any{
		map[string]any{"type": "bridge", "bridge": "cni-pct0", "isGateway": true, "ipMasq": true, "hairpinMode": true,
			"ipam": map[string]any{"type": "host-local", "dataDir": e.podman.IPAMDir(),
				"routes": []any{map[string]string{"dst": "0.0.0.0/0"}},
				"ranges": [][]map[string]string{{{"subnet": subnet, "gateway": gatewayOf(subnet)}}}},
			"capabilities": map[string]bool{"ips": true}},
		map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}},
		map[string]any{"type": "firewall", "backend": ""},
		map[string]any{"type": "tuning"},
	}}
}}

func gatewayOf(subnet string) string {
	p := netip.MustParsePrefix(subnet)
	return p.Addr().Next().String()
}

// network writes the chain's conflist under a unique name and returns it.
func (e *podmanEnv) network(c chain, subnet string) string {
	name := "pct-" + c.name + "-" + e.topo.Suffix
	e.podman.WriteConflist(e.t, name, c.conf(e, name, subnet))
	return name
}

// httpd runs a busybox httpd container with the given podman run flags.
func (e *podmanEnv) httpd(name string, flags ...string) string {
	e.t.Helper()
	args := append([]string{"--name", name}, flags...)
	return e.podman.MustRun(e.t, append(args, nstest.Image, "httpd", "-f", "-p", "80", "-h", "/www")...)
}

// fetch gets http://node:port/ from the external host: a published port
// works when the container's page comes back.
func (e *podmanEnv) fetch(port int) error {
	addr := netip.AddrPortFrom(nstest.NodeAddr, uint16(port)).String()
	var last error
	for range 3 { // a fresh container's httpd may not listen yet
		body, err := nstest.HTTPGet(e.topo.Ext, addr, 2*time.Second)
		if err == nil && body == "busybox httpd" {
			return nil
		}
		last = fmt.Errorf("GET http://%s/ from ext: %q, %v", addr, body, err)
		time.Sleep(500 * time.Millisecond)
	}
	return last
}

// noAnswer checks that no container serves the node's port from outside:
// no page comes back (the node refuses, or nothing answers). Callers
// fetch the same port successfully afterwards, as the positive control.
func (e *podmanEnv) noAnswer(port int) error {
	addr := netip.AddrPortFrom(nstest.NodeAddr, uint16(port)).String()
	body, err := nstest.HTTPGet(e.topo.Ext, addr, time.Second)
	if err == nil {
		return fmt.Errorf("GET http://%s/ from ext answered %q; want nothing", addr, body)
	}
	return nil
}

// iface returns eth0's MAC and IPv4 address inside a container.
func (e *podmanEnv) iface(ctr string) (net.HardwareAddr, netip.Addr) {
	e.t.Helper()
	ns := e.podman.ContainerNS(e.t, ctr)
	ifi, err := ns.Interface("eth0")
	if err != nil {
		e.t.Fatalf("eth0 in %s: %v", ctr, err)
	}
	addrs, err := ns.Addrs("eth0")
	if err != nil {
		e.t.Fatalf("addresses of eth0 in %s: %v", ctr, err)
	}
	for _, a := range addrs {
		if a.Addr().Is4() {
			return ifi.HardwareAddr, a.Addr()
		}
	}
	e.t.Fatalf("eth0 in %s has no IPv4 address: %v", ctr, addrs)
	return nil, netip.Addr{}
}

// pcChain is the list cni.Conflist makes (what `pcctl cni-conflist`
// writes and docs/cni.md shows) with the test's agent and host-local
// directory, and tuning after it when asked (Podman's own chain has it).
func pcChain(name string, tuning bool) chain {
	return chain{name: name, conf: func(e *podmanEnv, net, subnet string) map[string]any {
		b, err := cni.Conflist(cni.ConflistOptions{Name: net, Subnet: subnet, Bridge: "pcbr0",
			Socket: e.agent.Socket, DataDir: e.podman.IPAMDir()})
		if err != nil {
			e.t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			e.t.Fatal(err)
		}
		if tuning {
			m["plugins"] = append(m["plugins"].([]any), map[string]any{"type": "tuning"})
		}
		return m
	}}
}

// TestPodmanRun is what Podman users do with a network, on Podman's own
// chain (the reference) and on portcullis-cni with and without tuning;
// every check must hold on all three:
//
//   - `--ip X -p 8083:80`: the container has X and the port answers from
//     another host (Podman drops the published ports unless the first
//     plugin declares the ips capability);
//   - `--mac-address M -p 8084:80`: eth0 has M, the port answers (replies
//     leave with M: a stale MAC in the agent drops them as spoofed) and
//     the container reaches out;
//   - `podman network reload` (DEL, then ADD with IP= and MAC=): the same
//     address and MAC, the port answers, and the agent holds exactly one
//     endpoint and one mapping for it.
func TestPodmanRun(t *testing.T) {
	for _, c := range []chain{refChain, pcChain("portcullis", false), pcChain("portcullis-tuning", true)} {
		t.Run(c.name, func(t *testing.T) {
			agentBackend := *backend
			if c.name == refChain.name {
				agentBackend = ""
			}
			e := newPodmanEnv(t, agentBackend)
			net := e.network(c, "10.89.1.0/24")
			e.checkIPAndPort(net)
			e.checkMAC(net)
			e.checkReload(net)
		})
	}
}

func (e *podmanEnv) checkIPAndPort(net string) {
	e.t.Helper()
	e.httpd("ip", "--network", net, "--ip", "10.89.1.50", "-p", "8083:80")
	if _, ip := e.iface("ip"); ip.String() != "10.89.1.50" {
		e.t.Errorf("--ip 10.89.1.50: eth0 has %s", ip)
	}
	if err := e.fetch(8083); err != nil {
		e.t.Errorf("--ip with -p 8083:80: %v", err)
	}
	e.checkAgent("ip", "10.89.1.50", "", 8083)
}

func (e *podmanEnv) checkMAC(net string) {
	e.t.Helper()
	const mac = "02:aa:bb:cc:dd:01"
	e.httpd("mac", "--network", net, "--mac-address", mac, "-p", "8084:80")
	got, ip := e.iface("mac")
	if got.String() != mac {
		e.t.Errorf("--mac-address %s: eth0 has %s", mac, got)
	}
	if err := e.fetch(8084); err != nil {
		e.t.Errorf("--mac-address with -p 8084:80: %v", err)
	}
	nstest.ListenTCP(e.t, e.topo.Ext, "ext", ":9000")
	dst := netip.AddrPortFrom(nstest.ExtAddr, 9000).String()
	if r := nstest.DialTCP(e.podman.ContainerNS(e.t, "mac"), dst, nstest.DialOptions{Timeout: 3 * time.Second}); !r.OK() || r.Server != "ext" {
		e.t.Errorf("container with --mac-address -> %s: %v; want answered by ext", dst, r)
	}
	e.checkAgent("mac", ip.String(), mac, 8084)
}

func (e *podmanEnv) checkReload(net string) {
	e.t.Helper()
	const mac, ip = "02:aa:bb:cc:dd:02", "10.89.1.60"
	e.httpd("rl", "--network", net, "--ip", ip, "--mac-address", mac, "-p", "8085:80")
	if err := e.fetch(8085); err != nil {
		e.t.Errorf("before podman network reload: %v", err)
	}
	e.podman.MustPodman(e.t, "network", "reload", "rl")
	gotMAC, gotIP := e.iface("rl")
	if gotMAC.String() != mac || gotIP.String() != ip {
		e.t.Errorf("after podman network reload: eth0 has %s %s; want %s %s", gotMAC, gotIP, mac, ip)
	}
	if err := e.fetch(8085); err != nil {
		e.t.Errorf("after podman network reload: %v", err)
	}
	e.checkAgent("rl", ip, mac, 8085)
}

// checkAgent checks, for portcullis-cni, that the agent holds exactly one
// endpoint for the container, with its address (and MAC when given), and
// exactly one mapping of hostPort, to that endpoint.
func (e *podmanEnv) checkAgent(ctr, ip, mac string, hostPort int) {
	e.t.Helper()
	if e.api == nil {
		return
	}
	id := e.podman.MustPodman(e.t, "inspect", "--format", "{{.Id}}", ctr)
	eps, err := e.api.Endpoints(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	var mine []model.Endpoint
	for _, ep := range eps {
		if strings.HasPrefix(ep.ID, "cni-"+id[:12]) {
			mine = append(mine, ep)
		}
	}
	if len(mine) != 1 || ip != "" && mine[0].IP != ip || mac != "" && mine[0].MAC != mac {
		e.t.Errorf("endpoints of %s in the agent: %+v; want one with %s %s", ctr, mine, ip, mac)
		return
	}
	ports, err := e.api.Ports(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	n := 0
	for _, p := range ports {
		if p.HostPort == hostPort {
			n++
			if p.Endpoint != mine[0].ID || p.Port != 80 {
				e.t.Errorf("port mapping of %d: %+v; want to %s port 80", hostPort, p, mine[0].ID)
			}
		}
	}
	if n != 1 {
		e.t.Errorf("%d port mappings of host port %d in the agent; want 1", n, hostPort)
	}
}

// TestPodmanAgentDown: containers stopped or removed while the agent is
// down (their DEL cannot reach it; Podman logs "Unable to clean up
// network", never retries, and removes their namespaces). The agent
// starts anyway and drops their endpoints and ports; the stopped container
// starts again (its address was released, host-local does not refuse a
// second allocation), and a new container publishes the removed one's
// port. On both backends (the eBPF agent used to refuse to start), and on
// Podman's own chain, where nothing is down, as the reference.
func TestPodmanAgentDown(t *testing.T) {
	for _, b := range []string{"", "nftables", "ebpf"} {
		name := "bridge-portmap"
		if b != "" {
			name = "portcullis-" + b
		}
		t.Run(name, func(t *testing.T) {
			e := newPodmanEnv(t, b)
			c := refChain
			if b != "" {
				c = pcChain("portcullis", false)
			}
			net := e.network(c, "10.89.1.0/24")
			goneID := e.httpd("gone", "--network", net, "-p", "8086:80")
			backID := e.httpd("back", "--network", net, "-p", "8088:80")
			for _, port := range []int{8086, 8088} {
				if err := e.fetch(port); err != nil {
					t.Fatalf("before: %v", err)
				}
			}
			if e.agent != nil {
				if err := e.agent.Stop(); err != nil {
					t.Fatal(err)
				}
			}
			e.podman.Remove(t, "gone")
			e.podman.MustPodman(t, "stop", "-t", "0", "back")
			if e.agent != nil {
				if err := e.agent.Start(); err != nil {
					t.Fatalf("agent start after containers went while it was down: %v", err)
				}
				if eps, err := e.api.Endpoints(context.Background()); err != nil || len(eps) != 0 {
					t.Errorf("endpoints after the restart: %+v (%v); want none (no container runs)", eps, err)
				}
				if ports, err := e.api.Ports(context.Background()); err != nil || len(ports) != 0 {
					t.Errorf("port mappings after the restart: %+v (%v); want none", ports, err)
				}
				e.checkVanished(goneID, backID)
			}
			if err := e.noAnswer(8086); err != nil {
				t.Error(err)
			}
			e.podman.MustPodman(t, "start", "back")
			e.httpd("new", "--network", net, "-p", "8086:80")
			for _, port := range []int{8086, 8088} {
				if err := e.fetch(port); err != nil {
					t.Errorf("after: %v", err)
				}
			}
			e.checkAgent("new", "", "", 8086)
			e.checkAgent("back", "", "", 8088)
			e.checkAllocations(net, "back", "new")
		})
	}
}

// TestPodmanVethGoneResync: a container's veth goes while the agent runs
// and nobody tells it (here removed by hand). The agent's periodic resync
// drops the endpoint with its port mapping and says so in its status;
// Podman's DEL of that container then finds nothing to undo and succeeds,
// and another container publishes the same port. (Podman itself holds the
// host ports of its running containers, so the port is taken for Podman
// until the container is removed, as with its own chain.)
func TestPodmanVethGoneResync(t *testing.T) {
	e := newPodmanEnv(t, *backend, "--resync-period", "1s")
	net := e.network(pcChain("portcullis", false), "10.89.1.0/24")
	lostID := e.httpd("lost", "--network", net, "-p", "8089:80")
	e.httpd("kept", "--network", net, "-p", "8092:80")
	if err := e.fetch(8089); err != nil {
		t.Fatalf("before: %v", err)
	}
	e.topo.Node.MustIP(t, "link", "del", cni.HostVethName(cni.EndpointID(lostID, "eth0")))
	start := time.Now()
	deadline := start.Add(20 * time.Second)
	for {
		ports, err := e.api.Ports(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(ports, func(p model.PortMapping) bool { return p.HostPort == 8089 }) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("port 8089 of the container whose veth went is still mapped after 20 s: %+v", ports)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("mapping dropped %v after the veth went (resync period 1 s)", time.Since(start).Round(100*time.Millisecond))
	e.checkVanished(lostID)
	if err := e.noAnswer(8089); err != nil {
		t.Error(err)
	}
	e.podman.Remove(t, "lost")
	e.httpd("new", "--network", net, "-p", "8089:80")
	for _, port := range []int{8089, 8092} {
		if err := e.fetch(port); err != nil {
			t.Errorf("after the resync: %v", err)
		}
	}
	e.checkAgent("new", "", "", 8089)
	e.checkAgent("kept", "", "", 8092)
}

// checkVanished checks that the agent's status lists the endpoints of the
// containers ids as dropped because their interfaces went.
func (e *podmanEnv) checkVanished(ids ...string) {
	e.t.Helper()
	st, err := e.api.Status(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	rs, _ := st["reconciler"].(map[string]any)
	gone := fmt.Sprint(rs["vanished"])
	for _, id := range ids {
		if !strings.Contains(gone, "endpoint cni-"+id[:12]) {
			e.t.Errorf("status reconciler.vanished = %s; want the endpoint of container %s", gone, id[:12])
		}
	}
}

// checkAllocations checks that host-local holds exactly the addresses of
// the containers named: none is left by a container that went.
func (e *podmanEnv) checkAllocations(net string, ctrs ...string) {
	e.t.Helper()
	var want []string
	for _, c := range ctrs {
		_, ip := e.iface(c)
		want = append(want, ip.String())
	}
	files, _ := filepath.Glob(filepath.Join(e.podman.IPAMDir(), net, "*.*.*.*"))
	var have []string
	for _, f := range files {
		have = append(have, filepath.Base(f))
	}
	slices.Sort(want)
	slices.Sort(have)
	if !slices.Equal(have, want) {
		e.t.Errorf("host-local allocations of %s: %v; want %v (those of %v)", net, have, want, ctrs)
	}
}

// TestPodmanNetworkCreate: `podman network create` makes only its own
// drivers' networks, so `pcctl cni-conflist` writes a portcullis-cni one
// into Podman's configuration directory. Podman then lists it, inspect
// shows its subnet (in the labels: Podman 4.3 reads subnets only from its
// own drivers' plugins; the reference shows them under "subnets"), a
// container on it publishes a port, and `podman network rm` removes it.
func TestPodmanNetworkCreate(t *testing.T) {
	e := newPodmanEnv(t, *backend)
	ref := "pct-ref-" + e.topo.Suffix
	e.podman.TrackNetwork(ref)
	e.podman.MustPodman(t, "network", "create", "--subnet", "10.89.3.0/24", ref)
	if s := e.inspect(ref); !strings.Contains(s, `"subnet": "10.89.3.0/24"`) {
		t.Errorf("reference: podman network inspect %s:\n%s\nwant subnet 10.89.3.0/24", ref, s)
	}
	e.podman.MustPodman(t, "network", "rm", ref)

	name := "pct-pc-" + e.topo.Suffix
	if out, err := e.podman.Podman("network", "create", "-d", "portcullis-cni", "--subnet", "10.89.2.0/24", name); err == nil {
		t.Errorf("podman network create -d portcullis-cni: accepted (%s); docs/cni.md says Podman 4.3 refuses it: update them", out)
	}
	e.podman.TrackNetwork(name)
	args := []string{"cni-conflist", name, "-subnet", "10.89.2.0/24", "-bridge", "pcbr0",
		"-socket", e.agent.Socket, "-ipam-dir", e.podman.IPAMDir(), "-dir", e.podman.ConfDir}
	if out, err := pcctl(args...); err != nil {
		t.Fatalf("pcctl %s: %v: %s", strings.Join(args, " "), err, out)
	}
	if out, err := pcctl(args...); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Errorf("pcctl cni-conflist of an existing network: %v %s; want a refusal saying it exists", err, out)
	}
	if ls := e.podman.MustPodman(t, "network", "ls", "--format", "{{.Name}} {{.Driver}}"); !strings.Contains(ls, name+" portcullis-cni") {
		t.Errorf("podman network ls:\n%s\nwant %s portcullis-cni", ls, name)
	}
	var nets []struct {
		Driver string            `json:"driver"`
		Labels map[string]string `json:"labels"`
	}
	s := e.inspect(name)
	if err := json.Unmarshal([]byte(s), &nets); err != nil || len(nets) != 1 || nets[0].Driver != "portcullis-cni" || nets[0].Labels["portcullis.subnet"] != "10.89.2.0/24" {
		t.Errorf("podman network inspect %s (%v):\n%s\nwant driver portcullis-cni and label portcullis.subnet 10.89.2.0/24", name, err, s)
	}
	e.httpd("web", "--network", name, "--ip", "10.89.2.7", "-p", "8087:80")
	if err := e.fetch(8087); err != nil {
		t.Errorf("container on the pcctl-made network: %v", err)
	}
	e.podman.Remove(t, "web")
	e.podman.MustPodman(t, "network", "rm", name)
	if _, err := os.Stat(filepath.Join(e.podman.ConfDir, name+".conflist")); !os.IsNotExist(err) {
		t.Errorf("after podman network rm: %v; want the conflist gone", err)
	}
}

func (e *podmanEnv) inspect(net string) string {
	e.t.Helper()
	return e.podman.MustPodman(e.t, "network", "inspect", net)
}

// pcctl runs pcctl in this process.
func pcctl(args ...string) (string, error) {
	var out bytes.Buffer
	err := ctl.Run(context.Background(), args, ctl.Env{Stdout: &out, Stderr: &out, Getenv: func(string) string { return "" }})
	return out.String(), err
}
