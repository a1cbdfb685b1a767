// Package ctl is pcctl, the debug CLI. Noun commands (status, networks,
// endpoints, ports, links, flows, drops) only read; verb commands (publish,
// unpublish, link, unlink, flush-flows) change state. The noun commands ask
// the agent, and when it does not answer on its socket read what it left
// directly: the state directory, the pinned maps, the nft tables and the
// conntrack table (offline.go). Verb commands need the agent. Commands get
// an injected Env, so tests run them in-process.
package ctl

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/portcullis/portcullis/dataplane/api"
)

// Env is what a command may touch.
type Env struct {
	Stdout, Stderr io.Writer
	Getenv         func(string) string
}

// runFunc runs a command once its flags are parsed, with its positional
// arguments.
type runFunc func(ctx context.Context, args []string) error

type command struct {
	name, args, help string
	// bind registers the command's own flags on fs and returns what runs
	// the command; it has no other effect, so help and completion call it
	// too.
	bind func(fs *flag.FlagSet, c *cli) runFunc
	// argKinds say what each positional argument names, for completion
	// (see completeKind); a last kind ending in "..." repeats.
	argKinds []string
}

type cli struct {
	env      Env
	client   *api.Client
	socket   string
	output   string
	stateDir string // the agent's -state-dir, read when it is down
	bpffs    string // the agent's -bpffs, read when it is down
}

var commands = []command{
	{"status", "", "show the backend in use and why, counts and reconciler state (agent down: what is installed, from the kernel and -state-dir)", plain(status), nil},
	{"networks", "[NAME...]", "list networks, all or those named (agent down: from -state-dir)", plain(listOf("networks")), []string{"network..."}},
	{"endpoints", "[ID...]", "list endpoints, all or those named (agent down: from -state-dir)", plain(listOf("endpoints")), []string{"endpoint..."}},
	{"ports", "[ID...]", "list port mappings, all or those named (agent down: from -state-dir)", plain(listOf("ports")), []string{"port..."}},
	{"links", "[PARENT...]", "list links with their environment variables, all or those of the parents named (agent down: from -state-dir)", plain(listOf("links")), []string{"endpoint..."}},
	{"flows", "[-addr IP] [-port N] [-proto P]", "list connection-tracking and NAT entries (agent down: from the pinned maps or the conntrack table)", flows, nil},
	{"drops", "", "list drop counters by reason and endpoint (agent down: from the pinned maps or the nft counters)", plain(drops), nil},
	{"maps", "[-bpffs DIR] [-dump NAME] [-limit N]", "list the pinned BPF maps (read from bpffs, works with the agent down)", maps, nil},
	{"trace", "[-bpffs DIR] [-type drop,nat] [-reason R] [-addr IP] [-port N] [-proto P] [-endpoint ID] [-count N] [-timeout D]", "print live drops and new translations from the eBPF datapath (from bpffs, works with the agent down)", trace, nil},
	{"publish", "ID ENDPOINT [HOSTIP:]HOSTPORT[-END]:PORT[-END][/PROTO]", "publish a port (like docker -p; needs the agent)", plain(publish), []string{"", "endpoint", ""}},
	{"unpublish", "ID", "remove a port mapping (needs the agent)", plain(unpublish), []string{"port"}},
	{"link", "PARENT CHILD ALIAS", "link parent to child under alias; prints env and hosts line (needs the agent)", plain(link), []string{"endpoint", "endpoint", ""}},
	{"unlink", "PARENT ALIAS", "remove a link (needs the agent)", plain(unlink), []string{"endpoint", "alias"}},
	{"flush-flows", "[-addr IP] [-port N] [-proto P]", "delete connection-tracking entries, all or those selected (needs the agent)", flushFlows, nil},
	{"uninstall", "[-state-dir DIR] [-bpffs DIR]", "remove everything portcullisd created (the agent must be stopped)", uninstall, nil},
	{"cni-conflist", "NAME -subnet SUBNET [-subnet6 SUBNET6] [-bridge BR] [-ipam-dir DIR] [-dir DIR]", "write a portcullis-cni network for Podman (CNI backend) and other CNI runtimes: DIR/NAME.conflist (what podman network create cannot make)", cniConflist, []string{""}},
}

func init() {
	// These list or walk the table they are in, so they join it at init.
	commands = append(commands,
		command{"help", "[COMMAND]", "show the commands and flags, or one command's", plain(help), []string{"command"}},
		command{"completion", "bash", "print a bash completion script: source <(pcctl completion bash)", plain(completion), []string{"shell"}},
	)
}

// plain binds a command that has no flags of its own.
func plain(run func(ctx context.Context, c *cli, args []string) error) func(*flag.FlagSet, *cli) runFunc {
	return func(_ *flag.FlagSet, c *cli) runFunc {
		return func(ctx context.Context, args []string) error { return run(ctx, c, args) }
	}
}

func lookup(name string) (command, bool) {
	for _, cmd := range commands {
		if cmd.name == name {
			return cmd, true
		}
	}
	return command{}, false
}

// Output formats of -o.
var formats = []string{"table", "json"}

