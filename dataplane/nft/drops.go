package nft

import (
	"context"
	"fmt"

	"github.com/google/nftables"

	"github.com/portcullis/portcullis/dataplane"
)

// dropCount is the value of one drop counter.
type dropCount struct{ packets, bytes uint64 }

// Drops implements dataplane.DropCounter: every drop rule counts into the
// named counter of its reason (drop-loopback, drop-inbound, drop-stale, drop-spoof,
// drop-icc), read here with one dump per table. Drops are not attributed to
// endpoints: that would take a counter object per endpoint. Before the first
// sync, when the tables do not exist, there is nothing to report.
func (b *Backend) Drops(ctx context.Context) ([]dataplane.Drop, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	c, err := b.conn(0)
	if err != nil {
		return nil, err
	}
	return modeDrops(c, b.mode)
}

// ReadDrops returns the drop counters of the tables of mode m in the
// network namespace of the calling thread, as a backend in that mode
// reports them, without one: pcctl reads them so while the agent is down.
// It only reads.
func ReadDrops(ctx context.Context, m Mode) ([]dataplane.Drop, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if !m.valid() {
		return nil, fmt.Errorf("nftables: unknown mode %v", m)
	}
	var out []dataplane.Drop
	err := withCurrentNS(func(c *nftables.Conn) (err error) {
		out, err = modeDrops(c, m)
		return err
	})
	return out, err
}

// modeDrops reads the drop counters of the tables of m over c.
func modeDrops(c *nftables.Conn, m Mode) ([]dataplane.Drop, error) {
	counts, err := readCounters(c, m)
	if err != nil {
		return nil, err
	}
	var out []dataplane.Drop
	for _, t := range tables(m) {
		for _, cd := range t.counters {
			if v, ok := counts[cd.name()]; ok {
				out = append(out, dataplane.Drop{Reason: cd.reason, Packets: v.packets, Bytes: v.bytes})
			}
		}
	}
	return out, nil
}

// readCounters returns the counter objects of the tables of modes ms by
// name, read over c; a name found in the tables of an earlier mode of ms
// wins. A table that does not exist dumps nothing.
func readCounters(c *nftables.Conn, ms ...Mode) (map[string]dropCount, error) {
	out := map[string]dropCount{}
	for _, m := range ms {
		for _, t := range tables(m) {
			objs, err := c.GetObjects(t.table())
			if err != nil {
				return nil, fmt.Errorf("read drop counters of table %s %s: %w", famName(t.fam), t.name, err)
			}
			for _, o := range objs {
				co, ok := o.(*nftables.CounterObj)
				if !ok {
					continue
				}
				if _, seen := out[co.Name]; !seen {
					out[co.Name] = dropCount{packets: co.Packets, bytes: co.Bytes}
				}
			}
		}
	}
	return out, nil
}

// carryCounters returns the counter values a full sync re-creates the
// counters with, so they survive it (and an agent restart). Drops between
// this read and the commit are lost; a read that fails costs the history
// of the counters, never the sync. A counter the mode's tables lack is
// carried over from the other mode's (drop-loopback, when the agent
// switches between the nftables and the eBPF backend).
func (b *Backend) carryCounters() map[string]dropCount {
	c, err := b.conn(0)
	var counts map[string]dropCount
	if err == nil {
		counts, err = readCounters(c, append([]Mode{b.mode}, b.mode.others()...)...)
	}
	if err != nil {
		b.log.Warn("drop counters restart from zero", "err", err)
		return nil
	}
	return counts
}
