package ctl

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/portcullis/portcullis/dataplane/agent"
)

// uninstall removes everything the agent ever created, like
// `portcullisd uninstall`. It refuses while an agent answers on the socket:
// the agent would put its state back.
func uninstall(ctx context.Context, c *cli, args []string) error {
	fs := flag.NewFlagSet("uninstall", flag.ContinueOnError)
	fs.SetOutput(c.env.Stderr)
	cfg := agent.Config{Socket: c.socket}
	fs.StringVar(&cfg.StateDir, "state-dir", c.stateDir, "the agent's state directory (default: pcctl -state-dir)")
	fs.StringVar(&cfg.BPFFS, "bpffs", c.bpffs, "the agent's bpffs directory (default: pcctl -bpffs)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if conn, err := net.DialTimeout("unix", cfg.Socket, time.Second); err == nil {
		conn.Close()
		return fmt.Errorf("portcullisd is running on %s: stop it first (systemctl stop portcullisd), then uninstall", cfg.Socket)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if err := agent.Uninstall(ctx, cfg, log); err != nil {
		return err
	}
	fmt.Fprintln(c.env.Stdout, "removed the dataplane's tables, programs, pins, interfaces and state")
	return nil
}
