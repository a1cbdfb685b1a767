package bench

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/portcullis/portcullis/internal/nstest"
)

// engineMode is a real Docker engine (Debian's docker.io dockerd, through
// nstest.StartDockerd) in the node namespace, publishing ports with its own
// iptables rules or followed by portcullisd --docker on one backend. It
// runs in the Docker engine comparison only (dockerside.go): a dockerd per
// instance, with its rules written one iptables call at a time, is too slow
// for every N of every round.
//
// The shape is the other modes': c2 publishes the N fillers, here as one
// range `-p 10000-(10000+N-1):same` (one DNAT and one ACCEPT rule per port
// with iptables on), then c1 publishes the measured `-p 8080:80 -p
// 5201:5201 -p 5201:5201/udp`, so its rules come after the fillers'.
type engineMode struct {
	// dataplane is "iptables" (dockerd's own rules) or the portcullisd
	// backend that follows the engine.
	dataplane string
}

// The engine modes, in the order of the report.
const (
	modeDockerIptables = "docker-iptables"
	engineAgentPrefix  = "docker-portcullis-"
)

// maxDockerPorts: the fillers are one range of tcp host ports from
// fillerBase, as many as fillerMapping numbers with tcp.
const maxDockerPorts = fillerPerProt

var engineModes = []string{modeDockerIptables, engineAgentPrefix + "nftables", engineAgentPrefix + "ebpf"}

func isEngine(name string) bool { return slices.Contains(engineModes, name) }

func newEngineMode(name string) (*engineMode, error) {
	if name == modeDockerIptables {
		return &engineMode{dataplane: "iptables"}, nil
	}
	if b, ok := strings.CutPrefix(name, engineAgentPrefix); ok && isEngine(name) {
		return &engineMode{dataplane: b}, nil
	}
	return nil, fmt.Errorf("unknown engine mode %q: choose from %v", name, engineModes)
}

// engineState is one instance's engine.
type engineState struct {
	d     *nstest.Dockerd
	cli   string
	agent *nstest.Agent
	added int // containers started by runOne
}

func (m *engineMode) name() string {
	if m.dataplane == "iptables" {
		return modeDockerIptables
	}
	return engineAgentPrefix + m.dataplane
}

func (m *engineMode) describe() string {
	common := "dockerd (docker.io) in the node namespace (nstest.StartDockerd: --userland-proxy=false, vfs, own data root), " +
		"busybox image; c2 publishes the N fillers as one range -p 10000-(10000+N-1), then c1 -p 8080:80 -p 5201:5201 -p 5201:5201/udp; " +
		"one more container is `docker run -d -p H:80` with busybox httpd, timed until its page comes back from the external host"
	if m.dataplane == "iptables" {
		return common + "; dockerd --iptables=true writes its own rules (the iptables command, one call per rule)"
	}
	return common + fmt.Sprintf("; dockerd --iptables=false, portcullisd --backend=%s --docker unix://dockerd.sock maps its networks and ports", m.dataplane)
}

func (m *engineMode) check(e *env) error {
	if m.dataplane != "iptables" && e.agentErr != nil {
		return e.agentErr
	}
	if m.dataplane == "iptables" {
		if _, err := exec.LookPath("iptables"); err != nil {
			return fmt.Errorf("iptables not found (dockerd --iptables=true runs it): install Debian's iptables package")
		}
	}
	sc := newScope()
	defer sc.Close()
	if err := sc.run(func() error { nstest.RequireDocker(sc); return nil }); err != nil {
		return fmt.Errorf("%w (make deps-docker installs docker.io and busybox-static)", err)
	}
	return nil
}

// engineTimeout bounds a docker command other than the range's run (which
// Config.DockerBudget bounds): with iptables on, dockerd writes and
// removes a container's rules one call at a time, each slower as the
// ruleset grows. The bound is there to end a stuck engine, not a slow one.
func engineTimeout(n int) time.Duration { return 5*time.Minute + time.Duration(n)*100*time.Millisecond }

// portRange is the -p value of c2's n fillers: host port P to port P from
// fillerBase on, as fillerMapping numbers them.
func portRange(n int) string {
	r := fmt.Sprintf("%d-%d", fillerBase, fillerBase+n-1)
	return r + ":" + r
}

