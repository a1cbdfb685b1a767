// Command portcullisd is the Portcullis node agent: it owns the dataplane's
// kernel state and serves the controller API on a unix socket.
//
//	portcullisd [flags]            run the agent
//	portcullisd uninstall [flags]  remove everything it ever created
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/portcullis/portcullis/dataplane/agent"
	"github.com/portcullis/portcullis/dataplane/api"
	"github.com/portcullis/portcullis/dataplane/ebpf"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "portcullisd:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	uninstall := len(args) > 0 && args[0] == "uninstall"
	if uninstall {
		args = args[1:]
	}
	fs := flag.NewFlagSet("portcullisd", flag.ContinueOnError)
	var cfg agent.Config
	fs.StringVar(&cfg.Socket, "socket", api.DefaultSocket, "unix socket of the controller API")
	fs.StringVar(&cfg.StateDir, "state-dir", "/var/lib/portcullis", "directory of the desired state")
	fs.StringVar(&cfg.Backend, "backend", "auto", "dataplane backend: auto, ebpf or nftables")
	fs.StringVar(&cfg.BPFFS, "bpffs", "/sys/fs/bpf/portcullis", "bpffs directory where eBPF programs and maps are pinned")
	fs.StringVar(&cfg.Attach, "attach", "auto", "eBPF attach mode: auto (tcx when the kernel has it), tcx or tc (clsact)")
	fs.BoolVar(&cfg.FastPath, "fast-path", true, "eBPF: redirect translated traffic straight between uplink and container (redirect_peer, fib lookup + redirect_neigh)")
	fs.StringVar(&cfg.NATPorts, "nat-ports", "auto", "eBPF: source ports SNAT picks from, MIN-MAX; auto: the longest run of ports above 1023 outside the node's ephemeral ports (net.ipv4.ip_local_port_range)")
	sizes := ebpf.DefaultMapSizes()
	fs.Uint64Var(&cfg.CTEntries, "ct-entries", uint64(sizes.CT), "eBPF: entries of the IPv4 flow table pc_flows4, two per flow (connection tracking and NAT); preallocated, 112 bytes of kernel memory each")
	fs.Uint64Var(&cfg.CT6Entries, "ct6-entries", uint64(sizes.CT6), "eBPF: entries of pc_track6, one per routed (untranslated) IPv6 flow; preallocated, 120 bytes each")
	fs.Uint64Var(&cfg.NAT6Entries, "nat6-entries", uint64(sizes.NAT6), "eBPF: entries of pc_flows6, two per published-port or masqueraded IPv6 flow; preallocated, 160 bytes each")
	fs.DurationVar(&cfg.JournalSync, "journal-sync", 100*time.Millisecond, "fdatasync the state journal within this interval of a change; 0 syncs before every API answer (survives power loss, slower on most disks)")
	fs.StringVar(&cfg.MetricsAddr, "metrics-addr", "", "serve Prometheus metrics on this TCP address, e.g. 127.0.0.1:9642 (default: off)")
	fs.DurationVar(&cfg.ResyncPeriod, "resync-period", time.Minute, "re-apply the whole state this often, repairing what was changed behind the agent's back (a flushed nft table, a detached program); a failed change or resync is retried at once, then with backoff; 0: off")
	fs.StringVar(&cfg.Docker, "docker", "", "follow this Docker engine (e.g. unix:///var/run/docker.sock): its bridge networks, containers, published ports and links; dockerd must run with iptables, ip6tables and userland-proxy off")
	fs.BoolVar(&cfg.DockerDefaults.ICC, "icc", true, "with --docker: inter-container communication on docker0 (dockerd's --icc, which it refuses with --iptables=false); other networks take com.docker.network.bridge.enable_icc")
	fs.BoolVar(&cfg.DockerDefaults.Masquerade, "ip-masq", true, "with --docker: masquerade docker0's traffic out (dockerd's --ip-masq, which it reports off with --iptables=false); other networks take com.docker.network.bridge.enable_ip_masquerade")
	level := fs.String("log-level", "info", "log level: debug, info, warn or error")
	format := fs.String("log-format", "text", "log format: text or json")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: portcullisd [uninstall] [flags]\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q: the only subcommand is uninstall", fs.Arg(0))
	}
	if cfg.JournalSync < 0 {
		return fmt.Errorf("-journal-sync %v: must be 0 (sync every change) or a positive interval", cfg.JournalSync)
	}
	log, err := newLogger(*level, *format)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if uninstall {
		return agent.Uninstall(ctx, cfg, log)
	}
	return agent.Run(ctx, cfg, log)
}

func newLogger(level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("-log-level %q: use debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("-log-format %q: use text or json", format)
}
