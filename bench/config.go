package bench

import (
	"fmt"
	"io"
	"slices"
	"time"
)

// Config is what to run. Quick and Full are the presets behind
// `make bench-quick` and `make bench`.
type Config struct {
	// Modes to run, from AllModes.
	Modes []string `json:"modes"`
	// Rounds: every round runs every mode at every N, in a rotated order,
	// each in fresh namespaces.
	Rounds int `json:"rounds"`
	// Duration of each traffic measurement (connection rate, request/
	// response, each iperf3 run).
	Duration time.Duration `json:"duration_ns"`
	// Ns are the numbers of mappings published ahead of the measured one.
	// The full traffic suite runs at the first; the connection rate, the
	// add-one latency and the footprint at every one.
	Ns []int `json:"ns"`
	// Adds is how many mappings are added one at a time at each N.
	Adds int `json:"adds"`
	// AddBudget bounds the time the adds at one N may take: after it,
	// the adds stop (one at least is made).
	AddBudget time.Duration `json:"add_budget_ns"`
	// PerCall is how many mappings are programmed from empty one call per
	// mapping (Docker's way, the API's way), at the first N of the first
	// round only (it is deterministic work, and costs minutes); 0 skips it.
	PerCall int `json:"per_call"`
	// Clients is the number of parallel connection-rate clients.
	Clients int `json:"clients"`
	// SideBySide is the number of rounds of the side-by-side comparison
	// (sidebyside.go), after the other rounds; 0 skips it.
	SideBySide int `json:"side_by_side"`
	// SideBySideN is the N of the side-by-side comparison's instances.
	SideBySideN int `json:"side_by_side_n"`
	// DockerPorts are the numbers of published ports of the Docker engine
	// comparison (dockerside.go), one comparison each.
	DockerPorts []int `json:"docker_ports"`
	// DockerRounds is the number of rounds of each engine comparison; 0
	// skips them.
	DockerRounds int `json:"docker_rounds"`
	// DockerBudget bounds the time an engine may take to publish the
	// DockerPorts fillers: dockerd --iptables=true writes one rule per
	// call, each slower as the ruleset grows. Past it the engine is left
	// out at that size, with how far it got.
	DockerBudget time.Duration `json:"docker_budget_ns"`
	// Memory are the numbers of mappings at which the agent's memory is
	// read, each way a node gets them (memory.go); empty skips it.
	Memory []int `json:"memory"`
	// Flows is how many concurrent NAT flows the flow table scenario
	// opens and holds on the eBPF backend (flows.go); 0 skips it.
	Flows int `json:"flows"`
	// Churn is how long short-lived connections run at full speed on the
	// eBPF backend (churn.go); 0 skips it.
	Churn time.Duration `json:"churn_ns"`
	Quick bool          `json:"quick"`
	// Agent is the portcullisd binary; empty: next to pcbench, or built.
	Agent string `json:"agent"`
	// Progress receives one line per instance (stderr in pcbench).
	Progress io.Writer `json:"-"`
	// skipSuite leaves out request/response, iperf3 and UDP (smoke test).
	skipSuite bool
}

// AllModes in their default order. The references come first: none is the
// floor, iptables-nft the Docker default on current distributions. The
// engine modes (a real dockerd) run in the Docker engine comparison only.
var AllModes = append([]string{
	"none", "iptables-legacy", "iptables-nft", "docker-nftables",
	"cni-bridge-portmap", "nftables", "ebpf",
}, engineModes...)

// Quick is `make bench-quick`: one round, short runs, N up to 1,000, the
// engines at 100 ports; about six minutes on a busy 2-core machine, a
// minute and a half of it the engines.
func Quick() Config {
	return Config{
		Modes: AllModes, Rounds: 1, Duration: time.Second, Ns: []int{0, 1000},
		Adds: 20, AddBudget: 2 * time.Second, PerCall: 100, Clients: 8, SideBySide: 1, SideBySideN: 0,
		DockerPorts: []int{100}, DockerRounds: 1, DockerBudget: 3 * time.Minute, Memory: []int{1000}, Flows: 100000, Churn: 30 * time.Second, Quick: true,
	}
}

