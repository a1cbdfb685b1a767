package cni_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/cni"
	"github.com/portcullis/portcullis/dataplane/model"
	"github.com/portcullis/portcullis/internal/nstest"
)

// Errors as a runtime sees them: the message through cnitool, and the CNI
// error code from the plugin's own answer (cnitool prints only the
// message), run the way libcni runs it.

// pluginConf is one portcullis-cni configuration of the tests, with
// host-local over the given range; extra fields override.
func (e *env) pluginConf(subnet string, extra map[string]any) map[string]any {
	p := map[string]any{
		"type": "portcullis-cni", "socket": e.agent.Socket,
		"network": "pcn", "bridge": "pcbr0", "subnet": subnet,
		"ipam": map[string]any{
			"type": "host-local", "dataDir": e.ipamDir,
			"ranges": [][]map[string]string{{{"subnet": cniSubnet}}},
		},
	}
	for k, v := range extra {
		p[k] = v
	}
	return p
}

// writeList writes a conflist of the one plugin configuration p.
func (e *env) writeList(version string, p map[string]any) {
	e.writeFile(e.netName()+".conflist", map[string]any{
		"cniVersion": version, "name": e.netName(), "plugins": []any{p}})
}

// cniError is the error a plugin prints on standard output.
type cniError struct {
	Code    uint   `json:"code"`
	Msg     string `json:"msg"`
	Details string `json:"details"`
}

// pluginError runs portcullis-cni VERB in the node namespace with the
// environment and standard input libcni gives it, and returns the error it
// answered (failing the test when it succeeded).
func (e *env) pluginError(verb, version string, p map[string]any, ctr *nstest.NS) cniError {
	e.t.Helper()
	conf := map[string]any{"cniVersion": version, "name": e.netName()}
	for k, v := range p {
		conf[k] = v
	}
	stdin, err := json.Marshal(conf)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", e.topo.Node.Name, filepath.Join(tools.binDir, "portcullis-cni"))
	cmd.Env = append(os.Environ(), "CNI_COMMAND="+strings.ToUpper(verb), "CNI_CONTAINERID="+containerID(ctr),
		"CNI_NETNS="+ctr.Path, "CNI_IFNAME=eth0",
		"CNI_PATH="+tools.binDir+string(os.PathListSeparator)+tools.pluginDir)
	cmd.Stdin = bytes.NewReader(stdin)
	out, err := cmd.Output()
	if err == nil {
		e.t.Fatalf("portcullis-cni %s succeeded: %s; want an error", verb, out)
	}
	var ce cniError
	if jerr := json.Unmarshal(out, &ce); jerr != nil {
		e.t.Fatalf("portcullis-cni %s: %v; output %q is not a CNI error: %v", verb, err, out, jerr)
	}
	return ce
}

// TestCnitoolBadSubnet: a subnet that is no CIDR fails ADD with code 7
// ("invalid network config") and a message naming the field and value, and
// creates nothing; the same configuration with a valid subnet works.
func TestCnitoolBadSubnet(t *testing.T) {
	e := newEnv(t)
	c := e.topo.AddContainer("bad")
	bad := e.pluginConf("198.51.100.0/33", nil)
	e.writeList("1.0.0", bad)
	_, err := e.cnitool("add", e.netName(), c, "")
	if err == nil || !strings.Contains(err.Error(), "subnet") || !strings.Contains(err.Error(), "198.51.100.0/33") {
		t.Errorf("ADD with subnet 198.51.100.0/33: %v; want an error naming the field subnet and the value", err)
	}
	if ce := e.pluginError("add", "1.0.0", bad, c); ce.Code != 7 {
		t.Errorf("ADD with subnet 198.51.100.0/33 answered code %d (%s); want 7, invalid network config", ce.Code, ce.Msg)
	}
	e.assertNoNetwork()
	e.assertNothingLeft(c)

	e.writeList("1.0.0", e.pluginConf(cniSubnet, nil))
	_, ip := e.addResult(e.mustCnitool("add", e.netName(), c, ""))
	if err := c.WaitInterface("eth0", ip, 5*time.Second); err != nil {
		t.Errorf("ADD with a valid subnet: %v", err)
	}
	e.mustCnitool("del", e.netName(), c, "")
}

