package cni_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/nstest"
)

// chainedChain is Podman's own list (bridge + portmap + firewall +
// tuning, what `podman network create` writes) with portmap and firewall
// replaced by portcullis-cni in chained mode, and the bridge's ipMasq off
// (the agent masquerades).
var chainedChain = chain{name: "bridge-portcullis", conf: func(e *podmanEnv, net, subnet string) map[string]any {
	m := refChain.conf(e, net, subnet)
	ref := m["plugins"].([]any)
	br := ref[0].(map[string]any)
	br["bridge"], br["ipMasq"] = "cni-pct1", false
	pc := map[string]any{"type": "portcullis-cni", "socket": e.agent.Socket,
		"capabilities": map[string]bool{"portMappings": true}}
	m["plugins"] = []any{br, pc, ref[3]} // bridge, portcullis-cni, tuning
	return m
}}

// TestPodmanChained: `podman run -p` on Podman's bridge chain with
// portcullis-cni in place of portmap and firewall: the port answers from
// another host, the container reaches out as the node, and after
// `podman rm` the port is gone (nothing answers; another container's port
// still does) with nothing left in the agent, and the bridge keeps the
// bridge plugin's address.
func TestPodmanChained(t *testing.T) {
	e := newPodmanEnv(t, *backend)
	net := e.network(chainedChain, "10.89.3.0/24")
	e.httpd("web", "--network", net, "-p", "8093:80")
	e.httpd("ctl", "--network", net, "-p", "8094:80")
	if err := e.fetch(8093); err != nil {
		t.Errorf("-p 8093:80 on bridge + portcullis-cni: %v", err)
	}
	_, ip := e.iface("web")
	e.checkAgent("web", ip.String(), "", 8093)
	if n, err := e.api.Network(context.Background(), net); err != nil || !n.External || n.Bridge != "cni-pct1" {
		t.Errorf("agent network %s: %+v (%v); want external on bridge cni-pct1", net, n, err)
	}
	bridgeAddrs := e.topo.Node.MustIP(t, "-4", "-o", "addr", "show", "dev", "cni-pct1")

	nstest.ListenTCP(t, e.topo.Ext, "ext", ":9093")
	dst := netip.AddrPortFrom(nstest.ExtAddr, 9093).String()
	if r := nstest.DialTCP(e.podman.ContainerNS(t, "web"), dst, nstest.DialOptions{Timeout: 3 * time.Second}); !r.OK() || r.Seen.Addr() != nstest.NodeAddr {
		t.Errorf("web -> %s: %v; want seen as the node %v (masqueraded by the agent)", dst, r, nstest.NodeAddr)
	}

	e.podman.Remove(t, "web")
	if err := e.noAnswer(8093); err != nil {
		t.Errorf("after podman rm web: %v", err)
	}
	if err := e.fetch(8094); err != nil {
		t.Errorf("control: ctl's -p 8094:80 after web went: %v", err)
	}
	ports, err := e.api.Ports(context.Background())
	if err != nil || len(ports) != 1 || ports[0].HostPort != 8094 {
		t.Errorf("port mappings after podman rm web: %+v (%v); want only ctl's 8094", ports, err)
	}
	if got := e.topo.Node.MustIP(t, "-4", "-o", "addr", "show", "dev", "cni-pct1"); got != bridgeAddrs {
		t.Errorf("bridge cni-pct1 addresses changed: %q, were %q", got, bridgeAddrs)
	}
}
