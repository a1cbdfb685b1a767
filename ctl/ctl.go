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
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/portcullis/portcullis/dataplane"
	"github.com/portcullis/portcullis/dataplane/api"
	"github.com/portcullis/portcullis/dataplane/model"
)

// Env is what a command may touch.
type Env struct {
	Stdout, Stderr io.Writer
	Getenv         func(string) string
}

type command struct {
	name, args, help string
	run              func(ctx context.Context, c *cli, args []string) error
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
	{"status", "", "show the backend in use and why, counts and reconciler state (agent down: what is installed, from the kernel and -state-dir)", status},
	{"networks", "", "list networks (agent down: from -state-dir)", listOf("networks")},
	{"endpoints", "", "list endpoints (agent down: from -state-dir)", listOf("endpoints")},
	{"ports", "", "list port mappings (agent down: from -state-dir)", listOf("ports")},
	{"links", "", "list links with their environment variables (agent down: from -state-dir)", listOf("links")},
	{"flows", "[-addr IP] [-port N] [-proto P]", "list connection-tracking and NAT entries (agent down: from the pinned maps or the conntrack table)", flows},
	{"drops", "", "list drop counters by reason and endpoint (agent down: from the pinned maps or the nft counters)", drops},
	{"maps", "[-bpffs DIR] [-dump NAME]", "list the pinned BPF maps (read from bpffs, works with the agent down)", maps},
	{"trace", "[-bpffs DIR] [-type drop,nat] [-reason R] [-addr IP] [-port N] [-proto P] [-endpoint ID] [-count N] [-timeout D]", "print live drops and new translations from the eBPF datapath (from bpffs, works with the agent down)", trace},
	{"publish", "ID ENDPOINT [HOSTIP:]HOSTPORT[-END]:PORT[-END][/PROTO]", "publish a port (like docker -p; needs the agent)", publish},
	{"unpublish", "ID", "remove a port mapping (needs the agent)", unpublish},
	{"link", "PARENT CHILD ALIAS", "link parent to child under alias; prints env and hosts line (needs the agent)", link},
	{"unlink", "PARENT ALIAS", "remove a link (needs the agent)", unlink},
	{"flush-flows", "[-addr IP] [-port N] [-proto P]", "delete connection-tracking entries, all or those selected (needs the agent)", flushFlows},
	{"uninstall", "[-state-dir DIR] [-bpffs DIR]", "remove everything portcullisd created (the agent must be stopped)", uninstall},
}

func init() {
	// completion lists the table it is in, so it joins it at init.
	commands = append(commands, command{"completion", "bash", "print a bash completion script: source <(pcctl completion bash)", completion})
}

func completion(_ context.Context, c *cli, args []string) error {
	if err := wantArgs(args, 1, "bash"); err != nil {
		return err
	}
	if args[0] != "bash" {
		return fmt.Errorf("shell %q: only bash is supported", args[0])
	}
	names := make([]string, len(commands))
	for i, cmd := range commands {
		names[i] = cmd.name
	}
	_, err := fmt.Fprintf(c.env.Stdout, `# bash completion for pcctl
_pcctl() {
  local cur=${COMP_WORDS[COMP_CWORD]} i
  for ((i = 1; i < COMP_CWORD; i++)); do
    case ${COMP_WORDS[i]} in -*) ;; *) COMPREPLY=($(compgen -W "--help -o" -- "$cur")); return;; esac
  done
  COMPREPLY=($(compgen -W "%s -o -socket -state-dir -bpffs" -- "$cur"))
}
complete -F _pcctl pcctl
`, strings.Join(names, " "))
	return err
}

// Run executes pcctl with args (without the program name).
func Run(ctx context.Context, args []string, env Env) error {
	fs := flag.NewFlagSet("pcctl", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	envOr := func(name, def string) string {
		if v := env.Getenv(name); v != "" {
			return v
		}
		return def
	}
	socket := fs.String("socket", envOr("PORTCULLIS_SOCKET", api.DefaultSocket), "agent socket (env PORTCULLIS_SOCKET)")
	output := fs.String("o", "table", "output format: table or json")
	stateDir := fs.String("state-dir", envOr("PORTCULLIS_STATE_DIR", DefaultStateDir),
		"the agent's state directory, read when it does not answer (env PORTCULLIS_STATE_DIR)")
	bpffs := fs.String("bpffs", envOr("PORTCULLIS_BPFFS", DefaultBPFFS),
		"the agent's bpffs directory, read when it does not answer (env PORTCULLIS_BPFFS)")
	fs.Usage = func() { usage(env.Stderr, fs) }
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *output != "table" && *output != "json" {
		return fmt.Errorf("-o %q: use table or json", *output)
	}
	if fs.NArg() == 0 {
		usage(env.Stderr, fs)
		return errors.New("no command given")
	}
	c := &cli{env: env, client: api.NewClient(*socket), socket: *socket, output: *output, stateDir: *stateDir, bpffs: *bpffs}
	name, rest := fs.Arg(0), fs.Args()[1:]
	for _, cmd := range commands {
		if cmd.name == name {
			if len(rest) == 1 && (rest[0] == "--help" || rest[0] == "-h") {
				fmt.Fprintf(env.Stdout, "usage: pcctl %s %s\n\n%s\n", cmd.name, cmd.args, cmd.help)
				return nil
			}
			return cmd.run(ctx, c, rest)
		}
	}
	return fmt.Errorf("unknown command %q: run pcctl -h for the list", name)
}

// The agent's defaults (portcullisd -state-dir, -bpffs).
const (
	DefaultStateDir = "/var/lib/portcullis"
	DefaultBPFFS    = "/sys/fs/bpf/portcullis"
)

func usage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprintf(w, "usage: pcctl [flags] COMMAND [ARGS]\n\ncommands:\n")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-11s %s\n", c.name, c.help)
	}
	fmt.Fprintf(w, "\nThe read-only commands ask portcullisd; when it does not answer on its\n"+
		"socket they read -state-dir, the maps pinned in -bpffs and the nft and\n"+
		"conntrack tables of the current network namespace instead, and say so on\n"+
		"stderr. Commands that change state need the agent.\n")
	fmt.Fprintf(w, "\nflags:\n")
	fs.PrintDefaults()
}

