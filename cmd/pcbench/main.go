// Command pcbench measures Portcullis's dataplanes side by side with Docker's
// iptables rules, Docker 29's nftables rules, the CNI bridge and portmap
// plugins, and no netfilter at all, in network namespaces it creates and
// removes (make bench, make bench-quick). See package bench for the method.
package main

import (
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
	quick := fs.Bool("quick", false, "one short round, N up to 1000: under 3 minutes")
	out := fs.String("out", "bench/results", "directory for results.json, results.md and the PNG plots")
	modes := fs.String("modes", "", "comma-separated modes (default all: "+strings.Join(bench.AllModes, ",")+")")
	rounds := fs.Int("rounds", 0, "rounds, each running every mode at every N (default 3, or 1 with -quick)")
	duration := fs.Duration("duration", 0, "length of each traffic measurement (default 3s, or 1s with -quick)")
	ns := fs.String("n", "", "comma-separated N values, mappings published ahead of the measured one (default 0,1000,10000,100000, or 0,1000 with -quick)")
	adds := fs.Int("adds", -1, "mappings added one at a time at each N (default 5, or 3 with -quick)")
	perCall := fs.Int("per-call", -1, "mappings programmed from empty one call each, at the first N; 0 skips (default 1000, or 100 with -quick)")
	clients := fs.Int("clients", 0, "parallel connection-rate clients (default 8)")
	agent := fs.String("agent", "", "portcullisd binary (default: the one next to pcbench, else built from the repository)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: pcbench [flags]\n\nRuns as root; everything happens in network namespaces it creates and removes.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
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
