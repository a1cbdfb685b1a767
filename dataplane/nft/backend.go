package nft

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/bits"
	"sync"
	"time"

	"github.com/vishvananda/netns"

	"github.com/portcullis/portcullis/dataplane"
	"github.com/portcullis/portcullis/dataplane/bgqueue"
	"github.com/portcullis/portcullis/dataplane/model"
)

// Options configure New.
type Options struct {
	// NetNS is the network namespace to program. Leave it zero to use the
	// namespace of the thread that calls New (the agent's own).
	NetNS netns.NsHandle
	// Log receives warnings that do not fail a sync (conntrack clean-up).
	Log *slog.Logger
	// PublishedMark is the one mark bit that labels connections DNATed by a
	// published port, in their conntrack mark and in the packet mark of
	// every packet that comes from a bridge, so that the ICC filter lets a
	// container reach a neighbour's published port when br_netfilter
	// bridges the translated packets (B9). Zero means DefaultPublishedMark.
	// Set another bit if software on the node already uses that one.
	// ModeLocal does not use it.
	PublishedMark uint32
	// Mode is ModeFull (the zero value: the whole dataplane) or ModeLocal
	// (only node-originated traffic, next to the eBPF backend). See Mode.
	Mode Mode
}

// DefaultPublishedMark is bit 24. It stays clear of the bits other
// software on a container host is known to use: kube-proxy 0x4000 and
// 0x8000, Cilium the 0x0f00 nibble, Tailscale the 0x00ff0000 byte
// (0x40000, 0x80000), Docker Swarm and wg-quick small fwmark values. Calico
// claims 0xffff0000 by default, Cilium also puts identities in the upper 16
// bits: no bit is free of those two, which are Kubernetes network plugins
// and are not expected next to a Docker replacement. Only ORing and testing
// the bit, the backend never disturbs the other bits of either mark.
const DefaultPublishedMark uint32 = 0x01000000

// Backend programs the nftables dataplane. It is safe for concurrent use,
// though the reconciler calls it one change at a time.
type Backend struct {
	mu    sync.Mutex
	ns    netns.NsHandle
	ownNS bool
	log   *slog.Logger

	refs     refs           // what the kernel holds, by refKey
	counts   map[string]int // elements per set, for Status
	needFull bool           // the last sync failed, or none happened yet
	saved    *uint32        // route_localnet before we set it
	mark     uint32         // Options.PublishedMark
	mode     Mode           // Options.Mode

	stats stats
	ct    *bgqueue.Queue[ctMatch] // deletes stale conntrack entries off the API path
}

type stats struct {
	lastSync      time.Time
	lastMode      string
	lastDuration  time.Duration
	lastError     string
	fullSyncs     uint64
	deltaSyncs    uint64
	failures      uint64
	ctDeleted     uint64
	ctPasses      uint64 // changes that queued a conntrack clean-up
	ctLastError   string
	lastDeltaElem int
	repaired      uint64 // full syncs that found the tables drifted
}

// New returns a backend for the namespace in opts. It touches nothing in the
// kernel until the first Apply, which is always a full sync.
func New(opts Options) (*Backend, error) {
	mark := opts.PublishedMark
	if mark == 0 {
		mark = DefaultPublishedMark
	}
	if bits.OnesCount32(mark) != 1 {
		return nil, fmt.Errorf("nftables backend: published mark %#x must be a single bit, e.g. %#x", mark, DefaultPublishedMark)
	}
	if !opts.Mode.valid() {
		return nil, fmt.Errorf("nftables backend: unknown mode %v", opts.Mode)
	}
	b := &Backend{ns: opts.NetNS, log: opts.Log, needFull: true, mark: mark, mode: opts.Mode,
		refs: refs{}, counts: map[string]int{}}
	if b.log == nil {
		b.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	b.ct = bgqueue.New(b.cleanConntrack)
	if b.ns <= 0 {
		// Pin the caller's namespace now: later calls may run on any thread.
		h, err := netns.Get()
		if err != nil {
			return nil, fmt.Errorf("nftables backend: get current network namespace: %w", err)
		}
		b.ns, b.ownNS = h, true
	}
	return b, nil
}

// Close releases the namespace handle New took. The kernel state stays.
func (b *Backend) Close() error {
	b.ct.Close() // before the namespace handle goes
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ownNS && b.ns.IsOpen() {
		b.ownNS = false
		return b.ns.Close()
	}
	return nil
}

// WaitConntrack blocks until the conntrack clean-up of every change
// applied so far has run (tests; an operator sees conntrack_deleted).
func (b *Backend) WaitConntrack() { b.ct.Wait() }

// The optional interfaces of package dataplane that the backend implements.
var (
	_ dataplane.Backend      = (*Backend)(nil)
	_ dataplane.DropCounter  = (*Backend)(nil)
	_ dataplane.FlowTable    = (*Backend)(nil)
	_ dataplane.FillReporter = (*Backend)(nil)
)

// Name implements dataplane.Backend: "nftables" in ModeFull,
// "nftables-local" in ModeLocal, so that a stack's status and logs tell the
// companion apart from the full backend.
func (b *Backend) Name() string { return b.mode.name() }

// Mode returns the mode the backend was created with.
func (b *Backend) Mode() Mode { return b.mode }

// Apply implements dataplane.Backend. A full sync re-creates the mode's
// tables (and deletes the other mode's) in one transaction; an incremental
// one sends only the element changes that d implies, in the mode's tables.
// A failed transaction changes nothing in the kernel and makes the next
// Apply a full sync, whatever the caller asks.
func (b *Backend) Apply(ctx context.Context, want *model.Resolved, d *model.Delta, full bool) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	start := time.Now()
	mode, err := "incremental", error(nil)
	if full || d == nil || b.needFull {
		mode, err = "full", b.fullSync(want)
	} else {
		err = b.deltaSync(d)
	}
	b.record(mode, start, err)
	return err
}

