package conformance

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/dataplane/api"
	"github.com/portcullis/portcullis/dataplane/model"
	"github.com/portcullis/portcullis/internal/nstest"
)

// The Docker profile: the behaviour rows that Docker has a command for,
// driven by a real engine (Debian's docker.io) with its iptables off and
// portcullisd --docker following it, plus the lifecycle a Docker host goes
// through. One engine and one agent serve every row, in order.
var dockerRows = []row{
	{"D01_Walkthrough", dockerWalkthrough},
	{"D02_Masquerade", dockerMasquerade},
	{"D03_SNATLabel", dockerSNATLabel},
	{"D04_PortForms", dockerPortForms},
	{"D05_HairpinAndNode", dockerHairpinAndNode},
	{"D06_NothingUnpublished", dockerNothingUnpublished},
	{"D07_NetworksAndICC", dockerNetworksAndICC},
	{"D08_Ownership", dockerOwnership},
	{"D09_RemoveContainer", dockerRemoveContainer},
	{"D10_ContainerRestart", dockerContainerRestart},
	{"D11_ConnectDisconnect", dockerConnectDisconnect},
	{"D12_DockerdRestart", dockerDockerdRestart},
	{"D13_AgentRestartAndKill", dockerAgentRestartAndKill},
	{"D14_Churn", dockerChurn},
	{"D15_IPv6", dockerIPv6},
	{"D16_Internal", dockerInternal},
}

// dk is the profile's world: a topology whose node runs dockerd and the
// agent (--docker, --icc=false for docker0 as in the walkthrough).
var dk struct {
	topo  *nstest.Topology
	d     *nstest.Dockerd
	agent *nstest.Agent
	api   *api.Client
	ctx   context.Context
	// web is the walkthrough's published container, kept for later rows.
	web *nstest.NS
}

func TestDocker(t *testing.T) {
	started := false
	for _, r := range dockerRows {
		t.Run(r.name, func(rt *testing.T) {
			rt.Cleanup(func() { count(rt) })
			nstest.RequireDocker(rt)
			if buildErr != nil {
				rt.Fatalf("no agent to test: %v", buildErr)
			}
			if !started {
				started = true
				startDockerEnv(rt, sharedTB{T: rt, parent: t})
			}
			if dk.agent == nil {
				rt.Fatalf("the Docker environment did not come up (see the first row)")
			}
			r.run(rt)
		})
	}
}

// sharedTB builds what every row shares: it fails the row that builds it,
// and hands cleanups (and what they report) to the whole test, which ends
// after the last row.
type sharedTB struct {
	*testing.T
	parent *testing.T
}

func (s sharedTB) Cleanup(f func())                  { s.parent.Cleanup(f) }
func (s sharedTB) Errorf(format string, args ...any) { s.parent.Errorf(format, args...) }
func (s sharedTB) Logf(format string, args ...any)   { s.parent.Logf(format, args...) }
func (s sharedTB) Failed() bool                      { return s.parent.Failed() || s.T.Failed() }
func (s sharedTB) TempDir() string                   { return s.parent.TempDir() }

func startDockerEnv(t *testing.T, tb nstest.TB) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	tb.Cleanup(cancel)
	topo := nstest.NewTopology(tb, nstest.Options{NodeAddrs: []netip.Addr{nodeAddr2, nodeAddr3}})
	// live-restore: containers outlive a dockerd restart, as production
	// hosts run it, so D12 can check that their traffic does too.
	d := nstest.StartDockerd(tb, topo.Node, "--live-restore")
	d.ImportImage(tb)
	a := topo.StartAgent(nstest.AgentOptions{Backend: *backend, Binary: agentBinary,
		Args: []string{"--docker", d.Host, "--icc=false"}})
	dk.topo, dk.d, dk.agent, dk.api, dk.ctx = topo, d, a, api.NewClient(a.Socket), ctx
	if st, err := dk.api.Status(ctx); err != nil || st["backend"] != *backend {
		t.Fatalf("agent backend: %v %v", st["backend"], err)
	}
}

