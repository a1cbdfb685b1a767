package ctl

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"

	"github.com/portcullis/portcullis/dataplane"
	"github.com/portcullis/portcullis/dataplane/api"
)

// flowFlags registers the flow filter flags on fs; query reads them, once
// parsed, as the query of /v1/flows.
func flowFlags(fs *flag.FlagSet) (query func() url.Values) {
	addr := fs.String("addr", "", "only flows with this address on either side")
	port := fs.Int("port", 0, "only flows with this port on either side")
	proto := fs.String("proto", "", "only flows of this protocol: "+strings.Join(protos, ", "))
	return func() url.Values {
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
		return q
	}
}

// protos are the protocols the flow and trace filters take.
var protos = []string{"tcp", "udp", "sctp", "icmp", "icmpv6"}

// encode is q as the end of a path: "" or "?...".
func encode(q url.Values) string {
	if len(q) == 0 {
		return ""
	}
	return "?" + q.Encode()
}

func flows(fs *flag.FlagSet, c *cli) runFunc {
	query := flowFlags(fs)
	return func(ctx context.Context, args []string) error {
		if err := noArgs(args); err != nil {
			return err
		}
		q := query()
		var list []dataplane.Flow
		err := c.client.Do(ctx, "GET", "/v1/flows"+encode(q), nil, &list)
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
					cell(nilIfEmpty(f.State)), cell(nilIfEmpty(strings.Join(f.NAT, ","))), humanDuration(f.Expires))
			}
		})
	}
}

func flushFlows(fs *flag.FlagSet, c *cli) runFunc {
	query := flowFlags(fs)
	return func(ctx context.Context, args []string) error {
		if err := noArgs(args); err != nil {
			return err
		}
		var res map[string]int
		if err := c.client.Do(ctx, "DELETE", "/v1/flows"+encode(query()), nil, &res); err != nil {
			return c.needAgent("flush-flows", err)
		}
		return c.print(res, func(w io.Writer) { fmt.Fprintf(w, "flushed %d flows\n", res["flushed"]) })
	}
}

func drops(ctx context.Context, c *cli, args []string) error {
	if err := noArgs(args); err != nil {
		return err
	}
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
			fmt.Fprintf(w, "%s\t%s\t%d\t%s\n", d.Reason, cell(nilIfEmpty(d.Endpoint)), d.Packets, dropBytes(d))
		}
	})
}

// dropBytes is a drop counter's bytes for people: "-" where the backend
// counts packets only (the eBPF datapath), so zero bytes for packets.
func dropBytes(d dataplane.Drop) string {
	if d.Bytes == 0 && d.Packets > 0 {
		return "-"
	}
	return humanSize(d.Bytes)
}