func wantArgs(args []string, n int, form string) error {
	if len(args) != n {
		return fmt.Errorf("want %d arguments: %s", n, form)
	}
	return nil
}

func (c *cli) print(v any, table func(w io.Writer)) error {
	if c.output == "json" {
		enc := json.NewEncoder(c.env.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	tw := tabwriter.NewWriter(c.env.Stdout, 0, 4, 2, ' ', 0)
	table(tw)
	return tw.Flush()
}

func status(ctx context.Context, c *cli, args []string) error {
	st, err := c.client.Status(ctx)
	if agentDown(err) {
		st, err = c.offlineStatus()
	} else if err == nil {
		st["agent"] = "running (answering on " + c.socket + ")"
	}
	if err != nil {
		return err
	}
	return c.print(st, func(w io.Writer) { printTree(w, "", st) })
}

func printTree(w io.Writer, indent string, m map[string]any) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if sub, ok := m[k].(map[string]any); ok {
			fmt.Fprintf(w, "%s%s:\n", indent, k)
			printTree(w, indent+"  ", sub)
			continue
		}
		fmt.Fprintf(w, "%s%s:\t%v\n", indent, k, m[k])
	}
}

func listOf(kind string) func(ctx context.Context, c *cli, args []string) error {
	return func(ctx context.Context, c *cli, args []string) error {
		var rows []map[string]any
		err := c.client.Do(ctx, "GET", "/v1/"+kind, nil, &rows)
		if agentDown(err) {
			rows, err = c.stateRows(kind)
		}
		if err != nil {
			return err
		}
		cols := columns[kind]
		return c.print(rows, func(w io.Writer) {
			fmt.Fprintln(w, strings.ToUpper(strings.Join(cols, "\t")))
			for _, r := range rows {
				vals := make([]string, len(cols))
				for i, col := range cols {
					vals[i] = cell(r[col])
				}
				fmt.Fprintln(w, strings.Join(vals, "\t"))
			}
		})
	}
}

var columns = map[string][]string{
	"networks":  {"name", "bridge", "subnet", "gateway", "subnet6", "icc", "masquerade", "snat_ip"},
	"endpoints": {"id", "network", "ip", "ip6", "mac", "host_veth", "name"},
	"ports":     {"id", "endpoint", "proto", "host_ip", "host_port", "host_port_range", "port", "port_range"},
	"links":     {"parent", "alias", "child", "hosts"},
}

func cell(v any) string {
	switch v := v.(type) {
	case nil:
		return "-"
	case float64:
		return fmt.Sprint(int64(v))
	case []any:
		parts := make([]string, len(v))
		for i, x := range v {
			parts[i] = cell(x)
		}
		return strings.Join(parts, ",")
	}
	return fmt.Sprint(v)
}

func publish(ctx context.Context, c *cli, args []string) error {
	if err := wantArgs(args, 3, "ID ENDPOINT [HOSTIP:]HOSTPORT:PORT[/PROTO]"); err != nil {
		return err
	}
	p, err := ParsePublish(args[2])
	if err != nil {
		return err
	}
	p.ID, p.Endpoint = args[0], args[1]
	got, err := c.client.PutPort(ctx, p)
	if err != nil {
		return c.needAgent("publish", err)
	}
	return c.print(got, func(w io.Writer) { fmt.Fprintf(w, "published %s\n", args[2]) })
}

