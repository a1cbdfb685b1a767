package bench

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/nstest"
)

// The range c2 publishes is exactly the fillers the other modes publish
// one by one, so the engines and the references have the same N ports.
func TestPortRangeMatchesFillers(t *testing.T) {
	for _, n := range []int{1, 100, 10000, maxDockerPorts} {
		first, last := fillerMapping(0, defaultC2), fillerMapping(n-1, defaultC2)
		want := strconv.Itoa(first.HostPort) + "-" + strconv.Itoa(last.HostPort)
		if got := portRange(n); got != want+":"+want {
			t.Errorf("portRange(%d) = %q, want %q", n, got, want+":"+want)
		}
		if last.Proto != "tcp" || last.Port != last.HostPort {
			t.Errorf("filler %d is %+v: the range is tcp P:P", n-1, last)
		}
	}
}

func TestValidateDocker(t *testing.T) {
	for _, c := range []Config{Quick(), Full()} {
		if err := c.Validate(); err != nil {
			t.Errorf("preset does not validate: %v", err)
		}
	}
	bad := []struct {
		change func(*Config)
		want   string
	}{
		{func(c *Config) { c.DockerPorts = []int{0} }, "docker ports 0: between 1 and 50000"},
		{func(c *Config) { c.DockerPorts = []int{100, 50001} }, "docker ports 50001"},
		{func(c *Config) { c.DockerPorts = nil }, "docker rounds 1 but no docker ports"},
		{func(c *Config) { c.DockerRounds = -1 }, "docker rounds -1: between 0 and 100"},
		{func(c *Config) { c.DockerBudget = time.Second }, "docker budget 1s: between 10s and 24h"},
		{func(c *Config) { c.Modes = []string{"docker-portcullis-bogus"} }, `unknown mode "docker-portcullis-bogus"`},
	}
	for _, b := range bad {
		c := Quick()
		b.change(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("error %v, want one saying %q", err, b.want)
		}
	}
	c := Quick()
	c.DockerPorts, c.DockerRounds = nil, 0
	if err := c.Validate(); err != nil {
		t.Errorf("no engine comparison (0 rounds) is valid: %v", err)
	}
}

