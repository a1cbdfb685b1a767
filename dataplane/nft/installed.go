package nft

import (
	"fmt"

	"github.com/google/nftables"
	"github.com/vishvananda/netns"
)

// What a reader other than the backend (pcctl with the agent down) may
// learn of the tables a backend left in the kernel. Everything here only
// reads, in the network namespace of the calling thread.

// withCurrentNS runs fn with an nftables connection to the network
// namespace of the calling thread. The connection names the namespace by
// a handle, so it holds whichever thread its sockets are opened on.
func withCurrentNS(fn func(c *nftables.Conn) error) error {
	h, err := netns.Get()
	if err != nil {
		return fmt.Errorf("nftables: get current network namespace: %w", err)
	}
	defer h.Close()
	c, err := nftables.New(nftables.WithNetNSFd(int(h)))
	if err != nil {
		return fmt.Errorf("open nftables netlink socket: %w", err)
	}
	return fn(c)
}

// InstalledModes returns the modes of which a table exists in the
// network namespace of the calling thread: ModeFull where the nftables
// backend programmed the node, ModeLocal where the eBPF backend's
// companion did.
func InstalledModes() ([]Mode, error) {
	var out []Mode
	err := withCurrentNS(func(c *nftables.Conn) error {
		have, err := c.ListTables()
		if err != nil {
			return fmt.Errorf("list nft tables: %w", err)
		}
		for _, m := range modes {
			if len(present(have, m)) > 0 {
				out = append(out, m)
			}
		}
		return nil
	})
	return out, err
}

// TableNames returns the tables of mode m as nft names them, "inet
// portcullis" and so on, as the backend's status lists them.
func TableNames(m Mode) []string {
	var names []string
	for _, t := range tables(m) {
		names = append(names, famName(t.fam)+" "+t.name)
	}
	return names
}

// Name is the name of a backend in mode m: "nftables" or "nftables-local".
func (m Mode) Name() string { return m.name() }