func (b *Backend) record(mode string, start time.Time, err error) {
	s := &b.stats
	s.lastSync, s.lastMode, s.lastDuration = start, mode, time.Since(start)
	s.lastError = ""
	if err != nil {
		s.failures++
		s.lastError = err.Error()
		b.needFull = true
		return
	}
	if mode == "full" {
		s.fullSyncs++
	} else {
		s.deltaSyncs++
	}
}

func (b *Backend) fullSync(want *model.Resolved) error {
	saved, err := b.savedLocalnet()
	if err != nil {
		return err
	}
	keep := el(setSavedLocalnet, vMark(saved))
	stale, err := b.staleTables()
	if err != nil {
		return err
	}
	carry := b.carryCounters()
	drifted := b.drifted()
	queued := 0
	c, err := b.connSized(func() int { return queued })
	if err != nil {
		return err
	}
	elems, queued, err := programFull(c, b.mode, want, []elem{keep}, b.mark, carry, stale)
	if err != nil {
		return fmt.Errorf("nft full sync: %w", err)
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nft full sync of %d elements: %w", len(elems), err)
	}
	b.refs, b.counts = elems, elems.counts(b.mode)
	b.needFull = false
	if drifted {
		b.stats.repaired++
	}
	// Only now that the raw drop of 127.0.0.0/8 (B11) is in place.
	if err := b.writeLocalnet(1); err != nil {
		return err
	}
	return nil
}

func (b *Backend) deltaSync(d *model.Delta) error {
	p := planDelta(b.mode, b.refs, d)
	b.stats.lastDeltaElem = len(p.dels) + len(p.adds)
	if len(p.dels)+len(p.adds) > 0 {
		c, err := b.conn(len(p.dels) + len(p.adds))
		if err != nil {
			return err
		}
		if err := programDelta(c, b.mode, p.dels, p.adds); err != nil {
			return fmt.Errorf("nft incremental sync: %w", err)
		}
		if err := c.Flush(); err != nil {
			return fmt.Errorf("nft incremental sync (%d deletions, %d additions): %w",
				len(p.dels), len(p.adds), err)
		}
	}
	p.commit(b.refs, b.counts)
	b.clearConntrack(d)
	return nil
}

// Uninstall implements dataplane.Backend: it restores route_localnet and
// deletes the tables of both modes, whichever the backend runs in.
// Restoring first means 127.0.0.0/8 is never routable without the raw drop
// rule.
func (b *Backend) Uninstall(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	saved, ok := b.saved, b.saved != nil
	if !ok {
		var v uint32
		if v, ok = b.readSavedSet(); ok {
			saved = &v
		}
	}
	if ok {
		if err := b.writeLocalnet(*saved); err != nil {
			return err
		}
	}
	stale, err := b.staleTables()
	if err != nil {
		return err
	}
	c, err := b.conn(0)
	if err != nil {
		return err
	}
	programUninstall(c, b.mode, stale)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("delete nft tables %s and %s: %w", TableName, LocalTableName, err)
	}
	b.refs, b.counts, b.saved, b.needFull = refs{}, map[string]int{}, nil, true
	return nil
}

// Status implements dataplane.Backend.
func (b *Backend) Status() map[string]any {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.stats
	counts := make(map[string]int, len(b.counts))
	for k, v := range b.counts {
		if v > 0 {
			counts[k] = v
		}
	}
	var names []string
	for _, t := range tables(b.mode) {
		names = append(names, famName(t.fam)+" "+t.name)
	}
	st := map[string]any{
		"backend":            b.Name(),
		"mode":               b.mode.String(),
		"tables":             names,
		"elements":           counts,
		"needs_full_sync":    b.needFull,
		"full_syncs":         s.fullSyncs,
		"incremental_syncs":  s.deltaSyncs,
		"failed_syncs":       s.failures,
		"last_sync_mode":     s.lastMode,
		"last_sync_duration": s.lastDuration.String(),
		"last_delta_ops":     s.lastDeltaElem,
		"conntrack_deleted":  s.ctDeleted,
		"conntrack_cleanups": s.ctPasses,
	}
	if b.mode == ModeFull {
		st["published_mark"] = markText(b.mark)
	}
	if !s.lastSync.IsZero() {
		st["last_sync"] = s.lastSync.UTC().Format(time.RFC3339Nano)
	}
	if s.lastError != "" {
		st["last_error"] = s.lastError
	}
	if s.ctLastError != "" {
		st["conntrack_last_error"] = s.ctLastError
	}
	if b.saved != nil {
		st["route_localnet_saved"] = *b.saved
	}
	return st
}

// Fill implements dataplane.FillReporter: the elements of every set and map
// of the mode's tables, from what the backend holds (no kernel dump). A plain
// interval element (a subnet) counts once, though the kernel stores it as
// a start and an end. nft sets have no fixed size, so Max is 0.
func (b *Backend) Fill() []dataplane.TableFill {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []dataplane.TableFill
	for _, t := range tables(b.mode) {
		for _, s := range t.sets {
			k := setKey(b.mode, s)
			out = append(out, dataplane.TableFill{Name: k, Entries: b.counts[k]})
		}
	}
	return out
}
