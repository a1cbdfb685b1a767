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
// named counter of its reason (drop-loopback, drop-inbound, drop-spoof,
// drop-icc), read here with one dump per table. Drops are not attributed to
// endpoints: that would take a counter object per endpoint. Before the first
// sync, when the tables do not exist, there is nothing to report.
func (b *Backend) Drops(ctx context.Context) ([]dataplane.Drop, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b.mu.Lock()
	counts, err := b.readCounters(b.mode)
	b.mu.Unlock()
	if err != nil {
		return nil, err
	}
	var out []dataplane.Drop
	for _, t := range tables(b.mode) {
		for _, c := range t.counters {
			if v, ok := counts[c.name()]; ok {
				out = append(out, dataplane.Drop{Reason: c.reason, Packets: v.packets, Bytes: v.bytes})
			}
		}
	}
	return out, nil
}

// readCounters returns the counter objects of the tables of modes ms by
// name; a name found in the tables of an earlier mode of ms wins. A table
// that does not exist dumps nothing.
func (b *Backend) readCounters(ms ...Mode) (map[string]dropCount, error) {
	c, err := b.conn(0)
	if err != nil {
		return nil, err
	}
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
	counts, err := b.readCounters(append([]Mode{b.mode}, b.mode.others()...)...)
	if err != nil {
		b.log.Warn("drop counters restart from zero", "err", err)
		return nil
	}
	return counts
}
