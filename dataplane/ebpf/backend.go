// Package ebpf is the eBPF backend: it loads the programs of bpf/, attaches
// them to endpoint veths and uplinks, and keeps their maps in step with the
// desired state.
package ebpf

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/portcullis/portcullis/dataplane/bgqueue"
	"github.com/portcullis/portcullis/dataplane/model"
)

// Options configure the backend.
type Options struct {
	// PinDir is a directory on a bpffs where maps, programs and tcx links
	// are pinned, so the datapath outlives the agent and a restart picks up
	// its flows. Empty: nothing is pinned (tests).
	PinDir string
	// Attach is auto (default), tcx or tc.
	Attach AttachMode
	// Config is the datapath configuration; the zero value means
	// DefaultConfig().
	Config *Config
	// GCInterval is the longest pause between conntrack garbage
	// collections (default 30 s); the collector runs more often while many
	// entries expire. Negative: no background collection.
	GCInterval time.Duration
	// Log receives the backend's messages (default slog.Default()).
	Log *slog.Logger

	devs devices // tests may replace the netlink lookups
}

// Backend is the eBPF implementation of dataplane.Backend.
type Backend struct {
	opts Options
	cfg  Config
	log  *slog.Logger
	devs devices

	mu       sync.Mutex
	mode     AttachMode // resolved: tcx or tc
	modeWhy  string
	dp       *datapath
	st       *state // nil until the first successful Apply
	attached map[attachKey]*attachment
	gc       *collector
	// epIDs names the endpoint of each host veth (ifindex) in the applied
	// state: drop counters are kept by ifindex.
	epIDs map[uint32]string
	// flushq forgets the flows of removed mappings, endpoints and links
	// off the API path: each pass walks whole conntrack tables, which costs
	// their size (about 50 µs per table even empty), not the change's.
	flushq *bgqueue.Queue[flushRule]
	// repaired counts what full syncs after the first found out of
	// place: map entries missing, different or unwanted, and tcx links
	// someone detached (dataplane.Repairer).
	repaired uint64
}

// Repaired implements dataplane.Repairer.
func (b *Backend) Repaired() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.repaired
}

// New returns a backend. It touches the kernel only at the first Apply (or
// Uninstall), so building one to uninstall is harmless.
func New(opts Options) (*Backend, error) {
	cfg := DefaultConfig()
	if opts.Config != nil {
		cfg = *opts.Config
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	switch opts.Attach {
	case "":
		opts.Attach = AttachAuto
	case AttachAuto, AttachTCX, AttachTC:
	default:
		return nil, fmt.Errorf("attach mode %q: want auto, tcx or tc", opts.Attach)
	}
	if opts.GCInterval == 0 {
		opts.GCInterval = 30 * time.Second
	}
	log := opts.Log
	if log == nil {
		log = slog.Default()
	}
	devs := opts.devs
	if devs == nil {
		devs = netlinkDevices{}
	}
	if !cfg.CoarseClock {
		// The clock's calibration waits 100 ms between two samples: let it
		// wait while the agent loads its state and the object files, not
		// before the load (kernelClock runs it once).
		go kernelClock()
	}
	b := &Backend{opts: opts, cfg: cfg, log: log, devs: devs, attached: map[attachKey]*attachment{}, epIDs: map[uint32]string{}}
	b.flushq = bgqueue.New(b.flushFlows)
	return b, nil
}

// WaitFlushed blocks until the flows of every change applied so far have
// been forgotten (B13 happens milliseconds after Apply returns; tests wait
// here).
func (b *Backend) WaitFlushed() { b.flushq.Wait() }

// Name implements dataplane.Backend.
func (b *Backend) Name() string { return "ebpf" }

func (b *Backend) linkDir() string {
	if b.opts.PinDir == "" {
		return ""
	}
	return pinPaths{b.opts.PinDir}.links()
}

// Load loads the programs now rather than at the first Apply: the agent's
// backend=auto tries the real thing once instead of probing with a load of
// its own (the verifier's pass is most of the start). When it fails, the
// map pins it made are removed (the ones an earlier run left stay), so a
// fallback to another backend does not keep their memory taken.
func (b *Backend) Load() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	dir := pinPaths{b.opts.PinDir}.maps()
	had := map[string]bool{}
	if b.opts.PinDir != "" {
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			had[e.Name()] = true
		}
	}
	err := b.load()
	if err != nil && b.opts.PinDir != "" {
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if !had[e.Name()] {
				os.Remove(filepath.Join(dir, e.Name()))
			}
		}
	}
	return err
}

