package ctl

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/portcullis/portcullis/dataplane/ebpf"
	"github.com/portcullis/portcullis/dataplane/nft"
)

// trace prints the eBPF datapath's live events, like cilium monitor: every
// drop with its reason, and every new translated flow, one line each. It
// reads the ring buffer the agent pinned (pc_events), so it works with the
// agent down; while it runs, the datapath writes events (pc_trace_cfg),
// and when it ends they stop. It changes nothing else.
//
// Endpoint ids come from the agent when it answers; without it, -endpoint
// takes the endpoint's host veth (name or ifindex) and lines show interface
// names.
func trace(fs *flag.FlagSet, c *cli) runFunc {
	bpffs := fs.String("bpffs", c.bpffs, "the agent's bpffs directory (default: pcctl -bpffs)")
	kinds := fs.String("type", "drop,nat", "events: drop (every drop), nat (every new translated flow), or both")
	reason := fs.String("reason", "", "only drops for these reasons, comma-separated; a name also selects its finer ones (spoof: spoof-ip, spoof-mac, ...)")
	addr := fs.String("addr", "", "only events with this address on either side, translated or not")
	port := fs.Int("port", 0, "only events with this port on either side")
	proto := fs.String("proto", "", "only events of this protocol: "+strings.Join(protos, ", "))
	endpoint := fs.String("endpoint", "", "only events on this endpoint's veth or with its addresses (an id, or without the agent its host veth)")
	count := fs.Int("count", 0, "stop after this many events (0: until interrupted)")
	timeout := fs.Duration("timeout", 0, "stop after this long (0: until interrupted)")
	return func(ctx context.Context, args []string) error {
		if err := noArgs(args); err != nil {
			return err
		}
		f, err := newTraceFilter(*kinds, *reason, *addr)
		if err != nil {
			return err
		}
		f.port, f.proto = uint16(*port), *proto
		return c.follow(ctx, f, traceOpts{bpffs: *bpffs, kinds: *kinds, endpoint: *endpoint, count: *count, timeout: *timeout})
	}
}

// newTraceFilter reads -type, -reason and -addr.
func newTraceFilter(kinds, reason, addr string) (traceFilter, error) {
	var f traceFilter
	var err error
	if f.kinds, err = parseTraceKinds(kinds); err != nil {
		return f, err
	}
	if reason != "" {
		if !f.kinds.Drops {
			return f, errors.New("-reason selects drops, but -type leaves them out")
		}
		f.reasons = strings.Split(reason, ",")
	}
	if addr != "" {
		a, err := netip.ParseAddr(addr)
		if err != nil {
			return f, fmt.Errorf("-addr: %w", err)
		}
		f.addrs = []netip.Addr{a.Unmap()}
	}
	return f, nil
}

// traceOpts are trace's flags beyond the filter.
type traceOpts struct {
	bpffs, kinds, endpoint string
	count                  int
	timeout                time.Duration
}

// follow prints the events that pass f until opts.count of them did, or the
// timeout, or an interrupt.
func (c *cli) follow(ctx context.Context, f traceFilter, opts traceOpts) error {
	// Interrupted, trace returns like at its end: the deferred Close
	// switches the events off (else they would stop only when the lease
	// runs out, a few seconds later).
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if opts.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, opts.timeout)
		defer cancel()
	}

	names := c.endpointNames(ctx)
	tr, err := ebpf.OpenTracer(opts.bpffs, f.kinds)
	if err != nil {
		if modes, _ := nft.InstalledModes(); slices.Contains(modes, nft.ModeFull) {
			return fmt.Errorf("the nftables backend is in use here, and trace reads the eBPF datapath's event ring: "+
				"count drops with pcctl drops, and follow packets with nftables' own tracing "+
				"(nft monitor trace, after a rule that sets meta nftrace) (%w)", err)
		}
		return err
	}
	defer tr.Close()
	if opts.endpoint != "" {
		if err := f.selectEndpoint(opts.endpoint, names, tr); err != nil {
			return err
		}
	}
	fmt.Fprintf(c.env.Stderr, "tracing %s from %s; interrupt to stop\n", opts.kinds, opts.bpffs)
	for n := 0; opts.count == 0 || n < opts.count; {
		ev, err := tr.Next(ctx)
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			return nil // -timeout, or interrupted: the normal ends
		}
		if err != nil {
			return err
		}
		if !f.match(ev) {
			continue
		}
		n++
		if err := c.printEvent(ev, names.ifname(ev.Ifindex)); err != nil {
			return err
		}
	}
	return nil
}

func parseTraceKinds(s string) (ebpf.TraceKinds, error) {
	var k ebpf.TraceKinds
	for _, w := range strings.Split(s, ",") {
		switch strings.TrimSpace(w) {
		case "drop", "drops":
			k.Drops = true
		case "nat":
			k.NAT = true
		default:
			return k, fmt.Errorf("-type %q: want drop, nat or drop,nat", s)
		}
	}
	return k, nil
}