// TestCnitoolOverlappingSubnet: a subnet overlapping another agent
// network fails ADD with code 7 and a message that names the field, the
// value and the network it overlaps, with that network's subnet.
func TestCnitoolOverlappingSubnet(t *testing.T) {
	e := newEnv(t)
	if _, err := e.api.PutNetwork(e.ctx, model.Network{Name: "other", Bridge: "pcother", Subnet: "198.51.0.0/16"}); err != nil {
		t.Fatalf("create network other: %v", err)
	}
	c := e.topo.AddContainer("ovl")
	conf := e.pluginConf(cniSubnet, nil)
	e.writeList("1.0.0", conf)
	_, err := e.cnitool("add", e.netName(), c, "")
	t.Logf("ADD answered: %v", err)
	for _, want := range []string{"subnet " + cniSubnet, `"other"`, "198.51.0.0/16"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ADD overlapping network other: %v; want the message to contain %s", err, want)
		}
	}
	if err != nil && strings.Contains(err.Error(), "invalid Prefix") {
		t.Errorf("ADD overlapping network other: %v; want no \"invalid Prefix\"", err)
	}
	if ce := e.pluginError("add", "1.0.0", conf, c); ce.Code != 7 {
		t.Errorf("ADD overlapping network other answered code %d (%s); want 7", ce.Code, ce.Msg)
	}
	e.assertNoNetwork()
	// Positive control: without the other network the same ADD works.
	if err := e.api.DeleteNetwork(e.ctx, "other"); err != nil {
		t.Fatal(err)
	}
	e.assertNothingLeft(c)
	e.mustCnitool("add", e.netName(), c, "")
	e.mustCnitool("del", e.netName(), c, "")
}

// TestCnitoolStatusUnreachable: STATUS with no agent on the socket says so
// once, with the socket path and what to do, and answers code 50 ("the
// plugin is not available"); with the agent there STATUS succeeds.
func TestCnitoolStatusUnreachable(t *testing.T) {
	e := newEnv(t)
	c := e.topo.AddContainer("st")
	e.writeList("1.1.0", e.pluginConf(cniSubnet, nil))
	e.mustCnitool("status", e.netName(), c, "")

	sock := filepath.Join(t.TempDir(), "absent.sock")
	conf := e.pluginConf(cniSubnet, map[string]any{"socket": sock})
	e.writeList("1.1.0", conf)
	_, err := e.cnitool("status", e.netName(), c, "")
	if err == nil {
		t.Fatal("STATUS without an agent succeeded")
	}
	t.Logf("STATUS answered: %v", err)
	if !strings.Contains(err.Error(), sock) || !strings.Contains(err.Error(), "start portcullisd") {
		t.Errorf("STATUS without an agent: %v; want the socket %s and what to do (start portcullisd)", err, sock)
	}
	// cnitool prints the error twice (with its usage): the plugin's own
	// answer is what must say it once.
	ce := e.pluginError("status", "1.1.0", conf, c)
	if ce.Code != 50 {
		t.Errorf("STATUS without an agent answered code %d (%s); want 50", ce.Code, ce.Msg)
	}
	if strings.Count(ce.Msg, "not reachable") != 1 || strings.Count(ce.Msg, sock) != 1 || strings.Contains(ce.Msg, "portcullisd: portcullisd") {
		t.Errorf("STATUS without an agent: %q; want \"not reachable\" and the socket said once, portcullisd not repeated", ce.Msg)
	}
}

// TestCnitoolFailedAddRemovesNetwork: an ADD that creates the agent
// network and then fails (the IPAM gateway is not the bridge's) leaves no
// network, bridge, endpoint, port mapping, veth or address behind; the
// same ADD with a consistent IPAM configuration works.
func TestCnitoolFailedAddRemovesNetwork(t *testing.T) {
	e := newEnv(t)
	c := e.topo.AddContainer("rb")
	bad := e.pluginConf(cniSubnet, map[string]any{
		"ipam": map[string]any{"type": "host-local", "dataDir": e.ipamDir,
			"ranges": [][]map[string]string{{{"subnet": cniSubnet, "gateway": "198.51.100.254"}}}},
		"capabilities": map[string]bool{"portMappings": true},
	})
	e.writeList("1.0.0", bad)
	_, err := e.cnitool("add", e.netName(), c, portCap(hostPort, ctrPort))
	if err == nil || !strings.Contains(err.Error(), "198.51.100.254") {
		t.Fatalf("ADD with IPAM gateway 198.51.100.254: %v; want an error naming it", err)
	}
	e.assertNoNetwork()
	e.assertNothingLeft(c)
	e.mustCnitool("del", e.netName(), c, portCap(hostPort, ctrPort))

	e.writeList("1.0.0", e.pluginConf(cniSubnet, map[string]any{"capabilities": map[string]bool{"portMappings": true}}))
	_, ip := e.addResult(e.mustCnitool("add", e.netName(), c, portCap(hostPort, ctrPort)))
	e.checkAgent(cni.EndpointID(containerID(c), "eth0"), ip)
	e.mustCnitool("del", e.netName(), c, portCap(hostPort, ctrPort))
}

