package dataplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/portcullis/portcullis/dataplane/model"
	"github.com/portcullis/portcullis/dataplane/netdev"
	"github.com/portcullis/portcullis/dataplane/store"
)

// Devices creates and removes bridges and veths (package netdev).
type Devices interface {
	EnsureBridge(n *model.RNetwork) (bool, error)
	DeleteBridge(name string) error
	EnsureEndpoint(e *model.REndpoint) error
	DeleteEndpoint(e *model.REndpoint) error
	// EnsureForwarding turns on IPv4 forwarding, and IPv6 forwarding when
	// ipv6 is set, in the agent's network namespace (as Docker does).
	EnsureForwarding(ipv6 bool) error
	NodeChecks
}

// Reconciler owns the desired state and makes the kernel match it: devices
// first, then the backend, then the journal. A change that fails at any
// step is undone, so the previous state stays in force.
type Reconciler struct {
	mu       sync.Mutex
	want     *model.Resolved
	be       Backend
	dev      Devices
	st       *store.Store
	log      *slog.Logger
	needFull bool
	stats    Stats
	parts    map[string]func() any // AddStatus
	// Observe, when set, is told of every change: its kind, how long it
	// took from request to kernel, and whether it failed.
	Observe func(kind string, took time.Duration, err error)
}

// Stats are the reconciler's counters for /v1/status and metrics.
type Stats struct {
	Changes      uint64        `json:"changes"`
	Errors       uint64        `json:"errors"`
	FullSyncs    uint64        `json:"full_syncs"`
	LastError    string        `json:"last_error,omitempty"`
	LastDuration time.Duration `json:"last_duration_ns"`
	StartErrors  []string      `json:"start_errors,omitempty"`
	// Vanished are the objects removed (with their ports and links)
	// because their container or network went without the agent being
	// told, found at start or at a resync.
	Vanished []string `json:"vanished,omitempty"`
}

// NewReconciler loads the desired state from st; Start applies it.
func NewReconciler(be Backend, dev Devices, st *store.Store, log *slog.Logger) (*Reconciler, error) {
	defer debug.SetGCPercent(debug.SetGCPercent(syncGCPercent))
	want, err := st.LoadResolved()
	if err != nil {
		return nil, err
	}
	return &Reconciler{want: want, be: be, dev: dev, st: st, log: log}, nil
}

// Start re-applies the whole desired state: devices (a missing container
// namespace is logged, not fatal) and one full backend sync.
func (c *Reconciler) Start(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.forwarding(); err != nil {
		return err
	}
	if err := c.plugAll(true); err != nil {
		return err
	}
	return c.fullSync(ctx)
}

// plugAll makes every network's bridge and every endpoint's veth, at start
// and at each resync, and drops what went while nobody told the agent (see
// dropVanished). An endpoint that cannot be plugged otherwise is logged
// (and, at start, reported in status); a bridge that cannot be made fails.
func (c *Reconciler) plugAll(atStart bool) error {
	var vanished []model.Op
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(c.want.Networks)) {
		n := c.want.Networks[name]
		_, err := c.dev.EnsureBridge(n)
		switch {
		case err != nil && n.Spec.Source != "" && errors.Is(err, netdev.ErrNotFound):
			vanished = append(vanished, c.networkGone(n)...)
		case err != nil:
			errs = append(errs, fmt.Errorf("network %s: %w", n.Name, err))
		}
	}
	for _, id := range slices.Sorted(maps.Keys(c.want.Endpoints)) {
		e := c.want.Endpoints[id]
		if slices.ContainsFunc(vanished, func(op model.Op) bool { return op.Kind == "endpoint" && op.Key == id }) {
			continue
		}
		err := c.dev.EnsureEndpoint(e)
		switch {
		case err != nil && errors.Is(err, netdev.ErrNotFound):
			// A runtime's or another plugin's interface, the host end a
			// CNI plugin made (host_ifname: it dies with the container's
			// namespace, and a runtime that failed its DEL while the agent
			// was down never retries), or the namespace of a container the
			// agent plugged, is gone: so is the container.
			vanished = append(vanished, model.Op{Kind: "endpoint", Delete: true, Key: id})
		case err != nil:
			c.log.Warn("endpoint not plugged", "endpoint", e.ID, "at_start", atStart, "err", err)
			if atStart {
				c.stats.StartErrors = append(c.stats.StartErrors, fmt.Sprintf("endpoint %s: %v", e.ID, err))
			}
		}
	}
	if err := c.dropVanished(vanished); err != nil {
		return err
	}
	return errors.Join(errs...)
}