// ParsePublish parses docker's -p syntax: [HOSTIP:]HOSTPORT[-END]:PORT[-END][/PROTO].
func ParsePublish(s string) (model.PortMapping, error) {
	var p model.PortMapping
	spec, proto, _ := strings.Cut(s, "/")
	p.Proto = "tcp"
	if proto != "" {
		p.Proto = proto
	}
	i := strings.LastIndex(spec, ":")
	if i < 0 {
		return p, fmt.Errorf("port spec %q: want [HOSTIP:]HOSTPORT:PORT[/PROTO], such as 8080:80", s)
	}
	host, cport := spec[:i], spec[i+1:]
	if j := strings.LastIndex(host, ":"); j >= 0 {
		p.HostIP, host = strings.Trim(host[:j], "[]"), host[j+1:]
	}
	var err error
	if strings.Contains(host, "-") {
		p.HostPortRange, p.PortRange = host, cport
	} else if p.HostPort, err = atoi("host port", host); err == nil {
		p.Port, err = atoi("port", cport)
	}
	return p, err
}

func atoi(what, s string) (int, error) {
	var n int
	if _, err := fmt.Sscan(s, &n); err != nil {
		return 0, fmt.Errorf("%s %q is not a number", what, s)
	}
	return n, nil
}

func unpublish(ctx context.Context, c *cli, args []string) error {
	if err := wantArgs(args, 1, "ID"); err != nil {
		return err
	}
	return c.needAgent("unpublish", c.client.DeletePort(ctx, args[0]))
}

func link(ctx context.Context, c *cli, args []string) error {
	if err := wantArgs(args, 3, "PARENT CHILD ALIAS"); err != nil {
		return err
	}
	l, err := c.client.PutLink(ctx, model.Link{Parent: args[0], Child: args[1], Alias: args[2]})
	if err != nil {
		return c.needAgent("link", err)
	}
	return c.print(l, func(w io.Writer) {
		for _, e := range l.Env {
			fmt.Fprintln(w, e)
		}
		fmt.Fprintln(w, l.Hosts)
	})
}

func unlink(ctx context.Context, c *cli, args []string) error {
	if err := wantArgs(args, 2, "PARENT ALIAS"); err != nil {
		return err
	}
	return c.needAgent("unlink", c.client.DeleteLink(ctx, args[0], args[1]))
}

// flowQuery parses the flow filter flags into the query of /v1/flows.
func flowQuery(name string, args []string, stderr io.Writer) (url.Values, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "", "only flows with this address on either side")
	port := fs.Int("port", 0, "only flows with this port on either side")
	proto := fs.String("proto", "", "only flows of this protocol: tcp, udp, sctp, icmp, icmpv6")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	q := url.Values{}
	if *addr != "" {
		q.Set("addr", *addr)
	}
	if *port != 0 {
		q.Set("port", strconv.Itoa(*port))
	}
	if *proto != "" {
		q.Set("proto", *proto)
	}
	return q, nil
}

// encode is q as the end of a path: "" or "?...".
func encode(q url.Values) string {
	if len(q) == 0 {
		return ""
	}
	return "?" + q.Encode()
}

func flows(ctx context.Context, c *cli, args []string) error {
	q, err := flowQuery("flows", args, c.env.Stderr)
	if err != nil {
		return err
	}
	var list []dataplane.Flow
	err = c.client.Do(ctx, "GET", "/v1/flows"+encode(q), nil, &list)
	if agentDown(err) {
		// The filter is checked as the agent checks it.
		var f dataplane.FlowFilter
		if f, err = api.ParseFlowFilter(q); err == nil {
			list, err = c.offlineFlows(ctx, f)
		}
	}
	if err != nil {
		return err
	}
	return c.print(list, func(w io.Writer) {
		fmt.Fprintln(w, "PROTO\tSOURCE\tDESTINATION\tREPLY FROM\tREPLY TO\tSTATE\tNAT\tEXPIRES")
		for _, f := range list {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", f.Proto, f.Orig[0], f.Orig[1], f.Reply[0], f.Reply[1],
				cell(nilIfEmpty(f.State)), cell(nilIfEmpty(strings.Join(f.NAT, ","))), f.Expires)
		}
	})
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func flushFlows(ctx context.Context, c *cli, args []string) error {
	q, err := flowQuery("flush-flows", args, c.env.Stderr)
	if err != nil {
		return err
	}
	var res map[string]int
	if err := c.client.Do(ctx, "DELETE", "/v1/flows"+encode(q), nil, &res); err != nil {
		return c.needAgent("flush-flows", err)
	}
	return c.print(res, func(w io.Writer) { fmt.Fprintf(w, "flushed %d flows\n", res["flushed"]) })
}

func drops(ctx context.Context, c *cli, args []string) error {
	var list []dataplane.Drop
	err := c.client.Do(ctx, "GET", "/v1/drops", nil, &list)
	if agentDown(err) {
		list, err = c.offlineDrops(ctx)
	}
	if err != nil {
		return err
	}
	return c.print(list, func(w io.Writer) {
		fmt.Fprintln(w, "REASON\tENDPOINT\tPACKETS\tBYTES")
		for _, d := range list {
			fmt.Fprintf(w, "%s\t%s\t%d\t%d\n", d.Reason, cell(nilIfEmpty(d.Endpoint)), d.Packets, d.Bytes)
		}
	})
}