// AttachInfo says how programs are attached (tcx or tc) and why; empty
// before the programs are loaded.
func (b *Backend) AttachInfo() (mode AttachMode, why string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.mode, b.modeWhy
}

// load loads the programs (reusing pinned maps) and pins them, once.
func (b *Backend) load() error {
	if b.dp != nil {
		return nil
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return fmt.Errorf("raise the memlock limit: %w", err)
	}
	lo := loadOptions{}
	pp := pinPaths{b.opts.PinDir}
	if b.opts.PinDir != "" {
		if err := checkBPFFS(filepath.Dir(b.opts.PinDir)); err != nil {
			return err
		}
		for _, d := range []string{pp.maps(), pp.progs(), pp.links()} {
			if err := os.MkdirAll(d, 0o700); err != nil {
				return fmt.Errorf("create pin directory: %w", err)
			}
		}
		lo.mapPinDir = pp.maps()
		lo.log = b.log
	}
	dp, err := loadDatapath(b.cfg, lo)
	if err != nil {
		return err
	}
	if b.opts.PinDir != "" {
		for name, p := range dp.progs {
			path := filepath.Join(pp.progs(), name)
			os.Remove(path) // an older agent's program; its links hold their own reference
			if err := p.Pin(path); err != nil {
				dp.Close()
				return fmt.Errorf("pin program %s: %w", name, err)
			}
		}
	}
	mode, why, err := resolveMode(b.opts.Attach, dp.progs[progEndpointIngress])
	if err != nil {
		dp.Close()
		return err
	}
	b.dp, b.mode, b.modeWhy = dp, mode, why
	b.log.Info("ebpf datapath loaded", "attach", mode, "why", why, "pins", b.opts.PinDir)
	return nil
}

func resolveMode(want AttachMode, prog *ebpf.Program) (AttachMode, string, error) {
	err := probeTCX(prog)
	switch want {
	case AttachTCX:
		if err != nil {
			return "", "", fmt.Errorf("attach mode tcx: the kernel has no tcx (6.6+): %w", err)
		}
		return AttachTCX, "forced", nil
	case AttachTC:
		return AttachTC, "forced", nil
	}
	if err != nil {
		return AttachTC, fmt.Sprintf("no tcx: %v", err), nil
	}
	return AttachTCX, "kernel has tcx", nil
}

// checkBPFFS makes sure dir is on a bpffs: pins elsewhere fail obscurely.
func checkBPFFS(dir string) error {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return fmt.Errorf("pin directory %s: %w (mount a bpffs: mount -t bpf bpf /sys/fs/bpf)", dir, err)
	}
	if st.Type != unix.BPF_FS_MAGIC {
		return fmt.Errorf("pin directory %s is not on a bpffs (mount -t bpf bpf /sys/fs/bpf)", dir)
	}
	return nil
}

// Apply implements dataplane.Backend.
func (b *Backend) Apply(ctx context.Context, want *model.Resolved, d *model.Delta, full bool) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := b.load(); err != nil {
		return fmt.Errorf("load ebpf datapath: %w", err)
	}
	var err error
	if full || b.st == nil || d == nil {
		err = b.applyFull(want)
	} else {
		err = b.applyDelta(want, d)
	}
	if err != nil {
		return err
	}
	if b.gc == nil && b.opts.GCInterval > 0 {
		b.gc = startCollector(b.dp.maps[mapFlows4], b.dp.maps[mapTrack6], b.dp.maps[mapFlows6], b.opts.GCInterval, b.log)
	}
	return nil
}

func (b *Backend) newTxn() *txn { return &txn{maps: b.dp.maps} }