// traceFilter selects events; zero fields select everything.
type traceFilter struct {
	kinds   ebpf.TraceKinds
	reasons []string
	addrs   []netip.Addr // any of them
	port    uint16
	proto   string
	ifindex uint32 // with -endpoint: or any of epAddrs
	epAddrs []netip.Addr
}

func (f traceFilter) match(ev ebpf.TraceEvent) bool {
	if ev.Kind == "drop" && len(f.reasons) > 0 && !reasonIn(ev.Reason, f.reasons) {
		return false
	}
	if ev.Kind != "drop" && len(f.reasons) > 0 {
		return false
	}
	if f.proto != "" && ev.Proto != f.proto {
		return false
	}
	has := func(want []netip.Addr) bool {
		for _, ap := range ev.Addrs() {
			for _, a := range want {
				if ap.Addr() == a {
					return true
				}
			}
		}
		return false
	}
	if len(f.addrs) > 0 && !has(f.addrs) {
		return false
	}
	if f.port != 0 {
		hit := false
		for _, ap := range ev.Addrs() {
			hit = hit || ap.Port() == f.port
		}
		if !hit {
			return false
		}
	}
	if f.ifindex != 0 && ev.Ifindex != f.ifindex && !has(f.epAddrs) {
		return false
	}
	return true
}

// reasonIn: r is one of want, or a finer reason of one (spoof-ip for spoof).
func reasonIn(r string, want []string) bool {
	for _, w := range want {
		w = strings.TrimSpace(w)
		if r == w || strings.HasPrefix(r, w+"-") {
			return true
		}
	}
	return false
}

// epNames relates endpoints and their host veths, as the agent knows them.
type epNames struct {
	byVeth map[string]string // host veth -> endpoint id
	veths  map[string]string // endpoint id -> host veth
}

// endpointNames asks the agent for its endpoints, briefly: trace works
// without it.
func (c *cli) endpointNames(ctx context.Context) epNames {
	n := epNames{byVeth: map[string]string{}, veths: map[string]string{}}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	eps, err := c.client.Endpoints(ctx)
	if err != nil {
		return n
	}
	for _, e := range eps {
		if e.HostVeth != "" {
			n.byVeth[e.HostVeth] = e.ID
			n.veths[e.ID] = e.HostVeth
		}
	}
	return n
}

// ifname names an interface, with its endpoint when the agent said.
func (n epNames) ifname(ifindex uint32) string {
	ifi, err := net.InterfaceByIndex(int(ifindex))
	if err != nil {
		return "if" + strconv.Itoa(int(ifindex))
	}
	if id, ok := n.byVeth[ifi.Name]; ok {
		return ifi.Name + "(" + id + ")"
	}
	return ifi.Name
}

// selectEndpoint resolves -endpoint: an endpoint id the agent knows, else a
// host veth name or ifindex. Its addresses come from the datapath's own
// record of the veth.
func (f *traceFilter) selectEndpoint(name string, names epNames, tr *ebpf.Tracer) error {
	veth := name
	if v, ok := names.veths[name]; ok {
		veth = v
	}
	if ifi, err := net.InterfaceByName(veth); err == nil {
		f.ifindex = uint32(ifi.Index)
	} else if i, err := strconv.Atoi(veth); err == nil && i > 0 {
		f.ifindex = uint32(i)
	} else {
		return fmt.Errorf("-endpoint %q: no such endpoint (is the agent up?) nor interface", name)
	}
	f.epAddrs = tr.EndpointAddrs(f.ifindex)
	if f.epAddrs == nil {
		return fmt.Errorf("-endpoint %q: interface %s (ifindex %d) is no endpoint's host veth", name, veth, f.ifindex)
	}
	return nil
}

// traceLine is an event as -o json prints it, one object per line.
type traceLine struct {
	ebpf.TraceEvent
	Interface string `json:"interface"`
}

func (c *cli) printEvent(ev ebpf.TraceEvent, ifname string) error {
	if c.output == "json" {
		return json.NewEncoder(c.env.Stdout).Encode(traceLine{ev, ifname})
	}
	what := ev.Kind
	if ev.Reason != "" {
		what += " " + ev.Reason
	}
	line := fmt.Sprintf("%s %-22s %-16s", ev.Time.Format("15:04:05.000000"), what, ifname)
	if ev.Proto != "" {
		line += fmt.Sprintf(" %s %s -> %s", ev.Proto, ev.Src, ev.Dst)
	}
	if ev.NATSrc.IsValid() {
		line += fmt.Sprintf(" => %s -> %s", ev.NATSrc, ev.NATDst)
	}
	_, err := fmt.Fprintln(c.env.Stdout, line)
	return err
}