// networkGone returns the deletes of a runtime's network whose bridge is
// gone, its endpoints first.
func (c *Reconciler) networkGone(n *model.RNetwork) []model.Op {
	var ops []model.Op
	for _, id := range slices.Sorted(maps.Keys(c.want.Endpoints)) {
		if c.want.Endpoints[id].Net == n {
			ops = append(ops, model.Op{Kind: "endpoint", Delete: true, Key: id})
		}
	}
	return append(ops, model.Op{Kind: "network", Delete: true, Key: n.Name})
}

// dropVanished removes, before a full sync, what went without the agent
// being told (while it was down, or a runtime that never said so): what a
// runtime source owns whose interfaces are gone (a container or network
// removed meanwhile; the source would remove it anyway once it has listed
// the runtime again), and endpoints whose container namespace is gone.
// Programming them would fail, and a port they published must not stay
// taken.
func (c *Reconciler) dropVanished(ops []model.Op) error {
	for _, op := range ops {
		if _, err := c.want.Do(op); err != nil {
			return fmt.Errorf("drop %s %s, gone while the agent was down: %w", op.Kind, op.Key, err)
		}
		if err := c.st.Append(op); err != nil {
			return err
		}
		c.log.Info("removed: its interface or namespace is gone", "kind", op.Kind, "name", op.Key)
		c.stats.Vanished = append(c.stats.Vanished, op.Kind+" "+op.Key)
	}
	return nil
}

// syncGCPercent is the Go GC's percent while the state is loaded and fully
// synced: both build most of what they allocate at once (the resolved
// state, a netlink batch or map entries for every object), and with the
// default 100 the heap may grow to twice all of that before a collection;
// at 25 it stays within a quarter over what is live, for a few more
// collections (tens of milliseconds each at 100,000 mappings).
const syncGCPercent = 25

func (c *Reconciler) fullSync(ctx context.Context) error {
	defer debug.SetGCPercent(debug.SetGCPercent(syncGCPercent))
	start := time.Now()
	if err := c.be.Apply(ctx, c.want, nil, true); err != nil {
		c.needFull = true
		return fmt.Errorf("%s full sync: %w", c.be.Name(), err)
	}
	c.needFull = false
	c.stats.FullSyncs++
	c.log.Info("full sync", "backend", c.be.Name(), "ports", len(c.want.Ports), "took", time.Since(start))
	// A full sync builds what the kernel needs of every object at once (a
	// netlink batch, map entries), several times the live heap at
	// 100,000 mappings, and the periodic resync does it every minute:
	// hand the pages back now rather than when the scavenger gets to
	// them, which it does no faster than the next resync comes.
	debug.FreeOSMemory()
	return nil
}

func (c *Reconciler) forwarding() error {
	ipv6 := false
	for _, n := range c.want.Networks {
		ipv6 = ipv6 || n.Subnet6.IsValid()
	}
	return c.dev.EnsureForwarding(ipv6)
}

// Do applies one change made through the API. The returned delta must not
// be modified.
func (c *Reconciler) Do(ctx context.Context, op model.Op) (*model.Delta, error) {
	return c.DoAs(ctx, "", op)
}

// DoAs applies one change on behalf of source: "" for the API, or a runtime
// source such as model.SourceDocker. Objects owned by one source are
// changed only by it (see checkOwner).
func (c *Reconciler) DoAs(ctx context.Context, source string, op model.Op) (*model.Delta, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	start := time.Now()
	op, err := checkOwner(c.want, source, op)
	if err != nil {
		return nil, err
	}
	d, err := c.want.Change(op)
	if err != nil || d.Empty() {
		return d, err
	}
	if err := c.checkNode(d); err != nil {
		c.want.Undo(d)
		return nil, err
	}
	err = c.apply(ctx, d, op)
	if c.Observe != nil {
		c.Observe(op.Kind, time.Since(start), err)
	}
	if err != nil {
		c.stats.Errors++
		c.stats.LastError = err.Error()
		return nil, err
	}
	c.stats.Changes++
	c.stats.LastDuration = time.Since(start)
	if c.st.NeedsCompaction() {
		if err := c.st.Compact(c.want.Freeze()); err != nil {
			c.log.Error("compact state", "err", err) // the journal still holds everything
		}
	}
	return d, nil
}