// finish commits t, or rolls it back when err is set.
func (b *Backend) finish(t *txn, err error) error {
	if err != nil {
		if rerr := t.rollback(); rerr != nil {
			return errors.Join(err, fmt.Errorf("roll back: %w", rerr))
		}
		return err
	}
	if err := t.commit(); err != nil {
		// Only clean-ups run after commit (detaching from interfaces that
		// are going away); the new state is in force.
		b.log.Warn("ebpf: clean-up after apply", "err", err)
	}
	return nil
}

// applyFull rebuilds every configuration map from want, deleting keys that
// nothing wants, and attaches to every hook want needs.
func (b *Backend) applyFull(want *model.Resolved) error {
	devs := newDeviceCache(b.devs)
	owners, err := wantOwners(devs, want)
	if err != nil {
		return err
	}
	ns := newState()
	t := b.newTxn()
	err = func() error {
		ids := make([]string, 0, len(owners))
		for id := range owners {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		for _, id := range ids {
			if _, _, err := ns.setOwner(t, id, owners[id]); err != nil {
				return err
			}
		}
		for _, name := range configMaps {
			stale, err := staleKeys(b.dp.maps[name], name, ns)
			if err != nil {
				return err
			}
			for _, k := range stale {
				if err := t.del(name, k); err != nil {
					return err
				}
			}
		}
		keys := make([]attachKey, 0, len(ns.hooks))
		for k := range ns.hooks {
			keys = append(keys, k)
		}
		sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
		for _, k := range keys {
			if err := b.ensureAttached(t, ns.hooks[k], true); err != nil {
				return err
			}
		}
		t.onCommit(func() error { return b.removeStaleHooks(ns) })
		return nil
	}()
	if err := b.finish(t, err); err != nil {
		return err
	}
	if b.st != nil { // the first full sync finds the maps as an earlier run left them
		b.repaired += uint64(t.changed)
	}
	b.st = ns
	b.epIDs = map[uint32]string{}
	for id, o := range owners {
		if ifindex, ok := o.endpointIfindex(); ok {
			b.epIDs[ifindex] = strings.TrimPrefix(id, "ep/")
		}
	}
	return nil
}

// applyDelta writes only what d changes.
func (b *Backend) applyDelta(want *model.Resolved, d *model.Delta) error {
	devs := newDeviceCache(b.devs)
	devs.applied = b.st
	t := b.newTxn()
	var (
		flush []flushRule
		epIDs = map[string][2]uint32{} // endpoint id -> host veth before, after
	)
	set := func(id string, o owner) error {
		added, removed, err := b.st.setOwner(t, id, o)
		if err != nil {
			return err
		}
		for _, h := range added {
			if err := b.ensureAttached(t, h, false); err != nil {
				return err
			}
		}
		for _, h := range removed {
			k := h.key()
			t.onCommit(func() error { return b.detachUnwanted(k) })
		}
		return nil
	}
	err := func() error {
		for _, c := range d.Networks {
			o, err := ownerOrEmpty(c.New, func(n *model.RNetwork) (owner, error) { return netOwner(devs, n) })
			if err != nil {
				return err
			}
			name := current(c.Old, c.New).Name
			if err := set("net/"+name, o); err != nil {
				return err
			}
			if c.New == nil {
				continue
			}
			// Endpoints carry their network's id (the bridge's ifindex).
			for _, e := range want.Endpoints {
				if e.Net != nil && e.Net.Name == name {
					eo, err := epOwner(devs, e)
					if err != nil {
						return err
					}
					if err := set("ep/"+e.ID, eo); err != nil {
						return err
					}
				}
			}
		}
		for _, c := range d.Endpoints {
			o, err := ownerOrEmpty(c.New, func(e *model.REndpoint) (owner, error) { return epOwner(devs, e) })
			if err != nil {
				return err
			}
			id := current(c.Old, c.New)
			before, _ := b.st.owners["ep/"+id.ID].endpointIfindex()
			if err := set("ep/"+id.ID, o); err != nil {
				return err
			}
			after, _ := o.endpointIfindex()
			epIDs[id.ID] = [2]uint32{before, after}
			if err := refreshGatewayMAC(want, id, set, devs); err != nil {
				return err
			}
			if c.Old != nil && (c.New == nil || c.New.IP != c.Old.IP) && c.Old.IP.IsValid() {
				flush = append(flush, flushRule{addr: c.Old.IP})
			}
			if c.Old != nil && (c.New == nil || c.New.IP6 != c.Old.IP6) && c.Old.IP6.IsValid() {
				flush = append(flush, flushRule{addr: c.Old.IP6})
			}
		}
		for _, c := range d.Ports {
			o, err := ownerOrEmpty(c.New, func(p *model.RPort) (owner, error) { return portOwner(devs, p) })
			if err != nil {
				return err
			}
			p := current(c.Old, c.New)
			if err := set("port/"+p.ID, o); err != nil {
				return err
			}
			if c.Old != nil && c.Old.EP != nil {
				for _, a := range []netip.Addr{c.Old.EP.IP, c.Old.EP.IP6} {
					if a.IsValid() {
						flush = append(flush, flushRule{port: true, addr: a, proto: c.Old.Proto, lo: c.Old.HostLo, hi: c.Old.HostHi})
					}
				}
			}
		}
		for _, c := range d.Links {
			o, err := ownerOrEmpty(c.New, func(l *model.RLink) (owner, error) { return linkOwner(devs, l) })
			if err != nil {
				return err
			}
			l := current(c.Old, c.New)
			if err := set("link/"+linkID(l), o); err != nil {
				return err
			}
			// An unlinked child must not keep answering on the flows its
			// parent opened (nor the parent keep them going).
			if old := c.Old; c.New == nil && old != nil && old.Parent != nil && old.Child != nil {
				for _, pc := range [][2]netip.Addr{{old.Parent.IP, old.Child.IP}, {old.Parent.IP6, old.Child.IP6}} {
					if pc[0].IsValid() && pc[1].IsValid() {
						flush = append(flush, flushRule{link: true, addr: pc[0], peer: pc[1]})
					}
				}
			}
		}
		if d.Settings != nil {
			o, err := uplinkOwner(devs, d.Settings.New)
			if err != nil {
				return err
			}
			if err := set("uplinks", o); err != nil {
				return err
			}
		}
		return nil
	}()
	if err := b.finish(t, err); err != nil {
		return err
	}
	for id, ix := range epIDs {
		if b.epIDs[ix[0]] == id {
			delete(b.epIDs, ix[0])
		}
		if ix[1] != 0 {
			b.epIDs[ix[1]] = id
		}
	}
	b.flushq.Add(flush...)
	return nil
}

func ownerOrEmpty[T any](v *T, f func(*T) (owner, error)) (owner, error) {
	if v == nil {
		return owner{}, nil
	}
	return f(v)
}

// current is the object a change is about: its new version, or the old one
// when the change removes it.
func current[T any](old, nw *T) *T {
	if nw != nil {
		return nw
	}
	return old
}

// ensureAttached puts the hook's program in place. An attachment already on
// the same interface is reused: the program is swapped in place (tcx:
// link.Update, atomic; tc: the filter is replaced), which is also how a
// resync after an upgrade installs the new programs. With resync unset an
// attachment that already runs the right program is left alone.
func (b *Backend) ensureAttached(t *txn, h hook, resync bool) error {
	k := h.key()
	cur := b.attached[k]
	if cur != nil && cur.mode == b.mode && cur.ifindex == h.ifindex {
		if cur.prog == h.prog && !resync {
			return nil
		}
		old := cur.hook
		if err := b.swap(cur, h); err != nil {
			return err
		}
		t.onRollback(func() error { return b.swap(cur, old) })
		return nil
	}
	a, err := b.attach(h, b.mode)
	if err != nil {
		return err
	}
	b.attached[k] = a
	t.onRollback(func() error {
		if cur != nil {
			b.attached[k] = cur
		} else {
			delete(b.attached, k)
		}
		return a.detach()
	})
	if cur != nil {
		// The interface was replaced (new ifindex) or the mode changed:
		// the old attachment goes once the new one is in force.
		t.onCommit(cur.detach)
	}
	return nil
}

// swap replaces the program of an existing attachment.
func (b *Backend) swap(a *attachment, h hook) error {
	prog, ok := b.dp.progs[h.prog]
	if !ok {
		return fmt.Errorf("no program %s", h.prog)
	}
	switch a.mode {
	case AttachTCX:
		err := a.lnk.Update(prog)
		if errors.Is(err, unix.ENOLINK) {
			// Someone detached the link (bpftool net detach): a resync
			// attaches anew rather than fail on it forever.
			a.lnk.Unpin()
			a.lnk.Close()
			a.lnk, err = attachTCX(h, prog, b.linkDir())
			b.repaired++
		}
		if err != nil {
			return fmt.Errorf("swap program on %s: %w", a.key(), err)
		}
	case AttachTC:
		if err := attachTC(h, prog); err != nil {
			return err
		}
	}
	a.hook = h
	return nil
}

// detachUnwanted runs after commit for a hook that lost its last owner.
func (b *Backend) detachUnwanted(k attachKey) error {
	if b.st != nil && b.st.hookN[k] > 0 {
		return nil
	}
	a := b.attached[k]
	if a == nil {
		return nil
	}
	delete(b.attached, k)
	return a.detach()
}

// removeStaleHooks drops every attachment ns does not want: ours in memory,
// tcx links pinned by an earlier agent, clsact filters of an earlier run.
func (b *Backend) removeStaleHooks(ns *state) error {
	var errs []error
	for k, a := range b.attached {
		if _, ok := ns.hooks[k]; !ok {
			delete(b.attached, k)
			errs = append(errs, a.detach())
		}
	}
	keep := map[string]bool{}
	for _, a := range b.attached {
		if a.mode == AttachTCX {
			keep[tcxPinName(a.ifindex, a.dir)] = true
		}
	}
	errs = append(errs, removeLinkPins(b.linkDir(), keep))
	hooks, err := ourTCFilters()
	errs = append(errs, err)
	for _, h := range hooks {
		if a := b.attached[h.key()]; a != nil && a.mode == AttachTC && a.ifindex == h.ifindex {
			continue
		}
		errs = append(errs, detachTC(h.ifindex, h.dir))
	}
	return errors.Join(errs...)
}

// removeLinkPins unpins (and so detaches) every tcx link pinned in dir
// whose name is not in keep.
func removeLinkPins(dir string, keep map[string]bool) error {
	if dir == "" {
		return nil
	}
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range ents {
		if keep[e.Name()] {
			continue
		}
		path := filepath.Join(dir, e.Name())
		l, err := link.LoadPinnedLink(path, nil)
		if err != nil {
			errs = append(errs, os.Remove(path))
			continue
		}
		errs = append(errs, l.Unpin(), l.Close())
	}
	return errors.Join(errs...)
}

// Uninstall implements dataplane.Backend: it detaches every program, from
// this agent or an earlier one, and removes every pin and the pin
// directory. Absent objects are not an error.
func (b *Backend) Uninstall(ctx context.Context) error {
	b.flushq.Close() // its work takes b.mu
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.gc != nil {
		b.gc.stop()
		b.gc = nil
	}
	var errs []error
	for k, a := range b.attached {
		errs = append(errs, a.detach())
		delete(b.attached, k)
	}
	errs = append(errs, removeLinkPins(b.linkDir(), nil))
	hooks, err := ourTCFilters()
	errs = append(errs, err)
	for _, h := range hooks {
		errs = append(errs, detachTC(h.ifindex, h.dir))
	}
	if b.dp != nil {
		b.dp.Close()
		b.dp = nil
	}
	if b.opts.PinDir != "" {
		if err := os.RemoveAll(b.opts.PinDir); err != nil {
			errs = append(errs, fmt.Errorf("remove pins: %w", err))
		}
	}
	b.st = nil
	b.epIDs = map[uint32]string{}
	return errors.Join(errs...)
}

// Close releases the agent's descriptors and stops the collector, leaving
// the datapath in the kernel (pinned) for the next agent.
func (b *Backend) Close() error {
	b.flushq.Close() // its work takes b.mu
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.gc != nil {
		b.gc.stop()
		b.gc = nil
	}
	for k, a := range b.attached {
		if a.lnk != nil {
			a.lnk.Close() // a pinned link stays attached; without pins this detaches
		}
		delete(b.attached, k)
	}
	if b.dp != nil {
		b.dp.Close()
		b.dp = nil
	}
	return nil
}