// run starts a detached container and waits until the agent has its
// endpoint; it returns the container's namespace.
func run(t *testing.T, name string, args ...string) *nstest.NS {
	t.Helper()
	full := append([]string{"run", "-d", "--name", name}, args...)
	if !hasImage(args) {
		full = append(full, nstest.Image, "sleep", "3600")
	}
	dk.d.MustDocker(t, full...)
	t.Cleanup(func() { dk.d.Docker("rm", "-f", name) })
	waitEndpoints(t, name, 1)
	return dk.d.ContainerNS(t, name)
}

func hasImage(args []string) bool {
	for _, a := range args {
		if a == nstest.Image {
			return true
		}
	}
	return false
}

// endpointsOf returns the agent's endpoints for container name.
func endpointsOf(t *testing.T, name string) []model.Endpoint {
	t.Helper()
	var eps []model.Endpoint
	eps, err := dk.api.Endpoints(dk.ctx)
	if err != nil {
		t.Fatalf("GET /v1/endpoints: %v", err)
	}
	var out []model.Endpoint
	for _, e := range eps {
		if e.Name == name && e.Source == model.SourceDocker {
			out = append(out, e)
		}
	}
	return out
}

// waitEndpoints waits until the agent holds n endpoints of container name.
func waitEndpoints(t *testing.T, name string, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := endpointsOf(t, name)
		if len(got) == n {
			return
		}
		if time.Now().After(deadline) {
			st, _ := dk.api.Status(dk.ctx)
			t.Fatalf("container %s: agent has %d endpoints, want %d (docker status %v)", name, len(got), n, st["docker"])
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func dockerIP(t *testing.T, name, network string) string {
	t.Helper()
	return dk.d.MustDocker(t, "inspect", "-f", fmt.Sprintf("{{(index .NetworkSettings.Networks %q).IPAddress}}", network), name)
}

// waitListening waits until something in ns accepts connections on addr
// (a server the container runs starts a moment after the container).
func waitListening(t *testing.T, ns *nstest.NS, addr string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := ns.Do(func() error {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				c.Close()
			}
			return err
		})
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing listens on %s in %s: %v", addr, ns, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func reachHTTP(t *testing.T, ns *nstest.NS, addr string) {
	t.Helper()
	body, err := nstest.HTTPGet(ns, addr, reachTimeout)
	if err != nil || body != "busybox httpd" {
		t.Errorf("GET http://%s/ from %s: %q, %v; want the container's httpd page", addr, ns, body, err)
	}
}

// D01: the classic walkthrough with plain docker commands: web published
// with -p 8080:80, db linked to it, docker0 with icc=false.
func dockerWalkthrough(t *testing.T) {
	// httpd in the background, as a service would run; sleep is pid 1.
	web := run(t, "web", "-p", "8080:80", "-p", "8081:81", nstest.Image,
		"sh", "-c", "httpd -p 80 -h /www && exec sleep 3600")
	dk.web = web
	t.Cleanup(func() {
		if t.Failed() {
			logs, _ := dk.d.Docker("logs", "web")
			t.Logf("docker logs web:\n%s", logs)
		}
	})
	waitListening(t, web, "127.0.0.1:80")
	db := run(t, "db", "--link", "web:web")
	other := run(t, "other")
	webIP := dockerIP(t, "web", "bridge")
	web81, _ := servers(t, web, "web", 81)
	web82, _ := servers(t, web, "web-unexposed", 82)
	db90, _ := servers(t, db, "db", 90)

	// -p 8080:80 answers at the node's address, from outside.
	reachHTTP(t, dk.topo.Ext, "192.0.2.1:8080")
	// The container sees the client's own address (no proxy).
	r := reachTCP(t, dk.topo.Ext, "192.0.2.1:8081", "web")
	seenAs(t, "published port", r.Seen, nstest.ExtAddr)
	// The link: db reaches web's exposed ports, by the address docker gave
	// it in the link's variables.
	env := dk.d.MustDocker(t, "exec", "db", "env")
	if !strings.Contains(env, "WEB_PORT_80_TCP_ADDR="+webIP) {
		t.Errorf("docker did not give db the link's variables: %s", env)
	}
	reachHTTP(t, db, webIP+":80")
	reachTCP(t, db, webIP+":81", "web")
	// icc=false: what the link does not allow is blocked, with a listener
	// in place each time (a refusal would be an answer).
	blockedTCP(t, db, webIP+":82", web82)
	blockedTCP(t, other, webIP+":81", web81)
	// The child answers but cannot open connections to its parent.
	blockedTCP(t, web, dockerIP(t, "db", "bridge")+":90", db90)
	// other still reaches the outside and web's published port (controls).
	reachHTTP(t, other, "192.0.2.1:8080")
}

// D02 (B1, B3): traffic out is masqueraded on docker0; a network made with
// enable_ip_masquerade=false keeps the container's address.
func dockerMasquerade(t *testing.T) {
	c := run(t, "out1")
	servers(t, dk.topo.Ext, "ext", 7000)
	r := reachTCP(t, c, "192.0.2.2:7000", "ext")
	seenAs(t, "tcp out of docker0", r.Seen, nstest.NodeAddr)
	u := reachUDP(t, c, "192.0.2.2:7000", "ext")
	seenAs(t, "udp out of docker0", u.Seen, nstest.NodeAddr)
	reachPing(t, c, "192.0.2.2")

	dk.d.MustDocker(t, "network", "create", "--subnet", "172.31.9.0/24",
		"-o", "com.docker.network.bridge.enable_ip_masquerade=false", "routed")
	t.Cleanup(func() { dk.d.Docker("network", "rm", "routed") })
	dk.topo.ExtRoute("172.31.9.0/24", nstest.NodeAddr)
	t.Cleanup(func() { dk.topo.Ext.IP("route", "del", "172.31.9.0/24") })
	rc := run(t, "routed1", "--network", "routed")
	r = reachTCP(t, rc, "192.0.2.2:7000", "ext")
	seenAs(t, "tcp out of a routed network", r.Seen, netip.MustParseAddr(dockerIP(t, "routed1", "routed")))
}

// D03 (B2): a label gives one container its own source address, and its
// published ports answer there.
func dockerSNATLabel(t *testing.T) {
	c := run(t, "snat1", "-l", "portcullis.snat_ip="+nodeAddr3.String(), "-p", "8090:80")
	servers(t, c, "snat1", 80)
	servers(t, dk.topo.Ext, "ext", 7001)
	r := reachTCP(t, c, "192.0.2.2:7001", "ext")
	seenAs(t, "tcp out with portcullis.snat_ip", r.Seen, nodeAddr3)
	reachTCP(t, dk.topo.Ext, hostAt(nodeAddr3, 8090), "snat1")
}

// D04 (B6, B7, B8, B11): the forms of -p.
func dockerPortForms(t *testing.T) {
	c := run(t, "forms", "-p", "127.0.0.1:8082:80", "-p", nodeAddr2.String()+":8083:80",
		"-p", "8000-8010:8000-8010", "-p", "5353:53/udp", "--expose", "7070", "-P")
	forms80, _ := servers(t, c, "forms", 80)
	servers(t, c, "forms", 8000)
	servers(t, c, "forms", 8010)
	_, u53 := servers(t, c, "forms", 53)
	servers(t, c, "forms", 7070)

	// B7: only the given address answers; at another node address the
	// node's own listener on that port does, and the container sees nothing.
	// (dockerd holds host ports on the addresses it publishes them at, so
	// the node's listener takes that other address alone.)
	reachTCP(t, dk.topo.Ext, hostAt(nodeAddr2, 8083), "forms")
	nstest.ListenTCP(t, dk.topo.Node, "node", "192.0.2.1:8083")
	nodeAnswersTCP(t, dk.topo.Ext, "192.0.2.1:8083", forms80)
	// B11: 127.0.0.1 from the node only, never from outside.
	reachTCP(t, dk.topo.Node, "127.0.0.1:8082", "forms")
	nstest.ListenTCP(t, dk.topo.Node, "node", "192.0.2.1:8082")
	nodeAnswersTCP(t, dk.topo.Ext, "192.0.2.1:8082", forms80)
	// B8: the range works at both ends and is one mapping.
	reachTCP(t, dk.topo.Ext, "192.0.2.1:8000", "forms")
	reachTCP(t, dk.topo.Ext, "192.0.2.1:8010", "forms")
	ports, err := dk.api.Ports(dk.ctx)
	if err != nil {
		t.Fatal(err)
	}
	ranged := 0
	for _, p := range ports {
		if p.HostPortRange == "8000-8010" && p.PortRange == "8000-8010" {
			ranged++
		}
	}
	if ranged != 1 {
		t.Errorf("-p 8000-8010:8000-8010: want one ranged mapping, got %d in %+v", ranged, ports)
	}
	// UDP, and the client's address kept.
	ur := reachUDP(t, dk.topo.Ext, "192.0.2.1:5353", "forms")
	seenAs(t, "udp published", ur.Seen, nstest.ExtAddr)
	_ = u53
	// -P: the port dockerd chose for the exposed 7070.
	reachTCP(t, dk.topo.Ext, "192.0.2.1:"+hostPortOf(t, "forms", "7070/tcp"), "forms")
}

// D05 (B9, B10): containers and the node itself reach published ports
// through node addresses.
func dockerHairpinAndNode(t *testing.T) {
	c := run(t, "hp", "-p", "8095:80")
	servers(t, c, "hp", 80)
	other := run(t, "hp-client")
	reachTCP(t, c, "192.0.2.1:8095", "hp")     // its own published port
	reachTCP(t, other, "192.0.2.1:8095", "hp") // another container's
	reachTCP(t, dk.topo.Node, "192.0.2.1:8095", "hp")
	reachTCP(t, dk.topo.Node, "127.0.0.1:8095", "hp")
}

// D06 (B12): a host with a route to the containers reaches only what is
// published.
func dockerNothingUnpublished(t *testing.T) {
	c := run(t, "closed1", "-p", "8096:80")
	c80, _ := servers(t, c, "closed1", 80)
	c81, _ := servers(t, c, "closed1", 81)
	ip := dockerIP(t, "closed1", "bridge")
	dk.topo.ExtRoute("172.17.0.0/16", nstest.NodeAddr)
	t.Cleanup(func() { dk.topo.Ext.IP("route", "del", "172.17.0.0/16") })
	reachTCP(t, dk.topo.Ext, "192.0.2.1:8096", "closed1")
	blockedTCP(t, dk.topo.Ext, ip+":80", c80)
	blockedTCP(t, dk.topo.Ext, ip+":81", c81)
}

// D07 (B14, B15, B18): a user network with icc (the default) and one
// without; networks are isolated from each other.
func dockerNetworksAndICC(t *testing.T) {
	dk.d.MustDocker(t, "network", "create", "--subnet", "172.31.10.0/24", "open")
	t.Cleanup(func() { dk.d.Docker("network", "rm", "open") })
	dk.d.MustDocker(t, "network", "create", "--subnet", "172.31.11.0/24",
		"-o", "com.docker.network.bridge.enable_icc=false", "shut")
	t.Cleanup(func() { dk.d.Docker("network", "rm", "shut") })
	o1, o2 := run(t, "o1", "--network", "open"), run(t, "o2", "--network", "open", "-p", "8097:80")
	s1, s2 := run(t, "s1", "--network", "shut"), run(t, "s2", "--network", "shut")
	srv := map[string]*nstest.TCPServer{}
	for name, ns := range map[string]*nstest.NS{"o1": o1, "o2": o2, "s1": s1, "s2": s2} {
		srv[name], _ = servers(t, ns, name, 80)
	}
	reachTCP(t, o1, dockerIP(t, "o2", "open")+":80", "o2")
	reachTCP(t, o2, dockerIP(t, "o1", "open")+":80", "o1")
	blockedTCP(t, s1, dockerIP(t, "s2", "shut")+":80", srv["s2"])
	blockedTCP(t, s2, dockerIP(t, "s1", "shut")+":80", srv["s1"])
	// B18: from one network to the other only through published ports.
	blockedTCP(t, s1, dockerIP(t, "o2", "open")+":80", srv["o2"])
	reachTCP(t, s1, "192.0.2.1:8097", "o2")
}

// D08: Docker's objects are shown, refused to the API, and icc can be
// overridden on a Docker network through the API.
func dockerOwnership(t *testing.T) {
	dk.d.MustDocker(t, "network", "create", "--subnet", "172.31.12.0/24", "ovr")
	t.Cleanup(func() { dk.d.Docker("network", "rm", "ovr") })
	a, b := run(t, "ov1", "--network", "ovr"), run(t, "ov2", "--network", "ovr")
	_ = a
	ov2, _ := servers(t, b, "ov2", 80)
	bIP := dockerIP(t, "ov2", "ovr")
	reachTCP(t, a, bIP+":80", "ov2")

	ep := endpointsOf(t, "ov2")[0]
	if err := dk.api.DeleteEndpoint(dk.ctx, ep.ID); apiStatus(err) != http.StatusConflict {
		t.Errorf("DELETE a Docker container's endpoint through the API: %v, want 409", err)
	}
	n := model.Network{Name: "ovr", Subnet: "10.200.0.0/24"}
	if _, err := dk.api.PutNetwork(dk.ctx, n); apiStatus(err) != http.StatusConflict || !strings.Contains(err.Error(), "subnet") {
		t.Errorf("PUT a new subnet on a Docker network: %v, want 409 naming subnet", err)
	}
	// icc off through the API: blocked, and still after a resync.
	if _, err := dk.api.PutNetwork(dk.ctx, model.Network{Name: "ovr", ICC: boolp(false)}); err != nil {
		t.Fatalf("override icc on a Docker network: %v", err)
	}
	blockedTCP(t, a, bIP+":80", ov2)
	run(t, "ov3", "--network", "ovr") // a sync after the override
	blockedTCP(t, a, bIP+":80", ov2)
	// Kept across an agent restart, and its first sync with Docker.
	if err := dk.agent.Restart(); err != nil {
		t.Fatalf("restart the agent: %v", err)
	}
	waitDocker(t, true)
	run(t, "ov5", "--network", "ovr")
	blockedTCP(t, a, bIP+":80", ov2)
	// Cleared: Docker's own value (icc on) comes back.
	if _, err := dk.api.PutNetwork(dk.ctx, model.Network{Name: "ovr"}); err != nil {
		t.Fatalf("clear the icc override: %v", err)
	}
	run(t, "ov4", "--network", "ovr")
	reachTCP(t, a, bIP+":80", "ov2")

	st, err := dk.api.Status(dk.ctx)
	if err != nil {
		t.Fatal(err)
	}
	ds, _ := st["docker"].(map[string]any)
	if ds["connected"] != true || ds["last_sync"] == nil {
		t.Errorf("status.docker: %v, want connected with a last sync", ds)
	}
}

// D09 (B13): removing a container stops its published ports at once, and
// the same port works for the next container, UDP from the same client too.
func dockerRemoveContainer(t *testing.T) {
	c1 := run(t, "rm1", "-p", "8098:80/udp", "-p", "8098:80")
	servers(t, c1, "rm1", 80)
	udp := udpClient(t, dk.topo.Ext, "192.0.2.1:8098")
	if r := udp.Exchange("first"); !r.OK() || r.Server != "rm1" {
		t.Fatalf("udp to rm1: %v", r)
	}
	dk.d.MustDocker(t, "rm", "-f", "rm1")
	waitEndpoints(t, "rm1", 0)
	c2 := run(t, "rm2", "-p", "8098:80/udp", "-p", "8098:80")
	servers(t, c2, "rm2", 80)
	if r := udp.Exchange("again"); !r.OK() || r.Server != "rm2" {
		t.Errorf("udp from the same client after the container was replaced: %v, want rm2", r)
	}
	reachTCP(t, dk.topo.Ext, "192.0.2.1:8098", "rm2")
}

// D10: a restarted container gets a new veth and keeps its ports.
func dockerContainerRestart(t *testing.T) {
	c := run(t, "rs1", "-p", "8099:80")
	servers(t, c, "rs1", 80)
	reachTCP(t, dk.topo.Ext, "192.0.2.1:8099", "rs1")
	before := endpointsOf(t, "rs1")[0].HostIfname
	dk.d.MustDocker(t, "restart", "-t", "0", "rs1")
	deadline := time.Now().Add(10 * time.Second)
	for {
		eps := endpointsOf(t, "rs1")
		if len(eps) == 1 && eps[0].HostIfname != before {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after docker restart: endpoints %+v, want one on a new veth (was %s)", eps, before)
		}
		time.Sleep(50 * time.Millisecond)
	}
	c = dk.d.ContainerNS(t, "rs1")
	servers(t, c, "rs1", 80)
	reachTCP(t, dk.topo.Ext, "192.0.2.1:8099", "rs1")
}

// D11: docker network connect and disconnect add and remove endpoints.
func dockerConnectDisconnect(t *testing.T) {
	dk.d.MustDocker(t, "network", "create", "--subnet", "172.31.13.0/24", "extra")
	t.Cleanup(func() { dk.d.Docker("network", "rm", "extra") })
	c := run(t, "cd1")
	peer := run(t, "cd2", "--network", "extra")
	cd2, _ := servers(t, peer, "cd2", 80)
	peerIP := dockerIP(t, "cd2", "extra")
	blockedTCP(t, c, peerIP+":80", cd2) // another network
	dk.d.MustDocker(t, "network", "connect", "extra", "cd1")
	waitEndpoints(t, "cd1", 2)
	reachTCP(t, c, peerIP+":80", "cd2")
	dk.d.MustDocker(t, "network", "disconnect", "extra", "cd1")
	waitEndpoints(t, "cd1", 1)
}

// D12: dockerd restarts with containers running (live-restore): traffic
// goes on meanwhile, status says the engine is gone, and the agent
// follows it again afterwards.
func dockerDockerdRestart(t *testing.T) {
	conn := connected(t, "dr1", 8100)
	if err := dk.d.Stop(); err != nil {
		t.Fatalf("stop dockerd: %v", err)
	}
	waitDocker(t, false)
	if err := conn.Echo(); err != nil {
		t.Errorf("established connection while dockerd is down: %v", err)
	}
	reachTCP(t, dk.topo.Ext, "192.0.2.1:8100", "dr1")
	if err := dk.d.Start(); err != nil {
		t.Fatalf("start dockerd: %v", err)
	}
	waitDocker(t, true)
	if err := conn.Echo(); err != nil {
		t.Errorf("established connection after dockerd came back: %v", err)
	}
	c2 := run(t, "dr2", "-p", "8101:80")
	servers(t, c2, "dr2", 80)
	reachTCP(t, dk.topo.Ext, "192.0.2.1:8101", "dr2")
}

// connected starts container name publishing hostPort:80 with a server
// there, and returns a connection the external host opened to it (closed
// when the test ends).
func connected(t *testing.T, name string, hostPort int) *nstest.TCPConn {
	t.Helper()
	c := run(t, name, "-p", fmt.Sprintf("%d:80", hostPort))
	servers(t, c, name, 80)
	conn, r := nstest.ConnectTCP(dk.topo.Ext, hostAt(nstest.NodeAddr, hostPort), nstest.DialOptions{Timeout: reachTimeout})
	if !r.OK() {
		t.Fatalf("connection to %s before: %v", name, r.Err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// hostPortOf returns the host port dockerd chose for a container port
// (-P, -p 0:PORT).
func hostPortOf(t *testing.T, name, port string) string {
	t.Helper()
	out := dk.d.MustDocker(t, "port", name, port)
	_, hp, ok := strings.Cut(strings.Fields(out)[0], ":")
	if !ok {
		t.Fatalf("docker port %s %s: %q", name, port, out)
	}
	return hp
}

func waitDocker(t *testing.T, connected bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		st, err := dk.api.Status(dk.ctx)
		ds, _ := st["docker"].(map[string]any)
		if err == nil && ds["connected"] == connected {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("status.docker.connected did not become %v: %v %v", connected, ds, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// D13 (B21): the agent restarted, or killed with SIGKILL, during traffic:
// flows go on, and a container started while it was down is picked up.
func dockerAgentRestartAndKill(t *testing.T) {
	conn := connected(t, "ar1", 8102)
	// Removed while the agent is down: the agent must still start, and
	// drop them (their port is free for the next container).
	dk.d.MustDocker(t, "network", "create", "--subnet", "172.31.14.0/24", "argone")
	t.Cleanup(func() { dk.d.Docker("network", "rm", "argone") })
	run(t, "ar-gone", "--network", "argone", "-p", "8103:80")
	for _, how := range []string{"restart", "kill -9"} {
		var err error
		if how == "restart" {
			err = dk.agent.Stop()
		} else {
			err = dk.agent.Kill()
			dk.d.MustDocker(t, "rm", "-f", "ar-gone")
			dk.d.MustDocker(t, "network", "rm", "argone")
		}
		if err != nil {
			t.Errorf("%s: %v", how, err)
		}
		if err := conn.Echo(); err != nil {
			t.Errorf("established connection with the agent down (%s): %v", how, err)
		}
		name := "ar-" + strings.ReplaceAll(how, " ", "")
		dk.d.MustDocker(t, "run", "-d", "--name", name, "-p", "0:80", nstest.Image, "sleep", "3600")
		t.Cleanup(func() { dk.d.Docker("rm", "-f", name) })
		if err := dk.agent.Start(); err != nil {
			t.Fatalf("start the agent after %s: %v", how, err)
		}
		waitEndpoints(t, name, 1)
		ns := dk.d.ContainerNS(t, name)
		servers(t, ns, name, 80)
		reachTCP(t, dk.topo.Ext, "192.0.2.1:"+hostPortOf(t, name, "80/tcp"), name)
		if err := conn.Echo(); err != nil {
			t.Errorf("established connection after the agent's %s: %v", how, err)
		}
	}
	reachTCP(t, dk.topo.Ext, "192.0.2.1:8102", "ar1")
	waitEndpoints(t, "ar-gone", 0)
	if n, err := dk.api.Network(dk.ctx, "argone"); err == nil {
		t.Errorf("network argone, removed while the agent was down, is still there: %+v", n)
	}
	again := run(t, "ar-again", "-p", "8103:80")
	servers(t, again, "ar-again", 80)
	reachTCP(t, dk.topo.Ext, "192.0.2.1:8103", "ar-again")
}

// D14: 50 containers started and removed in a loop leave nothing behind in
// the agent's state, and the agent follows the engine throughout.
func dockerChurn(t *testing.T) {
	// What the agent holds of the churn containers: endpoints by their
	// container's name, mappings by the short container ID that starts
	// their ID. (Counting everything would count other rows' containers,
	// whose removal may still be on its way.)
	ids := map[string]bool{}
	left := func() (eps, ports []string) {
		all, err := dk.api.Endpoints(dk.ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range all {
			if strings.HasPrefix(e.Name, "churn") {
				eps = append(eps, e.ID)
			}
		}
		pms, err := dk.api.Ports(dk.ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pms {
			if cid, _, _ := strings.Cut(p.ID, "."); ids[cid] {
				ports = append(ports, p.ID)
			}
		}
		return eps, ports
	}
	for i := range 50 {
		name := fmt.Sprintf("churn%d", i)
		id := dk.d.MustDocker(t, "run", "-d", "--name", name, "-p", fmt.Sprintf("%d:80", 9000+i), nstest.Image, "sleep", "3600")
		ids[id[:12]] = true
		if i%10 == 9 { // and some removed while others start
			dk.d.MustDocker(t, "rm", "-f", fmt.Sprintf("churn%d", i-5))
		}
	}
	waitEndpoints(t, "churn49", 1)
	dk.d.MustDocker(t, "rm", "-f", "churn0") // a control that is still served:
	c1 := dk.d.ContainerNS(t, "churn1")
	servers(t, c1, "churn1", 80)
	reachTCP(t, dk.topo.Ext, "192.0.2.1:9001", "churn1")
	if running := dk.d.MustDocker(t, "ps", "-aq", "--filter", "name=churn"); running != "" {
		dk.d.MustDocker(t, append([]string{"rm", "-f"}, strings.Fields(running)...)...)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		eps, ports := left()
		if len(eps) == 0 && len(ports) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after removing every churn container the agent still has endpoints %v and mappings %v", eps, ports)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The mapping went with its container: the node's own listener on that
	// port now answers, where a stale translation would send it on.
	nstest.ListenTCP(t, dk.topo.Node, "node", "[::]:9001")
	reachTCP(t, dk.topo.Ext, "192.0.2.1:9001", "node")
}

// D15 (B1, B6, B15 over IPv6): a --ipv6 network: masquerade out, published
// ports in at the node's IPv6 address with the client's address kept, and
// icc=false holding for IPv6 too.
func dockerIPv6(t *testing.T) {
	dk.d.MustDocker(t, "network", "create", "--ipv6", "--subnet", "172.31.15.0/24", "--subnet", "2001:db8:31::/64",
		"-o", "com.docker.network.bridge.enable_icc=false", "v6net")
	t.Cleanup(func() { dk.d.Docker("network", "rm", "v6net") })
	a := run(t, "v6a", "--network", "v6net", "-p", "8104:80")
	b := run(t, "v6b", "--network", "v6net")
	if eps := endpointsOf(t, "v6a"); len(eps) != 1 || eps[0].IP6 == "" {
		t.Fatalf("v6a's endpoint has no IPv6 address: %+v", eps)
	}
	aIP6 := dk.d.MustDocker(t, "inspect", "-f", "{{(index .NetworkSettings.Networks \"v6net\").GlobalIPv6Address}}", "v6a")
	a80, _ := servers(t, a, "v6a", 80)
	servers(t, dk.topo.Ext, "ext", 7006)

	r := reachTCP(t, dk.topo.Ext, hostAt(nstest.NodeAddr6, 8104), "v6a")
	seenAs(t, "published port over IPv6", r.Seen, nstest.ExtAddr6)
	// icc=false over IPv6, with the outside as b's control.
	blockedTCP(t, b, hostAt(netip.MustParseAddr(aIP6), 80), a80)
	r = reachTCP(t, b, hostAt(nstest.ExtAddr6, 7006), "ext")
	seenAs(t, "tcp out of an IPv6 network", r.Seen, nstest.NodeAddr6)
	u := reachUDP(t, b, hostAt(nstest.ExtAddr6, 7006), "ext")
	seenAs(t, "udp out of an IPv6 network", u.Seen, nstest.NodeAddr6)
}

// D16: a --internal network: its containers reach each other and nothing
// beyond the bridge, and what they publish is not reachable.
func dockerInternal(t *testing.T) {
	dk.d.MustDocker(t, "network", "create", "--internal", "--subnet", "172.31.16.0/24", "sealed")
	t.Cleanup(func() { dk.d.Docker("network", "rm", "sealed") })
	i1 := run(t, "in1", "--network", "sealed")
	i2 := run(t, "in2", "--network", "sealed", "-p", "8105:80")
	out := run(t, "in-control")
	i2srv, _ := servers(t, i2, "in2", 80)
	ext, _ := servers(t, dk.topo.Ext, "ext", 7010)
	reachTCP(t, i1, dockerIP(t, "in2", "sealed")+":80", "in2")
	reachTCP(t, out, "192.0.2.2:7010", "ext") // control: the outside answers others
	blockedTCP(t, i1, "192.0.2.2:7010", ext)
	o80, _ := servers(t, out, "in-control", 80)
	blockedTCP(t, i1, dockerIP(t, "in-control", "bridge")+":80", o80)
	nstest.ListenTCP(t, dk.topo.Node, "node", "192.0.2.1:8105")
	nodeAnswersTCP(t, dk.topo.Ext, "192.0.2.1:8105", i2srv)
}
