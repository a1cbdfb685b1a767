package conformance

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/dataplane/model"
	"github.com/portcullis/portcullis/internal/nstest"
)

// B20: a change that fails leaves the previous state fully in force: the
// old mapping still routes, and GET still shows the old objects.
func testAtomicChanges(t *testing.T) {
	e := newEnv(t)
	e.network(pc0(false))
	c1 := e.container("c1", "pc0", 2)
	servers(t, c1.NS, "c1", 80)
	e.publish(tcpPort("p1", "c1", 8080, 80))
	reachTCP(t, e.ext(), "192.0.2.1:8080", "c1")

	refused := []struct {
		what string
		do   func() error
		want int // HTTP status, 0: any refusal
	}{
		{"new endpoint on a missing host interface", func() error {
			_, err := e.api.PutEndpoint(e.ctx, model.Endpoint{ID: "c9", Network: "pc0", IP: "172.17.0.9", HostIfname: "nope0"})
			return err
		}, 0},
		{"replacing c1 with a missing host interface", func() error {
			_, err := e.api.PutEndpoint(e.ctx, model.Endpoint{ID: "c1", Network: "pc0", IP: c1.IP.String(), HostIfname: "nope0"})
			return err
		}, 0},
		{"a mapping that collides with p1", func() error {
			_, err := e.api.PutPort(e.ctx, tcpPort("p2", "c1", 8080, 81))
			return err
		}, http.StatusConflict},
		{"replacing p1 with port 70000", func() error {
			_, err := e.api.PutPort(e.ctx, tcpPort("p1", "c1", 8080, 70000))
			return err
		}, http.StatusBadRequest},
	}
	for _, r := range refused {
		err := r.do()
		switch {
		case err == nil:
			t.Errorf("%s: accepted, want refused", r.what)
		case r.want != 0 && apiStatus(err) != r.want:
			t.Errorf("%s: refused with %d (%v), want %d", r.what, apiStatus(err), err, r.want)
		}
		reachTCP(t, e.ext(), "192.0.2.1:8080", "c1")
	}

	var ep model.Endpoint
	getJSON(t, e, "/v1/endpoints/c1", http.StatusOK, &ep)
	if ep.Netns != c1.NS.Path || ep.HostIfname != "" || ep.IP != c1.IP.String() {
		t.Errorf("GET endpoint c1 after refused changes: %+v, want the original (netns %s)", ep, c1.NS.Path)
	}
	var p model.PortMapping
	getJSON(t, e, "/v1/ports/p1", http.StatusOK, &p)
	if p.Port != 80 || p.HostPort != 8080 {
		t.Errorf("GET port p1 after refused changes: %+v, want 8080 -> 80", p)
	}
	getJSON(t, e, "/v1/endpoints/c9", http.StatusNotFound, nil)
	getJSON(t, e, "/v1/ports/p2", http.StatusNotFound, nil)
	if err := c1.NS.WaitInterface("eth0", c1.IP, probeTimeout); err != nil {
		t.Errorf("c1 lost its interface after refused changes: %v", err)
	}
}

// getJSON checks the status of GET path and decodes the body into out.
func getJSON(t *testing.T, e *env, path string, want int, out any) {
	t.Helper()
	st, body, err := e.agent.Get(path)
	if err != nil {
		t.Errorf("GET %s: %v", path, err)
		return
	}
	if st != want {
		t.Errorf("GET %s: %d %s, want %d", path, st, body, want)
		return
	}
	if out != nil {
		if err := json.Unmarshal(body, out); err != nil {
			t.Errorf("GET %s: decode %s: %v", path, body, err)
		}
	}
}

