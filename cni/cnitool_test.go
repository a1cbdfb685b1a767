package cni_test

import (
	"bytes"
	"context"
	"crypto/sha512"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	types100 "github.com/containernetworking/cni/pkg/types/100"

	"github.com/portcullis/portcullis/cni"
	"github.com/portcullis/portcullis/dataplane/api"
	"github.com/portcullis/portcullis/dataplane/model"
	"github.com/portcullis/portcullis/internal/nstest"
)

// End-to-end tests: the CNI project's reference client, cnitool, runs
// portcullis-cni (built from this tree) chained with Debian's host-local,
// tuning and bandwidth, inside the node namespace of an nstest topology
// whose agent is a real portcullisd. Traffic goes between the topology's
// namespaces only.

var backend = flag.String("backend", "nftables", "portcullisd backend for the cnitool tests: nftables or ebpf")

// cnitoolVersion is the cnitool `go install`ed when none is found.
const cnitoolVersion = "v1.3.1"

// cniCache is where libcni (in cnitool) caches ADD results.
const cniCache = "/var/lib/cni/results"

// Addresses of the CNI network: a documentation range, inside namespaces.
const (
	cniSubnet  = "198.51.100.0/24"
	cniGateway = "198.51.100.1"
	cniSubnet6 = "2001:db8:99::/64"
	hostPort   = 18080
	ctrPort    = 8080
)

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	nstest.ReleaseAll()
	nstest.RemoveBuild()
	removeTools()
	os.Exit(code)
}

// tools are cnitool, the plugin directory (host-local, tuning, bandwidth)
// and a directory holding the portcullis-cni under test.
var tools struct {
	once      sync.Once
	tmp       string
	cnitool   string
	pluginDir string
	binDir    string
	skip      string // why the tests cannot run
	err       error  // a failure to build our own plugin
}

func removeTools() {
	if tools.tmp != "" {
		os.RemoveAll(tools.tmp)
	}
}

// needTools finds (or installs) what the tests run, or skips.
func needTools(t *testing.T) {
	t.Helper()
	nstest.RequireRoot(t)
	tools.once.Do(findTools)
	if tools.err != nil {
		t.Fatal(tools.err)
	}
	if tools.skip != "" {
		t.Skip(tools.skip)
	}
}

func findTools() {
	var err error
	if tools.tmp, err = os.MkdirTemp("", "pct-cni-"); err != nil {
		tools.err = err
		return
	}
	tools.binDir = filepath.Join(tools.tmp, "bin")
	root, err := nstest.ModuleRoot()
	if err == nil {
		err = goCmd(root, nil, "build", "-o", filepath.Join(tools.binDir, "portcullis-cni"), "./cmd/portcullis-cni")
	}
	if err != nil {
		tools.err = fmt.Errorf("build portcullis-cni: %w", err)
		return
	}
	if tools.pluginDir = pluginDir(); tools.pluginDir == "" {
		out, err := exec.Command("sh", "-c", "apt-get install -y -qq containernetworking-plugins || (apt-get update -qq && apt-get install -y -qq containernetworking-plugins)").CombinedOutput()
		if tools.pluginDir = pluginDir(); tools.pluginDir == "" {
			tools.skip = fmt.Sprintf("needs the CNI plugins host-local, tuning and bandwidth in /usr/lib/cni or /opt/cni/bin (Debian: apt-get install containernetworking-plugins), and installing them failed: %v: %s", err, lastLine(out))
			return
		}
	}
	if tools.cnitool = findCnitool(); tools.cnitool == "" {
		gobin := filepath.Join(tools.tmp, "gobin")
		err := goCmd("", []string{"GOBIN=" + gobin}, "install", "github.com/containernetworking/cni/cnitool@"+cnitoolVersion)
		if err != nil {
			tools.skip = fmt.Sprintf("needs cnitool (go install github.com/containernetworking/cni/cnitool@%s), and installing it failed: %v", cnitoolVersion, err)
			return
		}
		tools.cnitool = filepath.Join(gobin, "cnitool")
	}
}