func (c *Reconciler) apply(ctx context.Context, d *model.Delta, op model.Op) error {
	undoDev, err := c.plugDevices(d)
	if err == nil && len(d.Networks) > 0 {
		// Only a network can need forwarding switched on (IPv6 for its
		// first IPv6 subnet); Start set it for the rest.
		err = c.forwarding()
	}
	if err != nil {
		undoDev()
		c.want.Undo(d)
		return err
	}
	if err := c.be.Apply(ctx, c.want, d, c.needFull); err != nil {
		undoDev()
		c.want.Undo(d)
		err = fmt.Errorf("%s: %w", c.be.Name(), err)
		// A backend made of several parts (Stack) may have applied some of
		// them: put the previous state back in force everywhere now.
		if rerr := c.fullSync(ctx); rerr != nil {
			err = errors.Join(err, fmt.Errorf("restore previous state: %w", rerr))
		}
		return err
	}
	c.needFull = false
	if err := c.st.Append(op); err != nil {
		// Not journalled means not durable: take the change back.
		c.want.Undo(d)
		if ferr := c.fullSync(ctx); ferr != nil {
			err = errors.Join(err, ferr)
		}
		undoDev()
		return err
	}
	c.unplugDevices(d)
	return nil
}

// plugDevices creates what d adds, and returns how to remove it again.
func (c *Reconciler) plugDevices(d *model.Delta) (undo func(), err error) {
	var undos []func()
	undo = func() {
		for i := len(undos) - 1; i >= 0; i-- {
			undos[i]()
		}
	}
	for _, ch := range d.Networks {
		if ch.New == nil {
			continue
		}
		created, err := c.dev.EnsureBridge(ch.New)
		if err != nil {
			return undo, fmt.Errorf("network %s: %w", ch.New.Name, err)
		}
		if created {
			name := ch.New.Bridge
			undos = append(undos, func() { c.dev.DeleteBridge(name) })
		}
	}
	for _, ch := range d.Endpoints {
		if ch.New == nil || (ch.Old != nil && samePlug(ch.Old, ch.New)) {
			continue
		}
		if ch.Old != nil { // re-plugged: the old veth goes first, comes back on undo
			old := ch.Old
			if err := c.dev.DeleteEndpoint(old); err != nil {
				return undo, fmt.Errorf("endpoint %s: %w", old.ID, err)
			}
			undos = append(undos, func() { c.dev.EnsureEndpoint(old) })
		}
		if err := c.dev.EnsureEndpoint(ch.New); err != nil {
			return undo, fmt.Errorf("endpoint %s: %w", ch.New.ID, err)
		}
		e := ch.New
		undos = append(undos, func() { c.dev.DeleteEndpoint(e) })
	}
	return undo, nil
}

// samePlug reports whether two versions of an endpoint use the same veth
// with the same addresses, so nothing needs re-plugging.
func samePlug(a, b *model.REndpoint) bool {
	return a.HostIfname == b.HostIfname && a.Netns == b.Netns && a.Ifname == b.Ifname &&
		a.IP == b.IP && a.IP6 == b.IP6 && a.MAC.String() == b.MAC.String() && a.Net.Bridge == b.Net.Bridge
}

// unplugDevices removes what d removed, after the backend stopped using it.
func (c *Reconciler) unplugDevices(d *model.Delta) {
	for _, ch := range d.Endpoints {
		if ch.New == nil {
			if err := c.dev.DeleteEndpoint(ch.Old); err != nil {
				c.log.Warn("remove endpoint interface", "endpoint", ch.Old.ID, "err", err)
			}
		}
	}
	for _, ch := range d.Networks {
		if ch.New == nil {
			if err := c.dev.DeleteBridge(ch.Old.Bridge); err != nil {
				c.log.Warn("remove bridge", "bridge", ch.Old.Bridge, "err", err)
			}
		}
	}
}

// Read runs f with the desired state locked for reading.
func (c *Reconciler) Read(f func(want *model.Resolved)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f(c.want)
}

// Stats returns the reconciler's counters.
func (c *Reconciler) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats
}

// Counts returns the number of objects of each kind.
func (c *Reconciler) Counts() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.counts()
}

func (c *Reconciler) counts() map[string]int {
	return map[string]int{
		"networks": len(c.want.Networks), "endpoints": len(c.want.Endpoints),
		"ports": len(c.want.Ports), "links": len(c.want.Links),
	}
}

// Status returns the backend's status with the reconciler's counters and
// what every part added with AddStatus reports.
func (c *Reconciler) Status() map[string]any {
	c.mu.Lock()
	st := map[string]any{
		"backend":        c.be.Name(),
		"backend_status": c.be.Status(),
		"counts":         c.counts(),
		"reconciler":     c.stats,
	}
	parts := maps.Clone(c.parts)
	c.mu.Unlock()
	// Outside the lock: a part may read the desired state itself.
	for name, f := range parts {
		st[name] = f()
	}
	return st
}

// AddStatus adds f's answer to Status under name (e.g. the Docker source's).
func (c *Reconciler) AddStatus(name string, f func() any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.parts == nil {
		c.parts = map[string]func() any{}
	}
	c.parts[name] = f
}

// Backend returns the backend in use.
func (c *Reconciler) Backend() Backend { return c.be }