func TestEngineModes(t *testing.T) {
	for _, name := range engineModes {
		m, err := newSideMode(name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if m.name() != name {
			t.Errorf("mode %s calls itself %s", name, m.name())
		}
		if _, ok := m.(*engineMode); !ok {
			t.Errorf("%s is a %T, not an engine mode", name, m)
		}
	}
	if m, _ := newEngineMode("docker-portcullis-ebpf"); m.dataplane != "ebpf" {
		t.Errorf("docker-portcullis-ebpf follows the engine with %q", m.dataplane)
	}
	if _, err := newEngineMode("docker-portcullis-iptables"); err == nil {
		t.Errorf("an engine mode outside %v was made", engineModes)
	}
	if m, err := newSideMode("ebpf"); err != nil || isEngine(m.name()) {
		t.Errorf("ebpf: %v, engine %v: want the API-driven mode", err, m != nil && isEngine(m.name()))
	}
}

// Ratios to docker-iptables come from the same rounds as ratios to none;
// the docker run time has no ratio to none, which has no engine.
func TestSummarizeRunsVsDocker(t *testing.T) {
	runs := append(sideRuns("none", sideConnRate, 10000, 8000, 9000),
		sideRuns(modeDockerIptables, sideConnRate, 5000, 4000, 4500)...)
	runs = append(runs, sideRuns("docker-portcullis-ebpf", sideConnRate, 10000, 8000, 9000)...)
	runs = append(runs, sideRuns(modeDockerIptables, metricDockerRun, 2, 3, 4)...)
	runs = append(runs, sideRuns("docker-portcullis-ebpf", metricDockerRun, 1, 1.5, 2)...)
	modes := []string{"none", modeDockerIptables, "docker-portcullis-ebpf"}
	ss := summarizeRuns(runs, modes, dockerMetrics, modeDockerIptables)
	pc := findSide(t, ss, "docker-portcullis-ebpf", sideConnRate)
	if pc.VsDocker == nil || !near(pc.VsDocker.Median, 2) || !near(pc.VsDocker.Min, 2) || !near(pc.VsDocker.Max, 2) {
		t.Errorf("conn/s against docker-iptables %+v, want 2.00 [2.00-2.00]", pc.VsDocker)
	}
	if pc.VsNone == nil || !near(pc.VsNone.Median, 1) {
		t.Errorf("conn/s against none %+v, want 1.00", pc.VsNone)
	}
	run := findSide(t, ss, "docker-portcullis-ebpf", metricDockerRun)
	if run.VsNone != nil || run.VsDocker == nil || !near(run.VsDocker.Median, 0.5) {
		t.Errorf("docker run: against none %+v (want none), against docker-iptables %+v (want 0.50)", run.VsNone, run.VsDocker)
	}
	if d := findSide(t, ss, modeDockerIptables, metricDockerRun); d.VsDocker != nil {
		t.Errorf("docker-iptables has a ratio to itself: %+v", d.VsDocker)
	}
	if n := findSide(t, ss, "none", sideConnRate); n.VsDocker == nil || !near(n.VsDocker.Median, 2) {
		t.Errorf("none against docker-iptables %+v, want 2.00", n.VsDocker)
	}
	// The side-by-side summary has no second reference.
	if s := findSide(t, summarizeSide(runs, modes), "docker-portcullis-ebpf", sideConnRate); s.VsDocker != nil {
		t.Errorf("side by side with a docker-iptables ratio: %+v", s.VsDocker)
	}
}

func TestRenderDocker(t *testing.T) {
	r := syntheticResults()
	r.Config.Modes = append(r.Config.Modes, engineModes...)
	r.Modes = append(r.Modes, ModeInfo{Name: modeDockerIptables, Description: "dockerd --iptables=true"},
		ModeInfo{Name: "docker-portcullis-nftables", Description: "dockerd and portcullisd"},
		ModeInfo{Name: "docker-portcullis-ebpf", Description: "dockerd and portcullisd", Unavailable: "portcullisd --backend=ebpf --docker does not start"})
	runs := append(sideRuns("none", sideConnRate, 9000, 9000, 9000),
		sideRuns(modeDockerIptables, sideConnRate, 4500, 4500, 4500)...)
	runs = append(runs, sideRuns("docker-portcullis-nftables", sideConnRate, 8100, 8100, 8100)...)
	runs = append(runs, sideRuns("none", variantDefault, 10, 20, 15)...)
	runs = append(runs, sideRuns(modeDockerIptables, variantDefault, 9, 18, 13.5)...)
	runs = append(runs, sideRuns(modeDockerIptables, metricDockerRun, 2, 2, 2)...)
	runs = append(runs, sideRuns("docker-portcullis-nftables", metricDockerRun, 0.5, 0.5, 0.5)...)
	order := []string{"none", modeDockerIptables, "docker-portcullis-nftables"}
	r.Docker = []*DockerSide{{Ports: 1000, Rounds: 3, Runs: runs,
		Publish: map[string]float64{"none": 0, modeDockerIptables: 95.5, "docker-portcullis-nftables": 1.25},
		Notes:   []string{"docker-portcullis-ebpf: unavailable: does not start"},
		Summary: summarizeRuns(runs, order, dockerMetrics, modeDockerIptables)}}
	md := RenderMarkdown(r)
	requireMarkdown(t, md,
		"## Docker engine side by side with 1000 published ports",
		"3 rounds, each measuring every mode back to back",
		"| mode | publish s | conn/s | ×none | ×docker-ipt | default Gbit/s | ×none | cpu-bound Gbit/s | ×none | docker run s | ×docker-ipt |",
		"| none | – | 9000 | – | 2.00× [2.00–2.00] | 15.00 [10.00–20.00] | – | – | – | – | – |",
		"| docker-iptables | 95.500 | 4500 | 0.50× [0.50–0.50] | – | 13.50 [9.00–18.00] | 0.90× [0.90–0.90] | – | – | 2.000 | – |",
		"| docker-portcullis-nftables | 1.250 | 8100 | 0.90× [0.90–0.90] | 1.80× [1.80–1.80] | – | – | – | – | 0.500 | 0.25× [0.25–0.25] |",
		"- docker-portcullis-ebpf: unavailable: does not start",
		"- **docker-iptables**: dockerd --iptables=true",
	)
	// The rounds' tables are for the modes that run in the rounds.
	traffic := md[strings.Index(md, "## Traffic"):strings.Index(md, "## Single TCP stream")]
	if strings.Contains(traffic, "docker-") {
		t.Errorf("an engine mode in the rounds' traffic table:\n%s", traffic)
	}
}

// Without any engine comparison, an engine that cannot run says why.
func TestRenderDockerUnavailable(t *testing.T) {
	r := syntheticResults()
	r.Modes = append(r.Modes, ModeInfo{Name: modeDockerIptables, Unavailable: "nstest: needs dockerd (Debian's docker.io)"})
	requireMarkdown(t, RenderMarkdown(r),
		"## Docker engine side by side",
		"- docker-iptables: unavailable: nstest: needs dockerd (Debian's docker.io)")
}

// A listener that completes the handshake and never answers (what dockerd
// holds on every host port it publishes) is no answer; a server that
// answers is.
func TestTryExchange(t *testing.T) {
	silent, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	if err := tryExchange(netip.MustParseAddrPort(silent.Addr().String()), echoExchange); err == nil {
		t.Errorf("a listener that never answers counted as an answer")
	}
	echo, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		c, err := echo.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 64)
		c.Read(buf)
		c.Write([]byte("HTTP/1.0 200 OK\r\n\r\nbusybox httpd\n"))
	}()
	if err := tryExchange(netip.MustParseAddrPort(echo.Addr().String()), httpExchange); err != nil {
		t.Errorf("a server that answers: %v", err)
	}
}

