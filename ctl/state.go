package ctl

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/portcullis/portcullis/dataplane/model"
)

func status(ctx context.Context, c *cli, args []string) error {
	if err := noArgs(args); err != nil {
		return err
	}
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

func listOf(kind string) func(ctx context.Context, c *cli, args []string) error {
	return func(ctx context.Context, c *cli, args []string) error {
		rows, err := c.rows(ctx, kind)
		if err != nil {
			return err
		}
		if rows, err = selectRows(kind, rows, args); err != nil {
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

// rows lists the objects of kind (networks, endpoints, ports, links) from
// the agent, or from the state directory when it does not answer.
func (c *cli) rows(ctx context.Context, kind string) ([]map[string]any, error) {
	var rows []map[string]any
	err := c.client.Do(ctx, "GET", "/v1/"+kind, nil, &rows)
	if agentDown(err) {
		rows, err = c.stateRows(kind)
	}
	return rows, err
}

// selectRows keeps the rows whose key (columns[kind][0]: a network's name,
// a link's parent, the others' id) is one of keys, all rows without keys.
// A key no row has is an error: a typo should not look like an empty list.
func selectRows(kind string, rows []map[string]any, keys []string) ([]map[string]any, error) {
	if len(keys) == 0 {
		return rows, nil
	}
	col := columns[kind][0]
	out := []map[string]any{}
	for _, k := range keys {
		n := len(out)
		for _, r := range rows {
			if r[col] == k {
				out = append(out, r)
			}
		}
		if len(out) == n {
			return nil, fmt.Errorf("no %s with %s %q: see pcctl %s", strings.TrimSuffix(kind, "s"), col, k, kind)
		}
	}
	return out, nil
}

var columns = map[string][]string{
	"networks":  {"name", "bridge", "subnet", "gateway", "subnet6", "icc", "masquerade", "snat_ip", "internal", "source"},
	"endpoints": {"id", "network", "ip", "ip6", "mac", "host_veth", "name", "source"},
	"ports":     {"id", "endpoint", "proto", "host_ip", "host_port", "host_port_range", "port", "port_range", "source"},
	"links":     {"parent", "alias", "child", "hosts", "source"},
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