// Full is `make bench`: three rounds, N up to 100,000, eight side-by-side
// rounds (about forty minutes on a 2-core machine), then five engine
// rounds at 1,000 and 10,000 ports: dockerd --iptables=true alone takes
// minutes to publish 1,000 ports and up to DockerBudget at 10,000.
func Full() Config {
	return Config{
		Modes: AllModes, Rounds: 3, Duration: 3 * time.Second, Ns: []int{0, 1000, 10000, 100000},
		Adds: 200, AddBudget: 10 * time.Second, PerCall: 1000, Clients: 8, SideBySide: 8, SideBySideN: 10000,
		DockerPorts: []int{1000, 10000}, DockerRounds: 5, DockerBudget: 30 * time.Minute,
		Memory: []int{10000, 100000}, Flows: 1000000, Churn: 10 * time.Minute,
	}
}

// Validate checks the configuration before any namespace is made.
func (c Config) Validate() error {
	if len(c.Modes) == 0 {
		return fmt.Errorf("no modes: choose from %v", AllModes)
	}
	for _, m := range c.Modes {
		if !slices.Contains(AllModes, m) {
			return fmt.Errorf("unknown mode %q: choose from %v", m, AllModes)
		}
	}
	switch {
	case c.Rounds < 1 && len(c.Memory) == 0:
		return fmt.Errorf("rounds %d: at least 1 (0 only with -memory)", c.Rounds)
	case c.Duration < 200*time.Millisecond || c.Duration > 10*time.Minute:
		return fmt.Errorf("duration %v: between 200ms and 10m", c.Duration)
	case len(c.Ns) == 0:
		return fmt.Errorf("no N values")
	case c.Clients < 1 || c.Clients > 100:
		return fmt.Errorf("clients %d: between 1 and 100", c.Clients)
	case c.SideBySide < 0 || c.SideBySide > 100:
		return fmt.Errorf("side-by-side rounds %d: between 0 and 100", c.SideBySide)
	case c.Adds < 0 || c.PerCall < 0 || c.Adds+c.PerCall > 2*(65535-addBase+1):
		return fmt.Errorf("adds %d + per-call %d: at most %d mappings fit above port %d", c.Adds, c.PerCall, 2*(65535-addBase+1), addBase)
	}
	if c.SideBySideN < 0 || c.SideBySideN > maxFillers {
		return fmt.Errorf("side-by-side N %d: between 0 and %d", c.SideBySideN, maxFillers)
	}
	for _, n := range c.Ns {
		if n < 0 || n > maxFillers {
			return fmt.Errorf("N %d: between 0 and %d", n, maxFillers)
		}
	}
	for i, n := range c.Memory {
		if n < 1 || n > maxFillers || (i > 0 && n <= c.Memory[i-1]) {
			return fmt.Errorf("memory N %d: ascending, between 1 and %d", n, maxFillers)
		}
	}
	if c.Flows < 0 || c.Flows > maxGenFlows(flowContainers)/2 {
		return fmt.Errorf("flows %d: between 0 and %d", c.Flows, maxGenFlows(flowContainers)/2)
	}
	if c.Churn < 0 || c.Churn > 0 && (c.Churn < 5*time.Second || c.Churn > 2*time.Hour) {
		return fmt.Errorf("churn %v: 0 (skip), or between 5s and 2h", c.Churn)
	}
	return c.validateDocker()
}

// validateDocker checks the engine comparison's settings: the fillers are
// one range of tcp host ports from fillerBase, below the added ones.
func (c Config) validateDocker() error {
	if c.DockerRounds < 0 || c.DockerRounds > 100 {
		return fmt.Errorf("docker rounds %d: between 0 and 100", c.DockerRounds)
	}
	if c.DockerRounds > 0 && (c.DockerBudget < 10*time.Second || c.DockerBudget > 24*time.Hour) {
		return fmt.Errorf("docker budget %v: between 10s and 24h", c.DockerBudget)
	}
	if c.DockerRounds > 0 && len(c.DockerPorts) == 0 {
		return fmt.Errorf("docker rounds %d but no docker ports: give the numbers of published ports, or 0 rounds", c.DockerRounds)
	}
	for _, p := range c.DockerPorts {
		if p < 1 || p > maxDockerPorts {
			return fmt.Errorf("docker ports %d: between 1 and %d (one range of tcp host ports from %d)", p, maxDockerPorts, fillerBase)
		}
	}
	return nil
}
