package ctl

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/portcullis/portcullis/cni"
)

// DefaultCNIConfDir is where Podman (CNI backend, as root), containerd and
// CRI-O read network configurations.
const DefaultCNIConfDir = "/etc/cni/net.d"

// cniConflist writes a portcullis-cni network configuration list: what
// `podman network create` would write, which Podman 4.3 refuses to do for
// a driver other than bridge, macvlan and ipvlan.
func cniConflist(fs *flag.FlagSet, c *cli) runFunc {
	var o cni.ConflistOptions
	dir := DefaultCNIConfDir
	fs.StringVar(&o.Subnet, "subnet", "", "IPv4 subnet of the containers (required), such as 10.89.0.0/24")
	fs.StringVar(&o.Subnet6, "subnet6", "", "IPv6 subnet of the containers (optional)")
	fs.StringVar(&o.Bridge, "bridge", "", "the agent network's bridge (default: the agent's choice)")
	fs.StringVar(&o.DataDir, "ipam-dir", "", "host-local's data directory (default: its own, /var/lib/cni/networks)")
	fs.StringVar(&dir, "dir", dir, "CNI configuration directory to write NAME.conflist in (Podman's network_config_dir); - prints it")
	return func(_ context.Context, args []string) error {
		if err := wantArgs(args, 1, "NAME -subnet SUBNET"); err != nil {
			return err
		}
		o.Name, o.Socket = args[0], c.socket
		b, err := cni.Conflist(o)
		if err != nil {
			return err
		}
		b = append(b, '\n')
		if dir == "-" {
			_, err := c.env.Stdout.Write(b)
			return err
		}
		return writeNew(filepath.Join(dir, o.Name+".conflist"), b, c)
	}
}

// writeNew writes path, which must not exist yet: a network's
// configuration is never replaced behind the containers using it.
func writeNew(path string, b []byte, c *cli) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, os.ErrExist) {
		return fmt.Errorf("%s exists: remove the network first (podman network rm), or choose another name", path)
	}
	if err != nil {
		return fmt.Errorf("write the configuration: %w (is -dir %s the runtime's CNI configuration directory?)", err, filepath.Dir(path))
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return fmt.Errorf("write %s: %w", path, err)
	}
	fmt.Fprintf(c.env.Stdout, "wrote %s\n", path)
	return nil
}