// setup starts the engine, publishes the fillers and then the measured
// ports, and returns the time from `docker run` of the range container
// until its last port answered from the external host.
func (m *engineMode) setup(in *instance) (time.Duration, error) {
	st := &engineState{cli: dockerClient()}
	in.modeState = st
	if err := m.startEngine(in, st); err != nil {
		return 0, err
	}
	st.d.ImportImage(in.tb)
	var took time.Duration
	if in.n > 0 {
		var err error
		if took, err = m.publishRange(in, st); err != nil {
			return 0, err
		}
	}
	if _, err := st.docker(engineTimeout(in.n), containerArgs("c1", "-p", "8080:80", "-p", "5201:5201", "-p", "5201:5201/udp")...); err != nil {
		return took, err
	}
	in.c1, in.c1IP = st.container(in, "c1")
	return took, nil
}

// startEngine starts dockerd (with its rules on for docker-iptables, the
// later flag winning over the harness's --iptables=false), checks that the
// flag took, and starts portcullisd --docker for the other modes.
func (m *engineMode) startEngine(in *instance, st *engineState) error {
	var args []string
	if m.dataplane == "iptables" {
		args = []string{"--iptables=true"}
	}
	if err := in.tb.run(func() error { st.d = nstest.StartDockerd(in.tb, in.topo.Node, args...); return nil }); err != nil {
		return unavailable("dockerd does not start in the node namespace: %v", err)
	}
	if err := m.checkRules(in); err != nil {
		return err
	}
	if m.dataplane == "iptables" {
		// Runs before the harness removes the containers: see flushRules.
		in.tb.Cleanup(func() { flushRules(in) })
		return nil
	}
	err := in.tb.run(func() error {
		st.agent = nstest.StartAgent(in.tb, in.topo.Node, nstest.AgentOptions{Backend: m.dataplane, Binary: in.env.agent,
			Args: []string{"--docker", st.d.Host}})
		return nil
	})
	if err != nil {
		return unavailable("portcullisd --backend=%s --docker does not start: %s", m.dataplane, agentReason(err.Error()))
	}
	return nil
}

// publishRange runs c2 with the n fillers as one range, within the budget,
// puts an echo server on the range's last port and waits until it answers
// from the external host.
func (m *engineMode) publishRange(in *instance, st *engineState) (time.Duration, error) {
	start := time.Now()
	if _, err := st.docker(in.env.cfg.DockerBudget, containerArgs("c2", "-p", portRange(in.n))...); err != nil {
		return 0, m.gaveUp(in, time.Since(start), err)
	}
	ran := time.Since(start)
	in.c2, in.c2IP = st.container(in, "c2")
	last := fillerBase + in.n - 1
	startEcho(in.tb, in.c2, last)
	if err := waitAnswer(in.topo.Ext, addrPort(nodeAddr(), last), echoExchange, engineTimeout(in.n)); err != nil {
		return 0, fmt.Errorf("c2's last published port: %w", err)
	}
	took := time.Since(start)
	in.note("docker run -p %s took %v, its last port answered after %v", portRange(in.n), ran.Round(time.Millisecond), took.Round(time.Millisecond))
	return took, nil
}

// errOverBudget marks an engine that did not publish the ports within
// Config.DockerBudget: it is left out at larger sizes too.
var errOverBudget = errors.New("did not finish within the budget")

// gaveUp reports a range that was not published within the budget: how
// many ports dockerd had written DNAT rules for by then. The engine is
// stopped at once: removing the container would first wait for the rest
// of its rules, then remove them one call at a time.
func (m *engineMode) gaveUp(in *instance, took time.Duration, err error) error {
	st := in.modeState.(*engineState)
	if m.dataplane == "iptables" {
		if out, serr := (command{ns: in.topo.Node, args: []string{"iptables-save", "-t", "nat"}, timeout: 5 * time.Minute}).run(); serr == nil {
			err = fmt.Errorf("%d of %d ports had their DNAT rule after %v: %w", strings.Count(out, "-j DNAT"), in.n, took.Round(time.Second), err)
		}
	}
	if serr := st.d.Stop(); serr != nil {
		in.note("stop dockerd: %v", serr)
	}
	if took < in.env.cfg.DockerBudget {
		return fmt.Errorf("docker run -p %s: %w", portRange(in.n), err)
	}
	return fmt.Errorf("docker run -p %s %w of %v (raise -docker-budget): %w", portRange(in.n), errOverBudget, in.env.cfg.DockerBudget, err)
}

