package demo

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/portcullis/portcullis/dataplane/api"
	"github.com/portcullis/portcullis/internal/nstest"
)

// RunDocker replays the walkthrough with a real Docker engine whose own
// iptables rules are off, and portcullisd --docker doing their job: plain
// docker commands, checked from the outside. It returns the number of
// failed checks.
func RunDocker(ctx context.Context, tb nstest.TB, opts Options) int {
	r := &run{out: opts.Out, ctx: ctx, tb: tb}
	r.say("building the sandbox: node (uplink 192.0.2.1) running dockerd with --iptables=false, external host 192.0.2.2")
	r.topo = nstest.NewTopology(tb, nstest.Options{})
	d := nstest.StartDockerd(tb, r.topo.Node)
	d.ImportImage(tb)
	agent := r.topo.StartAgent(nstest.AgentOptions{Backend: opts.Backend, Binary: opts.Binary,
		Args: []string{"--docker", d.Host, "--icc=false"}})
	r.c = api.NewClient(agent.Socket)
	r.say("portcullisd --docker %s --icc=false --backend %s in namespace %s", d.Host, opts.Backend, r.topo.Node.Name)
	docker := func(args ...string) string {
		shown := make([]string, len(args))
		for i, a := range args {
			shown[i] = a
			if strings.ContainsAny(a, " {}") {
				shown[i] = "'" + a + "'"
			}
		}
		r.say("  $ docker %s", strings.Join(shown, " "))
		out, err := d.Docker(args...)
		r.must(err)
		return out
	}

	r.step("docker run -d --name web -p 8080:80 busybox httpd")
	docker("run", "-d", "--name", "web", "-p", "8080:80", nstest.Image, "sh", "-c", "httpd -p 80 -h /www && exec sleep 3600")
	web := d.ContainerNS(tb, "web")
	webIP := docker("inspect", "-f", "{{.NetworkSettings.IPAddress}}", "web")
	r.waitEndpoint(true, "web")
	body, err := nstest.HTTPGet(r.topo.Ext, "192.0.2.1:8080", 2*time.Second)
	r.check("the external host gets web's page at 192.0.2.1:8080", err == nil && body == "busybox httpd", fmt.Sprintf("%q %v", body, err))

	r.step("docker run -d --name db --link web:web busybox")
	docker("run", "-d", "--name", "db", "--link", "web:web", nstest.Image, "sleep", "3600")
	db := d.ContainerNS(tb, "db")
	r.waitEndpoint(true, "db")
	env := docker("exec", "db", "env")
	r.check("db has the link's variables", strings.Contains(env, "WEB_PORT_80_TCP_ADDR="+webIP), "WEB_PORT_80_TCP_ADDR="+webIP)
	body, err = nstest.HTTPGet(db, webIP+":80", 2*time.Second)
	r.check("db reaches web on its exposed port 80 (icc=false, linked)", err == nil && body == "busybox httpd", fmt.Sprintf("%q %v", body, err))

	r.step("docker run -d --name other busybox: not linked")
	docker("run", "-d", "--name", "other", nstest.Image, "sleep", "3600")
	other := d.ContainerNS(tb, "other")
	r.waitEndpoint(true, "other")
	srv := nstest.ListenTCP(tb, web, "web:81", ":81")
	res := nstest.DialTCP(other, webIP+":80", nstest.DialOptions{Timeout: time.Second})
	r.check("other does not reach web:80 (dropped: the client times out)", isTimeout(res.Err), res.String())
	res = nstest.DialTCP(db, webIP+":81", nstest.DialOptions{Timeout: time.Second})
	r.check("db does not reach web:81, which is not exposed (web's listener saw nothing)",
		isTimeout(res.Err) && len(srv.Peers()) == 0, res.String())
	body, err = nstest.HTTPGet(other, "192.0.2.1:8080", 2*time.Second)
	r.check("other still reaches web's published port through the node", err == nil && body == "busybox httpd", fmt.Sprintf("%q %v", body, err))

	r.step("containers reach the outside, masqueraded")
	nstest.ListenTCP(tb, r.topo.Ext, "external", ":9000")
	res = nstest.DialTCP(db, "192.0.2.2:9000", nstest.DialOptions{})
	r.check("the external host sees the node's address 192.0.2.1", res.OK() && res.Seen.Addr() == nstest.NodeAddr, res.String())

	r.step("docker rm -f web: its port goes with it")
	docker("rm", "-f", "web")
	r.waitEndpoint(false, "web")
	_, err = nstest.HTTPGet(r.topo.Ext, "192.0.2.1:8080", 2*time.Second)
	r.check("192.0.2.1:8080 no longer leads to a container", err != nil, fmt.Sprint(err))
	r.say("")
	r.say("%d checks passed, %d failed", r.pass, r.fail)
	return r.fail
}

// waitEndpoint waits until the agent holds an endpoint for container name,
// or none when present is false.
func (r *run) waitEndpoint(present bool, name string) {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		eps, err := r.c.Endpoints(r.ctx)
		r.must(err)
		found := false
		for _, e := range eps {
			found = found || e.Name == name
		}
		if found == present {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	r.tb.Fatalf("demo: container %s: agent endpoint present=%v not reached in 10 s", name, present)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
