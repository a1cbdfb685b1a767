// Package demo replays the classic walkthrough of Docker's default bridge
// networking against Portcullis, in a sandbox of network namespaces that it
// creates and removes (also when interrupted).
package demo

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/portcullis/portcullis/dataplane/api"
	"github.com/portcullis/portcullis/dataplane/model"
	"github.com/portcullis/portcullis/internal/nstest"
)

// Options select the agent binary and backend.
type Options struct {
	Binary  string // portcullisd; empty: build it
	Backend string // auto, ebpf or nftables
	Out     io.Writer
}

type run struct {
	out     io.Writer
	ctx     context.Context
	c       *api.Client
	topo    *nstest.Topology
	tb      nstest.TB
	pass    int
	fail    int
	stepNum int
}

// Run replays the walkthrough and returns the number of failed checks.
func Run(ctx context.Context, tb nstest.TB, opts Options) int {
	r := &run{out: opts.Out, ctx: ctx, tb: tb}
	r.say("building the sandbox: node (bridge pc0 172.17.0.0/16, uplink 192.0.2.1), external host 192.0.2.2, containers busybox1..3")
	r.topo = nstest.NewTopology(tb, nstest.Options{})
	agent := r.topo.StartAgent(nstest.AgentOptions{Backend: opts.Backend, Binary: opts.Binary})
	r.c = api.NewClient(agent.Socket)
	st, err := r.c.Status(ctx)
	if err != nil {
		tb.Fatalf("agent status: %v", err)
	}
	r.say("agent running in namespace %s with backend %v (%v)", r.topo.Node.Name, st["backend"], st["backend_reason"])

	r.setup()
	r.egress()
	r.published()
	r.links()
	r.iccOff()
	r.say("")
	r.say("%d checks passed, %d failed", r.pass, r.fail)
	return r.fail
}

func (r *run) say(format string, args ...any) { fmt.Fprintf(r.out, format+"\n", args...) }

func (r *run) step(title string) {
	r.stepNum++
	r.say("\n== step %d: %s", r.stepNum, title)
}

func (r *run) check(what string, ok bool, detail string) {
	verdict := "PASS"
	if ok {
		r.pass++
	} else {
		r.fail++
		verdict = "FAIL"
	}
	r.say("  [%s] %s\n         %s", verdict, what, detail)
}

func (r *run) must(err error) {
	if err != nil {
		r.tb.Fatalf("demo: %v", err)
	}
}

func (r *run) setup() {
	r.step("docker network: the default bridge, and three containers")
	_, err := r.c.PutNetwork(r.ctx, model.Network{Name: "bridge", Bridge: "pc0", Subnet: "172.17.0.0/16"})
	r.must(err)
	eps := []model.Endpoint{
		{ID: "busybox1", IP: "172.17.0.2", Name: "busybox1", Hostname: "b1host",
			Exposed: []model.PortProto{{Port: 80, Proto: "tcp"}}, Env: []string{"GREETING=hello", "PATH=/bin"}},
		{ID: "busybox2", IP: "172.17.0.3", Name: "busybox2"},
		{ID: "busybox3", IP: "172.17.0.4", Name: "busybox3"},
	}
	for _, e := range eps {
		ns := r.topo.AddContainer(e.ID)
		e.Network, e.Netns = "bridge", ns.Path
		got, err := r.c.PutEndpoint(r.ctx, e)
		r.must(err)
		r.say("  %s: %s mac %s, host veth %s", e.ID, got.IP, got.MAC, got.HostVeth)
	}
	for _, port := range []string{":80", ":81"} {
		nstest.ListenTCP(r.tb, r.topo.Container("busybox1"), "busybox1"+port, port)
	}
	res := nstest.DialTCP(r.topo.Container("busybox3"), "172.17.0.2:81", nstest.DialOptions{})
	r.check("icc=true (the default): busybox3 reaches busybox1 on any port, here 81", res.OK(), res.String())
}

func (r *run) egress() {
	r.step("busybox1 reaches the external host (masquerade)")
	nstest.ListenTCP(r.tb, r.topo.Ext, "external", ":9000")
	res := nstest.DialTCP(r.topo.Container("busybox1"), "192.0.2.2:9000", nstest.DialOptions{})
	r.check("external host sees the node's address 192.0.2.1, not 172.17.0.2",
		res.OK() && res.Seen.Addr() == nstest.NodeAddr, res.String())
}

func (r *run) published() {
	r.step("docker run -p 8080:80 busybox1: the external host reaches it on the node")
	_, err := r.c.PutPort(r.ctx, model.PortMapping{ID: "busybox1-8080", Endpoint: "busybox1", Proto: "tcp", HostPort: 8080, Port: 80})
	r.must(err)
	res := nstest.DialTCP(r.topo.Ext, "192.0.2.1:8080", nstest.DialOptions{})
	r.check("192.0.2.1:8080 answers from busybox1:80, which sees the client's own address 192.0.2.2",
		res.OK() && res.Server == "busybox1:80" && res.Seen.Addr() == nstest.ExtAddr, res.String())
	res = nstest.DialTCP(r.topo.Ext, "192.0.2.1:8081", nstest.DialOptions{Timeout: time.Second})
	r.check("an unpublished port (8081) does not answer", !res.OK(), res.String())
}

func (r *run) links() {
	r.step("docker run --link busybox1:web busybox2")
	l, err := r.c.PutLink(r.ctx, model.Link{Parent: "busybox2", Alias: "web", Child: "busybox1"})
	r.must(err)
	r.say("  environment of busybox2:")
	for _, e := range l.Env {
		r.say("    %s", e)
	}
	r.say("  /etc/hosts line: %s", l.Hosts)
	r.check("the link's variables name busybox1's address and exposed port",
		contains(l.Env, "WEB_PORT=tcp://172.17.0.2:80") && strings.HasPrefix(l.Hosts, "172.17.0.2 web"),
		fmt.Sprintf("%d variables, hosts %q", len(l.Env), l.Hosts))
}

func (r *run) iccOff() {
	r.step("icc=false: containers are isolated except along links, on exposed ports")
	icc := false
	_, err := r.c.PutNetwork(r.ctx, model.Network{Name: "bridge", Bridge: "pc0", Subnet: "172.17.0.0/16", ICC: &icc})
	r.must(err)
	b2, b3 := r.topo.Container("busybox2"), r.topo.Container("busybox3")
	quick := nstest.DialOptions{Timeout: time.Second}
	res := nstest.DialTCP(b2, "172.17.0.2:80", quick)
	r.check("busybox2 (linked) reaches busybox1 on its exposed port 80", res.OK() && res.Server == "busybox1:80", res.String())
	res = nstest.DialTCP(b2, "172.17.0.2:81", quick)
	r.check("busybox2 (linked) does not reach busybox1 on port 81, which is not exposed", !res.OK(), res.String())
	res = nstest.DialTCP(b3, "172.17.0.2:80", quick)
	r.check("busybox3 (not linked) does not reach busybox1 on port 80", !res.OK(), res.String())
	res = nstest.DialTCP(b3, "172.17.0.2:81", quick)
	r.check("busybox3 (not linked) does not reach busybox1 on port 81", !res.OK(), res.String())
	res = nstest.DialTCP(r.topo.Ext, "192.0.2.1:8080", quick)
	r.check("the published port still answers the external host", res.OK() && res.Server == "busybox1:80", res.String())
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
