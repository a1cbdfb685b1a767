package agent

import (
	"bufio"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/dataplane/api"
	"github.com/portcullis/portcullis/dataplane/model"
	"github.com/portcullis/portcullis/internal/nstest"
)

// The capabilities the unit leaves the agent are enough for both backends:
// started with exactly those, it plugs a container and forwards a published
// port. Without CAP_SYS_ADMIN (the control) it cannot even start: it
// enters network namespaces to set their sysctls. The set does limit it.
func TestUnitCapabilities(t *testing.T) {
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("no setpriv (util-linux) to run the agent with a bounding set")
	}
	caps := unitCapabilities(t)
	t.Logf("CapabilityBoundingSet=%s", strings.Join(caps, " "))
	for _, backend := range []string{"ebpf", "nftables"} {
		t.Run(backend, func(t *testing.T) {
			topo := nstest.NewTopology(t, nstest.Options{})
			ag := topo.StartAgent(nstest.AgentOptions{Backend: backend, Binary: withCaps(t, setpriv, caps)})
			c1 := plugContainer(t, topo, ag, "c1", "172.17.0.2")
			if err := c1.WaitInterface("eth0", netip.MustParseAddr("172.17.0.2"), 5*time.Second); err != nil {
				t.Fatal(err)
			}
			nstest.ListenTCP(t, c1, "c1", "[::]:80")
			if _, err := api.NewClient(ag.Socket).PutPort(context.Background(), model.PortMapping{ID: "web", Endpoint: "c1", Proto: "tcp", HostPort: 8080, Port: 80}); err != nil {
				t.Fatal(err)
			}
			if r := nstest.DialTCP(topo.Ext, "192.0.2.1:8080", nstest.DialOptions{Timeout: 3 * time.Second}); !r.OK() || r.Server != "c1" {
				t.Errorf("published port with the unit's capabilities: %v", r)
			}
		})
	}
	t.Run("without CAP_SYS_ADMIN", func(t *testing.T) {
		var fewer []string
		for _, c := range caps {
			if c != "CAP_SYS_ADMIN" {
				fewer = append(fewer, c)
			}
		}
		topo := nstest.NewTopology(t, nstest.Options{})
		dir := t.TempDir()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, "ip", "netns", "exec", topo.Node.Name, withCaps(t, setpriv, fewer),
			"--backend", "nftables", "--socket", filepath.Join(dir, "pc.sock"), "--state-dir", filepath.Join(dir, "state")).CombinedOutput()
		if err == nil || ctx.Err() != nil || !strings.Contains(string(out), "operation not permitted") {
			t.Errorf("the agent without CAP_SYS_ADMIN: %v (%v)\n%s", err, ctx.Err(), out)
		}
	})
}

// unitCapabilities reads CapabilityBoundingSet= from the shipped unit.
func unitCapabilities(t *testing.T) []string {
	f, err := os.Open("../../dist/portcullisd.service")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "CapabilityBoundingSet="); ok {
			return strings.Fields(v)
		}
	}
	t.Fatal("dist/portcullisd.service sets no CapabilityBoundingSet")
	return nil
}

// withCaps is a portcullisd that runs with only caps in its bounding set,
// as systemd runs it: as root, its permitted and effective sets are those.
func withCaps(t *testing.T, setpriv string, caps []string) string {
	bin, err := nstest.BuildAgent()
	if err != nil {
		t.Fatal(err)
	}
	set := "-all"
	for _, c := range caps {
		set += ",+" + strings.ToLower(strings.TrimPrefix(c, "CAP_"))
	}
	path := filepath.Join(t.TempDir(), "portcullisd")
	script := fmt.Sprintf("#!/bin/sh\nexec %s --bounding-set %s -- %s \"$@\"\n", setpriv, set, bin)
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// plugContainer adds network pc0 (once) and an endpoint in a new container.
func plugContainer(t *testing.T, topo *nstest.Topology, ag *nstest.Agent, id, ip string) *nstest.NS {
	c := api.NewClient(ag.Socket)
	ctx := context.Background()
	if _, err := c.PutNetwork(ctx, model.Network{Name: "pc0", Bridge: "pc0", Subnet: "172.17.0.0/16"}); err != nil {
		t.Fatal(err)
	}
	ns := topo.AddContainer(id)
	if _, err := c.PutEndpoint(ctx, model.Endpoint{ID: id, Network: "pc0", IP: ip, Netns: ns.Path}); err != nil {
		t.Fatal(err)
	}
	return ns
}

// systemd accepts the shipped unit: systemd-analyze verify parses it and
// checks its settings and the binary, and starts nothing.
func TestUnitVerifies(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("no systemd-analyze")
	}
	unit, err := os.ReadFile("../../dist/portcullisd.service")
	if err != nil {
		t.Fatal(err)
	}
	bin, err := nstest.BuildAgent()
	if err != nil {
		t.Fatal(err)
	}
	// The unit names the installed binary; verify checks it exists.
	path := filepath.Join(t.TempDir(), "portcullisd.service")
	text := strings.ReplaceAll(string(unit), "/usr/local/bin/portcullisd", bin)
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(analyze, "verify", path).CombinedOutput(); err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	// The control: a unit with a misspelt setting does not pass.
	bad := strings.Replace(text, "\nRuntimeDirectoryPreserve=yes\n", "\nRuntimeDirectoryPreserve=sometimes\n", 1)
	if err := os.WriteFile(path, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, _ := exec.Command(analyze, "verify", path).CombinedOutput(); !strings.Contains(string(out), "sometimes") {
		t.Errorf("systemd-analyze verify took a bad value:\n%s", out)
	}
}