// checkRules makes sure the engine runs with the rules it is meant to:
// dockerd makes its DOCKER chain at start exactly when --iptables is on.
func (m *engineMode) checkRules(in *instance) error {
	out, err := command{ns: in.topo.Node, args: []string{"iptables-save", "-t", "nat"}}.run()
	if err != nil && m.dataplane == "iptables" {
		return err
	}
	has := strings.Contains(out, ":DOCKER ")
	switch {
	case m.dataplane == "iptables" && !has:
		return fmt.Errorf("dockerd --iptables=true made no DOCKER chain in the node: the flag did not take (dockerd args %v)", in.modeState.(*engineState).d.Args)
	case m.dataplane != "iptables" && has:
		return fmt.Errorf("dockerd made a DOCKER chain in the node although the harness starts it with --iptables=false")
	}
	if v, err := exec.Command("iptables", "--version").Output(); err == nil && m.dataplane == "iptables" {
		in.note("dockerd's iptables: %s", firstLine(string(v)))
	}
	return nil
}

// flushRules empties the node's nat and filter tables before dockerd
// removes the containers. dockerd deletes a container's rules one
// iptables call at a time, each listing the whole ruleset first, which
// takes as long as writing them (minutes at 1,000 ports); against empty
// tables each call is quick. The namespace goes with the instance anyway.
func flushRules(in *instance) {
	for _, table := range []string{"nat", "filter"} {
		if _, err := (command{ns: in.topo.Node, args: []string{"iptables", "-w", "-t", table, "-F"}}).run(); err != nil {
			in.tb.Logf("flush the node's %s table before removing the containers: %v", table, err)
		}
	}
}

// containerArgs runs a detached busybox container that only sleeps: the
// benchmark's servers run in its namespace. Its backlog is raised as in
// the other modes' containers.
func containerArgs(name string, ports ...string) []string {
	args := append([]string{"run", "-d", "--name", name, "--sysctl", "net.core.somaxconn=4096"}, ports...)
	return append(args, nstest.Image, "sleep", "1000000")
}

// container returns a running container's namespace and address.
func (st *engineState) container(in *instance, name string) (*nstest.NS, netip.Addr) {
	ns := st.d.ContainerNS(in.tb, name)
	out, err := st.docker(time.Minute, "inspect", "-f", "{{.NetworkSettings.IPAddress}}", name)
	in.must(err)
	ip, err := netip.ParseAddr(strings.TrimSpace(out))
	if err != nil {
		in.must(fmt.Errorf("address of container %s: %q: %w", name, out, err))
	}
	return ns, ip
}

// runOne starts one more container publishing one port, with busybox
// httpd as its server, and returns the time from `docker run` until the
// page comes back through the published port from the external host.
// The container is removed afterwards (not timed), so N stays N.
func (m *engineMode) runOne(in *instance) (time.Duration, error) {
	st := in.modeState.(*engineState)
	port := addBase + st.added
	name := "a" + strconv.Itoa(st.added)
	st.added++
	if port > 65535 {
		return 0, fmt.Errorf("no host port left above %d for another container", addBase)
	}
	args := []string{"run", "-d", "--name", name, "-p", fmt.Sprintf("%d:80", port), nstest.Image, "httpd", "-f", "-p", "80", "-h", "/www"}
	start := time.Now()
	if _, err := st.docker(engineTimeout(in.n), args...); err != nil {
		return 0, err
	}
	err := waitAnswer(in.topo.Ext, addrPort(nodeAddr(), port), httpExchange, engineTimeout(in.n))
	took := time.Since(start)
	if _, rmErr := st.docker(engineTimeout(in.n), "rm", "-f", name); rmErr != nil {
		in.note("remove %s: %v", name, rmErr)
	}
	return took, err
}

// docker runs the client against the instance's engine, bounded.
func (st *engineState) docker(timeout time.Duration, args ...string) (string, error) {
	out, err := command{args: append([]string{st.cli}, args...), env: []string{"DOCKER_HOST=" + st.d.Host, "DOCKER_CLI_HINTS=false"},
		timeout: timeout}.run()
	return strings.TrimSpace(out), err
}

// dockerClient is the client that came with the engine, as nstest uses.
func dockerClient() string {
	if _, err := os.Stat("/usr/bin/docker"); err == nil {
		return "/usr/bin/docker"
	}
	return "docker"
}