// Run executes pcctl with args (without the program name). The global flags
// may come before the command or anywhere after it, among its own flags
// and arguments, as with docker and kubectl; "--" ends the flags.
func Run(ctx context.Context, args []string, env Env) error {
	if len(args) > 0 && args[0] == completeCmd {
		// The words are what is being typed, flags among them: not parsed.
		return complete(ctx, env, args[1:])
	}
	c := newCLI(env)
	global := flag.NewFlagSet("pcctl", flag.ContinueOnError)
	c.globalFlags(global)
	// Errors come back to the caller, which prints them once; help goes
	// to stdout.
	global.SetOutput(io.Discard)
	if err := global.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			c.usage(env.Stdout)
			return nil
		}
		return fmt.Errorf("%w (see pcctl help)", err)
	}
	if global.NArg() == 0 {
		c.usage(env.Stderr)
		return errors.New("no command given: see the list above, or pcctl help")
	}
	cmd, ok := lookup(global.Arg(0))
	if !ok {
		return fmt.Errorf("unknown command %q: run pcctl help for the list", global.Arg(0))
	}
	fs, run := c.commandFlags(cmd)
	rest, err := parseInterspersed(fs, global.Args()[1:])
	if errors.Is(err, flag.ErrHelp) {
		return c.commandHelp(env.Stdout, cmd)
	}
	if err != nil {
		return fmt.Errorf("%s: %w (see pcctl help %s)", cmd.name, err, cmd.name)
	}
	if !slices.Contains(formats, c.output) {
		return fmt.Errorf("-o %q: use %s", c.output, strings.Join(formats, " or "))
	}
	c.client = api.NewClient(c.socket)
	return run(ctx, rest)
}

// newCLI is pcctl with its defaults, from the environment where set.
func newCLI(env Env) *cli {
	envOr := func(name, def string) string {
		if v := env.Getenv(name); v != "" {
			return v
		}
		return def
	}
	return &cli{env: env, output: "table",
		socket:   envOr("PORTCULLIS_SOCKET", api.DefaultSocket),
		stateDir: envOr("PORTCULLIS_STATE_DIR", DefaultStateDir),
		bpffs:    envOr("PORTCULLIS_BPFFS", DefaultBPFFS)}
}

// globalFlags registers the flags every command takes on fs, with c's
// current values as defaults; a command's own flag of the same name (maps
// -bpffs) stands in for one.
func (c *cli) globalFlags(fs *flag.FlagSet) {
	add := func(p *string, name, usage string) {
		if fs.Lookup(name) == nil {
			fs.StringVar(p, name, *p, usage)
		}
	}
	add(&c.output, "o", "output format: "+strings.Join(formats, " or "))
	add(&c.socket, "socket", "agent socket (env PORTCULLIS_SOCKET)")
	add(&c.stateDir, "state-dir", "the agent's state directory, read when it does not answer (env PORTCULLIS_STATE_DIR)")
	add(&c.bpffs, "bpffs", "the agent's bpffs directory, read when it does not answer (env PORTCULLIS_BPFFS)")
}

// commandFlags is cmd's flag set: its own flags, then the global ones.
func (c *cli) commandFlags(cmd command) (*flag.FlagSet, runFunc) {
	fs := flag.NewFlagSet(cmd.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	run := cmd.bind(fs, c)
	c.globalFlags(fs)
	return fs, run
}

// parseInterspersed parses flags wherever they stand among the positional
// arguments, which it returns in order. Everything after "--" is
// positional.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(pos, rest...), nil
		}
		if len(rest) == 0 {
			return pos, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// The agent's defaults (portcullisd -state-dir, -bpffs).
const (
	DefaultStateDir = "/var/lib/portcullis"
	DefaultBPFFS    = "/sys/fs/bpf/portcullis"
)

// usage is pcctl's help: the commands and the global flags.
func (c *cli) usage(w io.Writer) {
	fmt.Fprintf(w, "usage: pcctl [flags] COMMAND [ARGS] [flags]\n\ncommands:\n")
	for _, cmd := range commands {
		fmt.Fprintf(w, "  %-11s %s\n", cmd.name, cmd.help)
	}
	fmt.Fprintf(w, "\nThe read-only commands ask portcullisd; when it does not answer on its\n"+
		"socket they read -state-dir, the maps pinned in -bpffs and the nft and\n"+
		"conntrack tables of the current network namespace instead, and say so on\n"+
		"stderr. Commands that change state need the agent. pcctl help COMMAND\n"+
		"shows a command's own flags.\n")
	fmt.Fprintf(w, "\nflags (before or after the command):\n")
	fs := flag.NewFlagSet("pcctl", flag.ContinueOnError)
	newCLI(c.env).globalFlags(fs) // the defaults, not this run's values
	fs.SetOutput(w)
	fs.PrintDefaults()
}

// commandHelp prints one command's usage and its own flags.
func (c *cli) commandHelp(w io.Writer, cmd command) error {
	fmt.Fprintf(w, "usage: pcctl %s %s\n\n%s\n", cmd.name, cmd.args, cmd.help)
	fs := flag.NewFlagSet(cmd.name, flag.ContinueOnError)
	cmd.bind(fs, newCLI(c.env))
	if hasFlags(fs) {
		fmt.Fprintf(w, "\nflags:\n")
		fs.SetOutput(w)
		fs.PrintDefaults()
	}
	fmt.Fprintf(w, "\nThe global flags (-o, -socket, -state-dir, -bpffs) work here too: see pcctl help.\n")
	return nil
}

func hasFlags(fs *flag.FlagSet) bool {
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	return n > 0
}

func help(_ context.Context, c *cli, args []string) error {
	switch len(args) {
	case 0:
		c.usage(c.env.Stdout)
		return nil
	case 1:
		cmd, ok := lookup(args[0])
		if !ok {
			return fmt.Errorf("help %q: no such command: run pcctl help for the list", args[0])
		}
		return c.commandHelp(c.env.Stdout, cmd)
	}
	return errors.New("want at most 1 argument: help [COMMAND]")
}

func wantArgs(args []string, n int, form string) error {
	if len(args) != n {
		return fmt.Errorf("want %d arguments: %s", n, form)
	}
	return nil
}

// noArgs refuses positional arguments to a command that takes none.
func noArgs(args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("unexpected argument %q", args[0])
	}
	return nil
}