// B21: restarting the agent drops neither established flows (inbound
// through a published port, outbound through SNAT) nor published ports,
// also while it is down.
func testRestart(t *testing.T) {
	e := newEnv(t)
	e.network(pc0(false))
	c1 := e.container("c1", "pc0", 2)
	servers(t, c1.NS, "c1", 80)
	servers(t, e.ext(), "ext", 7000)
	e.publish(tcpPort("tcp", "c1", 8080, 80))
	e.publish(udpPort("udp", "c1", 8080, 80))

	in, r := nstest.ConnectTCP(e.ext(), "192.0.2.1:8080", nstest.DialOptions{Timeout: reachTimeout})
	if !r.OK() {
		t.Fatalf("inbound connection before restart: %v", r.Err)
	}
	defer in.Close()
	out, r := nstest.ConnectTCP(c1.NS, "192.0.2.2:7000", nstest.DialOptions{Timeout: reachTimeout})
	if !r.OK() {
		t.Fatalf("outbound connection before restart: %v", r.Err)
	}
	defer out.Close()
	udp := udpClient(t, e.ext(), "192.0.2.1:8080")
	if r := udp.Exchange("before"); !r.OK() {
		t.Fatalf("udp flow before restart: %v", r.Err)
	}

	flows := func(when string) {
		t.Helper()
		if err := in.Echo(); err != nil {
			t.Errorf("inbound connection %s: %v", when, err)
		}
		if err := out.Echo(); err != nil {
			t.Errorf("outbound connection %s: %v", when, err)
		}
		if r := udp.Exchange(when); !r.OK() {
			t.Errorf("udp flow %s: %v", when, r.Err)
		}
	}
	if err := e.agent.Stop(); err != nil {
		t.Errorf("stop agent: %v", err)
	}
	flows("while the agent is down")
	if err := e.agent.Start(); err != nil {
		t.Fatalf("start agent again: %v", err)
	}
	flows("after the restart")
	reachTCP(t, e.ext(), "192.0.2.1:8080", "c1")
	reachUDP(t, e.ext(), "192.0.2.1:8080", "c1")
	reachTCP(t, c1.NS, "192.0.2.2:7000", "ext")
}