func pluginDir() string {
	for _, d := range []string{os.Getenv("CNI_PLUGIN_DIR"), "/usr/lib/cni", "/opt/cni/bin"} {
		if d == "" {
			continue
		}
		ok := true
		for _, p := range []string{"host-local", "tuning", "bandwidth"} {
			if _, err := os.Stat(filepath.Join(d, p)); err != nil {
				ok = false
			}
		}
		if ok {
			return d
		}
	}
	return ""
}

func findCnitool() string {
	if p := os.Getenv("CNITOOL"); p != "" {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("cnitool"); err == nil {
		return p
	}
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		p := filepath.Join(strings.TrimSpace(string(out)), "bin", "cnitool")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

func goCmd(dir string, env []string, args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir, cmd.Env = dir, append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go %s: %w: %s", strings.Join(args, " "), err, lastLine(out))
	}
	return nil
}

func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}

// env is one test's world: topology, agent, and a NETCONFPATH.
type env struct {
	t       *testing.T
	ctx     context.Context
	topo    *nstest.Topology
	agent   *nstest.Agent
	api     *api.Client
	confDir string
	ipamDir string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	needTools(t)
	topo := nstest.NewTopology(t, nstest.Options{})
	a := topo.StartAgent(nstest.AgentOptions{Backend: *backend})
	e := &env{t: t, ctx: context.Background(), topo: topo, agent: a, api: api.NewClient(a.Socket),
		confDir: t.TempDir(), ipamDir: t.TempDir()}
	// A test that fails half-way leaves cnitool's cached results; DEL
	// removes them otherwise (assertNothingLeft checks).
	t.Cleanup(func() {
		left, _ := filepath.Glob(filepath.Join(cniCache, e.netName()+"-*"))
		for _, f := range left {
			os.Remove(f)
		}
	})
	return e
}

// netName is the CNI network name: unique, so the CNI result cache under
// /var/lib/cni never mixes two runs.
func (e *env) netName() string { return "pct-" + e.topo.Suffix }

// writeConf writes the conflist of the tests: portcullis-cni with
// host-local, then tuning (MTU 1400) and bandwidth (both directions, so
// that it makes an ifb device too).
func (e *env) writeConf() {
	conf := map[string]any{
		"cniVersion": "1.0.0",
		"name":       e.netName(),
		"plugins": []any{
			map[string]any{
				"type": "portcullis-cni", "socket": e.agent.Socket,
				"network": "pcn", "bridge": "pcbr0", "subnet": cniSubnet,
				"ipam": map[string]any{
					"type": "host-local", "dataDir": e.ipamDir,
					"ranges": [][]map[string]string{{{"subnet": cniSubnet}}},
				},
				"capabilities": map[string]bool{"portMappings": true},
			},
			map[string]any{"type": "tuning", "mtu": 1400},
			map[string]any{"type": "bandwidth",
				"ingressRate": 1_000_000_000, "ingressBurst": 100_000_000,
				"egressRate": 1_000_000_000, "egressBurst": 100_000_000},
		},
	}
	e.writeFile(e.netName()+".conflist", conf)
}

func (e *env) writeFile(name string, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		e.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.confDir, name), b, 0o644); err != nil {
		e.t.Fatal(err)
	}
}