// TestSmokeDockerIptables runs the engine comparison with dockerd's own
// rules at 20 ports for one short round: dockerd starts with
// --iptables=true winning over the harness's default (setup checks its
// DOCKER chain), the range and one more container answer from the
// external host, and its namespaces are gone afterwards.
func TestSmokeDockerIptables(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("pcbench needs root to create network namespaces")
	}
	if testing.Short() {
		t.Skip("starts a dockerd: not in -short")
	}
	cfg := Config{Modes: []string{modeDockerIptables}, Rounds: 1, Duration: time.Second, Ns: []int{0}, Clients: 2,
		DockerPorts: []int{20}, DockerRounds: 1, DockerBudget: 2 * time.Minute, skipSuite: true}
	res, err := Run(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Modes[0].Unavailable != "" {
		t.Skipf("docker-iptables unavailable here: %s", res.Modes[0].Unavailable)
	}
	if len(res.Docker) != 1 {
		t.Fatalf("%d engine comparisons, want 1", len(res.Docker))
	}
	ds := res.Docker[0]
	if p := ds.Publish[modeDockerIptables]; p <= 0 {
		t.Errorf("no time to publish the range: %v (notes %v)", ds.Publish, ds.Notes)
	}
	if runs := ds.DockerRuns[modeDockerIptables]; len(runs) != dockerRunsPerRound {
		t.Errorf("docker run times %v, want %d (notes %v)", runs, dockerRunsPerRound, ds.Notes)
	}
	rate := findSide(t, ds.Summary, modeDockerIptables, sideConnRate)
	if rate.Value.Median <= 0 {
		t.Errorf("no connection rate through dockerd's rules: %+v", rate)
	}
	ns := ds.Netns[modeDockerIptables]
	if left, _ := filepath.Glob(filepath.Join(nstest.NetnsDir, ns)); ns == "" || len(left) > 0 {
		t.Errorf("namespaces %q left behind: %v", ns, left)
	}
}