// B21: a container whose namespace went while the agent was down (a
// runtime that stopped it and never said so) does not keep the agent from
// starting: the agent drops it with its mappings, says so in status, and
// its host port is free for the next container. The others keep working.
func testContainerGoneWhileDown(t *testing.T) {
	e := newEnvArgs(t, "--resync-period", resyncPeriod.String())
	e.network(pc0(false))
	c1 := e.container("c1", "pc0", 2)
	c2 := e.container("c2", "pc0", 3)
	servers(t, c2.NS, "c2", 80)
	e.publish(tcpPort("web1", "c1", 8080, 80))
	e.publish(tcpPort("web2", "c2", 8081, 80))
	reachTCP(t, e.ext(), "192.0.2.1:8081", "c2")

	if err := e.agent.Stop(); err != nil {
		t.Fatalf("stop agent: %v", err)
	}
	c1.NS.Delete()
	if err := e.agent.Start(); err != nil {
		t.Fatalf("the agent refuses to start with a container gone: %v", err)
	}
	if _, err := e.api.Endpoint(e.ctx, "c1"); apiStatus(err) != http.StatusNotFound {
		t.Errorf("GET endpoint c1 after its namespace went: %v, want 404", err)
	}
	if _, err := e.api.Port(e.ctx, "web1"); apiStatus(err) != http.StatusNotFound {
		t.Errorf("GET port web1 of the gone container: %v, want 404", err)
	}
	st, err := e.api.Status(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	rs, _ := st["reconciler"].(map[string]any)
	if gone := fmt.Sprint(rs["vanished"]); !strings.Contains(gone, "endpoint c1") {
		t.Errorf("status reconciler.vanished = %s, want endpoint c1", gone)
	}
	reachTCP(t, e.ext(), "192.0.2.1:8081", "c2")
	c3 := e.container("c3", "pc0", 4)
	servers(t, c3.NS, "c3", 80)
	e.publish(tcpPort("web3", "c3", 8080, 80))
	reachTCP(t, e.ext(), "192.0.2.1:8080", "c3")

	// Gone while the agent runs, and nobody says so: the next resync
	// finds it.
	c3.NS.Delete()
	deadline := time.Now().Add(3 * resyncPeriod)
	for {
		if _, err := e.api.Port(e.ctx, "web3"); apiStatus(err) == http.StatusNotFound {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("port web3 of a container whose namespace went is still there after %v", 3*resyncPeriod)
		}
		time.Sleep(100 * time.Millisecond)
	}
	reachTCP(t, e.ext(), "192.0.2.1:8081", "c2")
}

// B22: uninstall leaves nothing: no nft table, no bridge or veth the agent
// made, no pinned object, no tc or tcx program.
func testUninstall(t *testing.T) {
	e := newEnv(t)
	n := pc0(false)
	n.ICC = boolp(false)
	e.network(n)
	c1 := e.container("c1", "pc0", 2, func(ep *model.Endpoint) {
		ep.Exposed = []model.PortProto{{Port: 80, Proto: "tcp"}}
	})
	e.container("c2", "pc0", 3)
	servers(t, c1.NS, "c1", 80)
	e.publish(tcpPort("tcp", "c1", 8080, 80))
	e.link(t, "c2", "web", "c1")
	reachTCP(t, e.ext(), "192.0.2.1:8080", "c1")

	before, err := nstest.Inspect(e.node(), e.agent.BPFFSMount)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("footprint before uninstall: %+v", before)
	if !slices.Contains(before.Interfaces, "pc0") {
		t.Fatalf("bridge pc0 missing before uninstall: %v", before.Interfaces)
	}
	if err := e.agent.Stop(); err != nil {
		t.Errorf("stop agent: %v", err)
	}
	if _, err := e.agent.Uninstall(); err != nil {
		t.Fatalf("portcullisd uninstall: %v", err)
	}
	after, err := nstest.Inspect(e.node(), e.agent.BPFFSMount)
	if err != nil {
		t.Fatal(err)
	}
	// The node namespace started with no table and only lo and up0.
	if len(after.NftTables) > 0 {
		t.Errorf("nft tables left: %v", after.NftTables)
	}
	var extra []string
	for _, i := range after.Interfaces {
		if i != "lo" && i != nstest.UplinkName {
			extra = append(extra, i)
		}
	}
	if len(extra) > 0 {
		t.Errorf("interfaces left: %s", strings.Join(extra, ", "))
	}
	if len(after.Pinned) > 0 {
		t.Errorf("pinned objects left: %v", after.Pinned)
	}
	if len(after.TCFilters) > 0 {
		t.Errorf("tc filters left: %v", after.TCFilters)
	}
	if len(after.TCX) > 0 {
		t.Errorf("tcx programs left: %v", after.TCX)
	}
	// Uninstall is idempotent.
	if _, err := e.agent.Uninstall(); err != nil {
		t.Errorf("second portcullisd uninstall: %v", err)
	}
}

// B13 with a busy conntrack table: the flows of a removed mapping stop
// when the API answers, not when a dump of the node's conntrack table
// (tens of thousands of unrelated entries here) reaches their entries.
func testRemoveMappingBusyConntrack(t *testing.T) {
	e := newEnv(t)
	e.network(pc0(false))
	c1 := e.container("c1", "pc0", 2)
	srv := nstest.ListenUDP(t, c1.NS, "c1", "[::]:90")
	e.publish(udpPort("udp", "c1", 9090, 90))
	fillConntrack(t, e, 30000)

	client := udpClient(t, e.ext(), "192.0.2.1:9090", fromPort(5556))
	if r := client.Exchange("before"); !r.OK() || r.Server != "c1" {
		t.Fatalf("udp through the mapping before removal: %v", r)
	}
	if err := e.api.DeletePort(e.ctx, "udp"); err != nil {
		t.Fatalf("DELETE port udp: %v", err)
	}
	client.Timeout = probeTimeout
	before := len(srv.Received())
	for i := range 3 {
		if r := client.Exchange("gap"); r.OK() {
			t.Errorf("udp from the same client %d right after DELETE: still answered by %s", i, r.Server)
		}
	}
	for _, d := range srv.Received()[before:] {
		t.Errorf("udp from the same client right after DELETE: c1 received %q from %s", d.Payload, d.From)
	}

	// Control: the same client gets through again once the mapping is back
	// (after the clean-up of its untranslated entry, off the API path: its
	// first tries may be refused by the node).
	e.publish(udpPort("udp", "c1", 9090, 90))
	client.Timeout = reachTimeout
	var last nstest.UDPResult
	for deadline := time.Now().Add(2 * reachTimeout); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if last = client.Exchange("after"); last.OK() {
			break
		}
	}
	if !last.OK() || last.Server != "c1" {
		t.Errorf("udp from the same client after the mapping came back: %v", last)
	}
}

// fillConntrack gives the node's conntrack table n unrelated entries: UDP
// from the external host to n closed ports of the node (each datagram is
// a flow; the node's port-unreachable answers do not end it).
func fillConntrack(t *testing.T, e *env, n int) {
	t.Helper()
	err := e.ext().Do(func() error {
		c, err := net.ListenUDP("udp4", nil)
		if err != nil {
			return err
		}
		defer c.Close()
		for port := 20000; port < 20000+n; port++ {
			dst := net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr("192.0.2.1"), uint16(port)))
			if _, err := c.WriteToUDP([]byte("fill"), dst); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("fill the node's conntrack table: %v", err)
	}
	got, err := e.node().Sysctl("net.netfilter.nf_conntrack_count")
	if err != nil {
		t.Fatalf("read the node's conntrack count: %v", err)
	}
	if c, _ := strconv.Atoi(got); c < n*9/10 {
		t.Fatalf("the node's conntrack table holds %s entries after sending %d flows, want about as many", got, n)
	}
}