// cnitool runs `cnitool VERB NET NETNS` inside the node namespace, as a
// runtime on the node would, and returns its standard output.
func (e *env) cnitool(verb, net string, ctr *nstest.NS, capArgs string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", e.topo.Node.Name, tools.cnitool, verb, net, ctr.Path)
	cmd.Env = append(os.Environ(),
		"CNI_PATH="+tools.binDir+string(os.PathListSeparator)+tools.pluginDir,
		"NETCONFPATH="+e.confDir,
		"CAP_ARGS="+capArgs,
	)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		return stdout.String(), fmt.Errorf("cnitool %s %s %s: %w: %s %s", verb, net, ctr.Name, err,
			strings.TrimSpace(stdout.String()), strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

func (e *env) mustCnitool(verb, net string, ctr *nstest.NS, capArgs string) string {
	e.t.Helper()
	out, err := e.cnitool(verb, net, ctr, capArgs)
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

// containerID is the id cnitool gives an attachment: a hash of the
// namespace path.
func containerID(ctr *nstest.NS) string {
	s := sha512.Sum512([]byte(ctr.Path))
	return fmt.Sprintf("cnitool-%x", s[:10])
}

// addResult parses cnitool add's output and returns it with the
// container's IPv4 address.
func (e *env) addResult(out string) (*types100.Result, netip.Addr) {
	e.t.Helper()
	r, err := types100.NewResult([]byte(out))
	if err != nil {
		e.t.Fatalf("parse ADD result: %v\n%s", err, out)
	}
	res := r.(*types100.Result)
	for _, ip := range res.IPs {
		if a, ok := netip.AddrFromSlice(ip.Address.IP.To4()); ok {
			return res, a
		}
	}
	e.t.Fatalf("ADD result without IPv4 address:\n%s", out)
	return nil, netip.Addr{}
}

func portCap(hostPort, ctrPort int) string {
	return fmt.Sprintf(`{"portMappings":[{"hostPort":%d,"containerPort":%d,"protocol":"tcp"},{"hostPort":%d,"containerPort":%d,"protocol":"tcp","hostIP":"::"}]}`,
		hostPort, ctrPort, hostPort, ctrPort)
}

// TestCnitoolLifecycle is the whole life of a container under a runtime:
// ADD with a published port, traffic in and out, CHECK, DEL twice, and
// nothing left behind.
func TestCnitoolLifecycle(t *testing.T) {
	e := newEnv(t)
	e.writeConf()
	c1 := e.topo.AddContainer("c1")
	capArgs := portCap(hostPort, ctrPort)
	out := e.mustCnitool("add", e.netName(), c1, capArgs)
	res, ip1 := e.addResult(out)
	t.Logf("ADD result:\n%s", out)

	epID := cni.EndpointID(containerID(c1), "eth0")
	e.checkResult(res, c1)
	e.checkAgent(epID, ip1)
	if err := c1.WaitInterface("eth0", ip1, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if ifi, err := c1.Interface("eth0"); err != nil || ifi.MTU != 1400 {
		t.Errorf("eth0 in the container: MTU %v (%v), want 1400 from tuning", ifi, err)
	}
	e.checkBandwidth(cni.HostVethName(epID))
	nstest.ListenTCP(t, c1, "c1", fmt.Sprintf(":%d", ctrPort))
	c2 := e.topo.AddContainer("c2")
	_, ip2 := e.addResult(e.mustCnitool("add", e.netName(), c2, ""))
	e.checkTraffic(c1, ip1, c2, ip2)
	dst := netip.AddrPortFrom(nstest.NodeAddr, hostPort).String()

	// A repeated ADD (a runtime bug) fails and changes nothing.
	if _, err := e.cnitool("add", e.netName(), c1, capArgs); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("second ADD of c1: %v; want an error saying eth0 already exists", err)
	}
	e.mustCnitool("check", e.netName(), c1, capArgs)
	e.mustCnitool("check", e.netName(), c2, "")
	if r := nstest.DialTCP(e.topo.Ext, dst, nstest.DialOptions{Timeout: 3 * time.Second}); !r.OK() || r.Server != "c1" {
		t.Errorf("ext -> %s after the repeated ADD: %v", dst, r)
	}

	// CHECK notices what is wrong: a mapping gone from the agent.
	pid := epID + "-tcp-" + fmt.Sprint(hostPort)
	if err := e.api.DeletePort(e.ctx, pid); err != nil {
		t.Fatalf("DELETE port %s: %v", pid, err)
	}
	if _, err := e.cnitool("check", e.netName(), c1, capArgs); err == nil || !strings.Contains(err.Error(), pid) {
		t.Errorf("CHECK with port mapping %s deleted: %v; want an error naming it", pid, err)
	}

	for i := range 2 { // DEL is idempotent
		if _, err := e.cnitool("del", e.netName(), c1, capArgs); err != nil {
			t.Fatalf("DEL #%d: %v", i+1, err)
		}
	}
	e.mustCnitool("del", e.netName(), c2, "")
	e.assertNothingLeft(c1, c2)
	if r := nstest.DialTCP(e.topo.Ext, dst, nstest.DialOptions{Timeout: time.Second}); r.OK() {
		t.Errorf("ext -> %s after DEL: %v; want no answer", dst, r)
	}
}

// TestCnitoolNamespaceGone is DEL after the runtime already removed the
// container's namespace, as runtimes do when a container died.
func TestCnitoolNamespaceGone(t *testing.T) {
	e := newEnv(t)
	e.writeConf()
	c := e.topo.AddContainer("gone")
	_, ip := e.addResult(e.mustCnitool("add", e.netName(), c, portCap(hostPort, ctrPort)))
	e.checkAgent(cni.EndpointID(containerID(c), "eth0"), ip)
	c.Delete()
	for i := range 2 {
		if _, err := e.cnitool("del", e.netName(), c, portCap(hostPort, ctrPort)); err != nil {
			t.Fatalf("DEL #%d with the namespace gone: %v", i+1, err)
		}
	}
	e.assertNothingLeft(c)
}

// TestCnitoolSpec110 runs a spec 1.1.0 configuration: STATUS, the ipam
// shorthand (host-local over "subnet", which speaks only up to 1.0.0 in
// Debian: the plugin talks to it in 1.0.0), and GC of an attachment the
// runtime forgot.
func TestCnitoolSpec110(t *testing.T) {
	e := newEnv(t)
	name := e.netName()
	// The shorthand uses host-local's default data directory.
	t.Cleanup(func() { os.RemoveAll(filepath.Join("/var/lib/cni/networks", name)) })
	conf := func(socket string) map[string]any {
		return map[string]any{"cniVersion": "1.1.0", "name": name, "plugins": []any{
			map[string]any{"type": "portcullis-cni", "socket": socket, "network": "pcn",
				"subnet": cniSubnet, "subnet6": cniSubnet6,
				"capabilities": map[string]bool{"portMappings": true}},
		}}
	}
	e.writeFile("a.conflist", conf(e.agent.Socket))
	c := e.topo.AddContainer("spec")
	e.mustCnitool("status", name, c, "")
	res, ip := e.addResult(e.mustCnitool("add", name, c, portCap(hostPort, ctrPort)))
	epID := cni.EndpointID(containerID(c), "eth0")
	e.checkAgent(epID, ip)
	e.mustCnitool("check", name, c, portCap(hostPort, ctrPort))
	if len(res.IPs) != 2 || len(res.Routes) != 2 {
		t.Fatalf("ADD result on a dual-stack network: IPs %v, routes %v; want one IPv4 and one IPv6 each", res.IPs, res.Routes)
	}
	// The "::" entry of the capability is the IPv6 side of the same mapping.
	nstest.ListenTCP(t, c, "spec", fmt.Sprintf("[::]:%d", ctrPort))
	for _, node := range []netip.Addr{nstest.NodeAddr, nstest.NodeAddr6} {
		dst := netip.AddrPortFrom(node, hostPort).String()
		if r := nstest.DialTCP(e.topo.Ext, dst, nstest.DialOptions{Timeout: 3 * time.Second}); !r.OK() || r.Server != "spec" {
			t.Errorf("ext -> %s: %v; want answered by the container", dst, r)
		}
	}

	// GC: the runtime lost track of the attachment (no cached result, so
	// no DEL) and says no attachment is valid.
	cache := filepath.Join(cniCache, name+"-"+containerID(c)+"-eth0")
	if err := os.Remove(cache); err != nil {
		t.Fatalf("remove cached result: %v", err)
	}
	e.mustCnitool("gc", name, c, "")
	if _, err := e.api.Endpoint(e.ctx, epID); err == nil {
		t.Errorf("endpoint %s still in the agent after GC", epID)
	}
	if out := e.topo.Node.MustIP(t, "-o", "link", "show", "master", "pcn"); strings.Contains(out, "pcc") {
		t.Errorf("veth left on bridge after GC: %s", out)
	}
	if _, err := c.Interface("eth0"); err == nil {
		t.Error("eth0 still in the container after GC")
	}
	e.mustCnitool("del", name, c, "") // releases the address; idempotent for the rest

	// STATUS says so when the agent is not there.
	e.writeFile("a.conflist", conf(filepath.Join(t.TempDir(), "absent.sock")))
	_, err := e.cnitool("status", name, c, "")
	if err == nil || !strings.Contains(err.Error(), "not reachable") {
		t.Errorf("STATUS without an agent: %v; want an error saying portcullisd is not reachable", err)
	}
}

// checkTraffic checks what a plugged container c1 (serving ctrPort,
// published on hostPort) can do: be reached from the external host through
// the node, reach out masqueraded, and be reached by c2 on the network (icc
// is on by default).
func (e *env) checkTraffic(c1 *nstest.NS, ip1 netip.Addr, c2 *nstest.NS, ip2 netip.Addr) {
	e.t.Helper()
	dst := netip.AddrPortFrom(nstest.NodeAddr, hostPort).String()
	if r := nstest.DialTCP(e.topo.Ext, dst, nstest.DialOptions{Timeout: 3 * time.Second}); !r.OK() || r.Server != "c1" || r.Seen.Addr() != nstest.ExtAddr {
		e.t.Errorf("ext -> %s (published to c1:%d): %v; want answered by c1, seen as %v", dst, ctrPort, r, nstest.ExtAddr)
	}
	nstest.ListenTCP(e.t, e.topo.Ext, "ext", ":9090")
	if r := nstest.DialTCP(c1, netip.AddrPortFrom(nstest.ExtAddr, 9090).String(), nstest.DialOptions{}); !r.OK() || r.Seen.Addr() != nstest.NodeAddr {
		e.t.Errorf("c1 -> ext:9090: %v; want seen as the node %v", r, nstest.NodeAddr)
	}
	if r := nstest.DialTCP(c2, netip.AddrPortFrom(ip1, ctrPort).String(), nstest.DialOptions{}); !r.OK() || r.Seen.Addr() != ip2 {
		e.t.Errorf("c2 -> c1:%d: %v; want seen as %v", ctrPort, r, ip2)
	}
}

// checkResult checks the interfaces of the ADD result: bridge, host end,
// container end in the container's namespace (then bandwidth's ifb).
func (e *env) checkResult(r *types100.Result, ctr *nstest.NS) {
	e.t.Helper()
	if len(r.Interfaces) < 3 || r.Interfaces[0].Name != "pcbr0" || r.Interfaces[2].Name != "eth0" || r.Interfaces[2].Sandbox != ctr.Path {
		e.t.Errorf("ADD result interfaces: %v", r.Interfaces)
	}
	if len(r.IPs) != 1 || r.IPs[0].Interface == nil || *r.IPs[0].Interface != 2 || r.IPs[0].Gateway.String() != cniGateway {
		e.t.Errorf("ADD result IPs: %v", r.IPs)
	}
	if len(r.Routes) != 1 || r.Routes[0].Dst.String() != "0.0.0.0/0" {
		e.t.Errorf("ADD result routes: %v", r.Routes)
	}
}

// checkAgent checks what the agent holds for an attachment.
func (e *env) checkAgent(epID string, ip netip.Addr) {
	e.t.Helper()
	ep, err := e.api.Endpoint(e.ctx, epID)
	if err != nil {
		e.t.Fatalf("GET endpoint %s: %v", epID, err)
	}
	if ep.Network != "pcn" || ep.IP != ip.String() || ep.HostIfname != cni.HostVethName(epID) {
		e.t.Errorf("endpoint in the agent: %+v", ep)
	}
	n, err := e.api.Network(e.ctx, "pcn")
	if err != nil || n.Subnet != cniSubnet || n.Bridge != "pcbr0" && n.Bridge != "pcn" {
		e.t.Errorf("network pcn in the agent: %+v, %v", n, err)
	}
	ports, err := e.api.Ports(e.ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	var mine []model.PortMapping
	for _, p := range ports {
		if p.Endpoint == epID {
			mine = append(mine, p)
		}
	}
	// 0.0.0.0 and :: entries are one mapping on every node address.
	if len(mine) != 1 || mine[0].HostPort != hostPort || mine[0].Port != ctrPort || mine[0].HostIP != "" {
		e.t.Errorf("port mappings of %s: %+v", epID, mine)
	}
}

// checkBandwidth checks that the bandwidth plugin found the host end in
// the result and shaped it.
func (e *env) checkBandwidth(hostVeth string) {
	e.t.Helper()
	out, err := e.topo.Node.Exec("tc", "qdisc", "show", "dev", hostVeth)
	if err != nil || !strings.Contains(out, "tbf") {
		e.t.Errorf("tc qdisc on %s (bandwidth plugin): %v\n%s", hostVeth, err, out)
	}
}

// assertNothingLeft checks that DEL left no endpoint, port mapping, veth,
// ifb device, address allocation or cached result, and, for containers
// whose namespace still exists, no interface inside.
func (e *env) assertNothingLeft(ctrs ...*nstest.NS) {
	e.t.Helper()
	eps, err := e.api.Endpoints(e.ctx)
	if err != nil || len(eps) != 0 {
		e.t.Errorf("endpoints left in the agent: %+v (%v)", eps, err)
	}
	ports, err := e.api.Ports(e.ctx)
	if err != nil || len(ports) != 0 {
		e.t.Errorf("port mappings left in the agent: %+v (%v)", ports, err)
	}
	out := e.topo.Node.MustIP(e.t, "-o", "link", "show")
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
		if name != "lo" && name != nstest.UplinkName && name != "pcbr0" {
			e.t.Errorf("interface left in the node: %s", l)
		}
	}
	ipamFiles, _ := filepath.Glob(filepath.Join(e.ipamDir, e.netName(), "*"))
	for _, f := range ipamFiles {
		if _, err := netip.ParseAddr(filepath.Base(f)); err == nil {
			e.t.Errorf("address still allocated by host-local: %s", f)
		}
	}
	for _, c := range ctrs {
		cache := filepath.Join(cniCache, e.netName()+"-"+containerID(c)+"-eth0")
		if _, err := os.Stat(cache); !errors.Is(err, os.ErrNotExist) {
			e.t.Errorf("cached result left: %s (%v)", cache, err)
		}
		if _, err := os.Stat(c.Path); err != nil {
			continue
		}
		if _, err := c.Interface("eth0"); err == nil {
			e.t.Errorf("eth0 left in %s", c.Name)
		}
	}
}

// TestCnitoolAddFailsCleanly: an ADD that portcullisd refuses (the host
// port is taken) fails with the agent's reason and leaves nothing: no
// endpoint, no veth, no address allocated.
func TestCnitoolAddFailsCleanly(t *testing.T) {
	e := newEnv(t)
	e.writeConf()
	a, b := e.topo.AddContainer("a"), e.topo.AddContainer("b")
	capArgs := portCap(hostPort, ctrPort)
	_, ipA := e.addResult(e.mustCnitool("add", e.netName(), a, capArgs))
	_, err := e.cnitool("add", e.netName(), b, capArgs)
	if err == nil || !strings.Contains(err.Error(), fmt.Sprint(hostPort)) {
		t.Fatalf("ADD of a second container publishing %d: %v; want a refusal naming the port", hostPort, err)
	}
	t.Logf("refused as expected: %v", err)
	epB := cni.EndpointID(containerID(b), "eth0")
	if _, err := e.api.Endpoint(e.ctx, epB); err == nil {
		t.Errorf("endpoint %s left after a failed ADD", epB)
	}
	if _, err := e.topo.Node.IP("link", "show", cni.HostVethName(epB)); err == nil {
		t.Errorf("host veth %s left after a failed ADD", cni.HostVethName(epB))
	}
	if _, err := b.Interface("eth0"); err == nil {
		t.Error("eth0 left in the container after a failed ADD")
	}
	files, _ := filepath.Glob(filepath.Join(e.ipamDir, e.netName(), "*.*.*.*"))
	if len(files) != 1 || filepath.Base(files[0]) != ipA.String() {
		t.Errorf("host-local allocations after a failed ADD: %v; want only %v", files, ipA)
	}
	// The runtime calls DEL after a failed ADD: it finds nothing, and works.
	e.mustCnitool("del", e.netName(), b, capArgs)
	e.mustCnitool("del", e.netName(), a, capArgs)
	e.assertNothingLeft(a, b)
}
