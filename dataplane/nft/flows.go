package nft

import (
	"context"
	"errors"
	"fmt"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/portcullis/portcullis/dataplane"
	"github.com/portcullis/portcullis/dataplane/ctflows"
)

// Flows implements dataplane.FlowTable: the conntrack entries of the
// backend's namespace that f selects. The translation is netfilter's own,
// so its conntrack table is the flow table.
func (b *Backend) Flows(ctx context.Context, f dataplane.FlowFilter) ([]dataplane.Flow, error) {
	var flows []dataplane.Flow
	err := b.inOwnNS(ctx, func() (err error) {
		flows, err = ctflows.List(ctx, f)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list flows: %w", err)
	}
	return flows, nil
}

// FlushFlows implements dataplane.FlowTable: it deletes the conntrack
// entries that f selects and returns how many. The next packet of a flushed
// connection is translated afresh by the current mappings.
func (b *Backend) FlushFlows(ctx context.Context, f dataplane.FlowFilter) (int, error) {
	var n int
	err := b.inOwnNS(ctx, func() (err error) {
		n, err = ctflows.Flush(ctx, f)
		return err
	})
	if err != nil {
		return n, fmt.Errorf("flush flows: %w", err)
	}
	return n, nil
}

// inOwnNS runs fn on a thread inside the backend's namespace (inNS) without
// holding the backend's lock: a dump of a large conntrack table (the
// metrics read one per scrape) must not hold up Apply. The handle is
// duplicated under the lock, so a concurrent Close cannot make the thread
// enter whatever namespace reuses the descriptor.
func (b *Backend) inOwnNS(ctx context.Context, fn func() error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b.mu.Lock()
	if !b.ns.IsOpen() {
		b.mu.Unlock()
		return errors.New("nftables backend is closed")
	}
	fd, err := unix.FcntlInt(uintptr(b.ns), unix.F_DUPFD_CLOEXEC, 0)
	b.mu.Unlock()
	if err != nil {
		return fmt.Errorf("duplicate network namespace handle: %w", err)
	}
	h := netns.NsHandle(fd)
	defer h.Close()
	return inNS(h, fn)
}
