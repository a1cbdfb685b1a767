// Command pcbench measures Portcullis's dataplanes side by side with Docker's
// iptables rules, Docker 29's nftables rules, the CNI bridge and portmap
// plugins, and no netfilter at all, in network namespaces it creates and
// removes (make bench, make bench-quick). See package bench for the method.
package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/portcullis/portcullis/bench"
	"github.com/portcullis/portcullis/internal/nstest"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		slog.Error("pcbench", "err", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("pcbench", flag.ContinueOnError)
	full, short := bench.Full(), bench.Quick()
	// defaults says what a flag left unset means, taken from the two
	// configurations themselves.
	defaults := func(f, q any) string { return fmt.Sprintf("(default %v, or %v with -quick)", f, q) }
	quick := fs.Bool("quick", false, "one short round, N up to 1000, the Docker engines at 100 ports: about 6 minutes")
	out := fs.String("out", "bench/results", "directory for results.json, results.md and the PNG plots")
	modes := fs.String("modes", "", "comma-separated modes (default all: "+strings.Join(bench.AllModes, ",")+")")
	rounds := fs.Int("rounds", 0, "rounds, each running every mode at every N "+defaults(full.Rounds, short.Rounds))
	duration := fs.Duration("duration", 0, "length of each traffic measurement "+defaults(full.Duration, short.Duration))
	ns := fs.String("n", "", "comma-separated N values, mappings published ahead of the measured one "+
		defaults(joinInts(full.Ns), joinInts(short.Ns)))
	adds := optInt(fs, "adds", "`number` of mappings added one at a time at each N "+defaults(full.Adds, short.Adds))
	perCall := optInt(fs, "per-call", "`number` of mappings programmed from empty one call each, at the first N; 0 skips "+
		defaults(full.PerCall, short.PerCall))
	sideBySide := optInt(fs, "side-by-side", "`number` of rounds of the side-by-side comparison, every mode alive at once; 0 skips "+
		defaults(full.SideBySide, short.SideBySide))
	sideBySideN := optInt(fs, "side-by-side-n", "`N` of the side-by-side comparison "+defaults(full.SideBySideN, short.SideBySideN))
	dockerPorts := fs.String("docker-ports", "", "comma-separated numbers of ports a real dockerd publishes in the Docker engine comparison "+
		defaults(joinInts(full.DockerPorts), joinInts(short.DockerPorts)))
	dockerRounds := optInt(fs, "docker-rounds", "`number` of rounds of each Docker engine comparison; 0 skips "+
		defaults(full.DockerRounds, short.DockerRounds))
	dockerBudget := fs.Duration("docker-budget", 0, "time an engine may take to publish the ports before it is left out at that size "+
		defaults(full.DockerBudget, short.DockerBudget))
	memory := fs.String("memory", "", "comma-separated numbers of mappings at which the agent's memory is read, one PUT each, after a restart and bulk; 0 skips "+
		defaults(joinInts(full.Memory), joinInts(short.Memory)))
	flows := optInt(fs, "flows", "`number` of concurrent NAT flows the eBPF flow table scenario opens and holds; 0 skips "+
		defaults(full.Flows, short.Flows))
	churn := optDuration(fs, "churn", "`duration` of the short-lived connections run at full speed on eBPF; 0 skips "+
		defaults(full.Churn, short.Churn))
	clients := fs.Int("clients", 0, "parallel connection-rate clients (default "+strconv.Itoa(full.Clients)+")")
	agent := fs.String("agent", "", "portcullisd binary (default: the one next to pcbench, else built from the repository)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: pcbench [flags]\n\nRuns as root; everything happens in network namespaces it creates and removes.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	cfg := bench.Full()
	if *quick {
		cfg = bench.Quick()
	}
	if *modes != "" {
		cfg.Modes = nil
		for _, m := range strings.Split(*modes, ",") {
			cfg.Modes = append(cfg.Modes, strings.TrimSpace(m))
		}
	}
	if *rounds > 0 {
		cfg.Rounds = *rounds
	}
	if *duration > 0 {
		cfg.Duration = *duration
	}
	if *ns != "" {
		var err error
		if cfg.Ns, err = parseInts(*ns); err != nil {
			return fmt.Errorf("-n: %w", err)
		}
	}
	if *adds >= 0 {
		cfg.Adds = *adds
	}
	if *perCall >= 0 {
		cfg.PerCall = *perCall
	}
	if *sideBySide >= 0 {
		cfg.SideBySide = *sideBySide
	}
	if *sideBySideN >= 0 {
		cfg.SideBySideN = *sideBySideN
	}
	if *dockerPorts != "" {
		var err error
		if cfg.DockerPorts, err = parseInts(*dockerPorts); err != nil {
			return fmt.Errorf("-docker-ports: %w", err)
		}
	}
	if *dockerRounds >= 0 {
		cfg.DockerRounds = *dockerRounds
	}
	if *dockerBudget > 0 {
		cfg.DockerBudget = *dockerBudget
	}
	if *memory != "" {
		var err error
		if cfg.Memory, err = parseInts(*memory); err != nil {
			return fmt.Errorf("-memory: %w", err)
		}
		if len(cfg.Memory) == 1 && cfg.Memory[0] == 0 {
			cfg.Memory = nil
		}
	}
	if *flows >= 0 {
		cfg.Flows = *flows
	}
	if *churn >= 0 {
		cfg.Churn = *churn
	}
	if *clients > 0 {
		cfg.Clients = *clients
	}
	cfg.Agent = *agent
	cfg.Progress = os.Stderr
	defer nstest.ReleaseAll()

	start := time.Now()
	res, err := bench.Run(cfg)
	if err != nil {
		return err
	}
	fmt.Print(bench.RenderMarkdown(res))
	files, err := bench.WriteAll(res, *out)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "pcbench: done in %v; wrote %s\n", time.Since(start).Round(time.Second), strings.Join(files, ", "))
	return nil
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}

func joinInts(xs []int) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, ",")
}

// optInt is an int flag that is -1 when not given, with no "(default -1)"
// in the usage: 0 is a value of its own there.
func optInt(fs *flag.FlagSet, name, usage string) *int {
	v := -1
	fs.Func(name, usage, func(s string) error {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return fmt.Errorf("%q: want a whole number, 0 or more", s)
		}
		v = n
		return nil
	})
	return &v
}

// optDuration is a duration flag that is -1 when not given: 0 is a value
// of its own there.
func optDuration(fs *flag.FlagSet, name, usage string) *time.Duration {
	v := time.Duration(-1)
	fs.Func(name, usage, func(s string) error {
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 {
			return fmt.Errorf("%q: want a duration such as 30s or 10m, 0 or more", s)
		}
		v = d
		return nil
	})
	return &v
}
