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
func uninstall(fs *flag.FlagSet, c *cli) runFunc {
	stateDir := fs.String("state-dir", c.stateDir, "the agent's state directory (default: pcctl -state-dir)")
	bpffs := fs.String("bpffs", c.bpffs, "the agent's bpffs directory (default: pcctl -bpffs)")
	return func(ctx context.Context, args []string) error {
		if err := noArgs(args); err != nil {
			return err
		}
		return c.uninstall(ctx, agent.Config{Socket: c.socket, StateDir: *stateDir, BPFFS: *bpffs})
	}
}

func (c *cli) uninstall(ctx context.Context, cfg agent.Config) error {
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