// assertNoNetwork checks that the agent has no network pcn and the node no
// bridge pcbr0.
func (e *env) assertNoNetwork() {
	e.t.Helper()
	if n, err := e.api.Network(e.ctx, "pcn"); err == nil {
		e.t.Errorf("network pcn in the agent after a failed ADD: %+v", n)
	}
	if out, err := e.topo.Node.IP("link", "show", "pcbr0"); err == nil {
		e.t.Errorf("bridge pcbr0 in the node after a failed ADD: %s", out)
	}
}

// TestCnitoolFailedAddRemovesPorts: an ADD on a second CNI network that
// creates its agent network, publishes one port and is refused the next
// (taken by a container of the first network) leaves no network, endpoint
// or port mapping of its own; the first container keeps its port, and the
// same ADD without the taken port works.
func TestCnitoolFailedAddRemovesPorts(t *testing.T) {
	e := newEnv(t)
	e.writeConf()
	a, b := e.topo.AddContainer("a"), e.topo.AddContainer("b")
	e.addResult(e.mustCnitool("add", e.netName(), a, portCap(hostPort, ctrPort)))

	second := e.netName() + "b"
	e.writeFile(second+".conflist", map[string]any{"cniVersion": "1.0.0", "name": second, "plugins": []any{
		map[string]any{"type": "portcullis-cni", "socket": e.agent.Socket,
			"network": "pcn2", "bridge": "pcbr2", "subnet": "203.0.113.0/24",
			"ipam": map[string]any{"type": "host-local", "dataDir": e.ipamDir,
				"ranges": [][]map[string]string{{{"subnet": "203.0.113.0/24"}}}},
			"capabilities": map[string]bool{"portMappings": true}},
	}})
	both := fmt.Sprintf(`{"portMappings":[{"hostPort":%d,"containerPort":%d,"protocol":"tcp"},{"hostPort":%d,"containerPort":%d,"protocol":"tcp"}]}`,
		hostPort+1, ctrPort, hostPort, ctrPort)
	_, err := e.cnitool("add", second, b, both)
	if err == nil || !strings.Contains(err.Error(), fmt.Sprint(hostPort)) {
		t.Fatalf("ADD of b publishing %d (taken by a): %v; want a refusal naming the port", hostPort, err)
	}
	epA, epB := cni.EndpointID(containerID(a), "eth0"), cni.EndpointID(containerID(b), "eth0")
	if n, err := e.api.Network(e.ctx, "pcn2"); err == nil {
		t.Errorf("network pcn2 in the agent after the failed ADD: %+v", n)
	}
	if _, err := e.topo.Node.IP("link", "show", "pcbr2"); err == nil {
		t.Error("bridge pcbr2 in the node after the failed ADD")
	}
	if _, err := e.api.Endpoint(e.ctx, epB); err == nil {
		t.Errorf("endpoint %s left after the failed ADD", epB)
	}
	ports, err := e.api.Ports(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ports) != 1 || ports[0].Endpoint != epA || ports[0].HostPort != hostPort {
		t.Errorf("port mappings after the failed ADD: %+v; want only a's %d", ports, hostPort)
	}
	if files, _ := filepath.Glob(filepath.Join(e.ipamDir, second, "*.*.*.*")); len(files) != 0 {
		t.Errorf("host-local allocations of %s after the failed ADD: %v", second, files)
	}

	// Positive control: without the taken port the same ADD works.
	one := fmt.Sprintf(`{"portMappings":[{"hostPort":%d,"containerPort":%d,"protocol":"tcp"}]}`, hostPort+1, ctrPort)
	e.mustCnitool("add", second, b, one)
	if _, err := e.api.Network(e.ctx, "pcn2"); err != nil {
		t.Errorf("network pcn2 after a working ADD: %v", err)
	}
	e.mustCnitool("del", second, b, one)
	e.mustCnitool("del", e.netName(), a, portCap(hostPort, ctrPort))
	if err := e.api.DeleteNetwork(e.ctx, "pcn2"); err != nil {
		t.Fatal(err)
	}
	e.assertNothingLeft(a, b)
}
