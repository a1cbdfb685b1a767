package nft

import (
	"fmt"
	"sync/atomic"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/portcullis/portcullis/dataplane/model"
)

// elemsPerMessage bounds one NEWSETELEM/DELSETELEM message: the element
// list is a single netlink attribute, whose length field is 16 bits.
const elemsPerMessage = 256

// conn opens an nftables connection in the backend's namespace. Each call
// dials its own socket (google/nftables does so per Flush). A full sync of a
// large state is one big batch, so the socket buffers are raised to fit it:
// the kernel refuses a sendmsg larger than the send buffer.
func (b *Backend) conn(elems int) (*nftables.Conn, error) {
	return b.connSized(func() int { return elems })
}

// connSized is conn for a batch whose number of elements is known only
// once it is queued: elems is asked when Flush opens the socket.
func (b *Backend) connSized(elems func() int) (*nftables.Conn, error) {
	opts := []nftables.ConnOption{nftables.WithSockOptions(func(c *netlink.Conn) error {
		return forceBuffers(c, 1<<20+elems()*256)
	})}
	if b.ns >= 0 {
		opts = append(opts, nftables.WithNetNSFd(int(b.ns)))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("open nftables netlink socket: %w", err)
	}
	return c, nil
}

// forceBuffers sets SO_SNDBUFFORCE and SO_RCVBUFFORCE (we run with
// CAP_NET_ADMIN), falling back to the capped SO_SNDBUF/SO_RCVBUF.
func forceBuffers(c *netlink.Conn, size int) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, size)
		if serr == nil {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, size)
		}
	})
	if err == nil && serr != nil {
		_ = c.SetWriteBuffer(size)
		_ = c.SetReadBuffer(size)
	}
	return err
}

// programFull queues, for each table of mode m: add (so the delete cannot
// fail), delete, and create it again with all counters, sets, chains, rules
// and elements. The tables in stale (the other mode's, see staleTables)
// are deleted in the same batch: a leftover of an agent that ran with the
// other backend would contradict this one. Everything is one batch, so the
// kernel swaps the old ruleset for the new one atomically; conntrack (and
// so every established flow and its NAT binding) is not touched.
// Re-creating rather than flushing also lets an upgraded agent change a
// set's type. The drop counters are re-created with the values in carry, so
// they survive full syncs and agent restarts. The elements are those of
// want and extra, queued object by object (queueWant); their refs are
// returned, with the number of kernel elements queued.
func programFull(c *nftables.Conn, m Mode, want *model.Resolved, extra []elem, mark uint32,
	carry map[string]dropCount, stale []*nftables.Table) (refs, int, error) {
	q := &elemQueue{c: c, sets: map[*setDef]*nftables.Set{}, batch: map[*setDef][]nftables.SetElement{}}
	for _, tbl := range stale {
		c.DelTable(tbl)
	}
	for _, t := range schema(m, mark) {
		tbl := t.table()
		c.AddTable(tbl)
		c.DelTable(tbl)
		c.AddTable(tbl)
		for _, cd := range t.counters {
			v := carry[cd.name()]
			c.AddObj(&nftables.CounterObj{Table: tbl, Name: cd.name(), Packets: v.packets, Bytes: v.bytes})
		}
		sets, err := addSets(c, tbl, t.sets)
		if err != nil {
			return nil, 0, err
		}
		addChains(c, tbl, t.chains, sets)
		for _, s := range t.sets {
			q.sets[s] = sets[s.name]
		}
	}
	r, err := queueWant(q, m, want, extra...)
	return r, q.queued, err
}

// setIDs numbers the sets of a transaction (NFTA_SET_ID, how elements
// added in the same batch name a set made in it). nftables.Conn.AddSet
// numbers a set without an ID from a package-wide counter that it
// increments under its own connection's lock only, so two connections
// adding sets at once (two backends, parallel tests) race on it; setting
// the ID here keeps AddSet away from that counter.
var setIDs atomic.Uint32

func nextSetID() uint32 {
	for {
		if id := setIDs.Add(1); id != 0 {
			return id
		}
	}
}

func addSets(c *nftables.Conn, tbl *nftables.Table, defs []*setDef) (map[string]*nftables.Set, error) {
	sets := map[string]*nftables.Set{}
	for _, s := range defs {
		ks := s.kernelSet(tbl)
		ks.ID = nextSetID()
		if err := c.AddSet(ks, nil); err != nil {
			return nil, fmt.Errorf("set %s: %w", s.name, err)
		}
		sets[s.name] = ks
	}
	return sets, nil
}

// addChains adds all chains before any rule, so a jump finds its target.
func addChains(c *nftables.Conn, tbl *nftables.Table, defs []*chainDef, sets map[string]*nftables.Set) {
	for _, ch := range defs {
		kc := &nftables.Chain{Name: ch.name, Table: tbl}
		if ch.base != nil {
			kc = ch.base
			kc.Table = tbl
		}
		c.AddChain(kc)
	}
	for _, ch := range defs {
		for _, r := range ch.rules {
			c.AddRule(&nftables.Rule{
				Table: tbl,
				Chain: &nftables.Chain{Name: ch.name, Table: tbl},
				Exprs: withSetIDs(r.exprs, sets),
			})
		}
	}
}

// withSetIDs fills in the IDs of sets created in this batch. The kernel
// resolves a lookup by name first, but the name still belongs to the old
// set being deleted in the same batch, so it falls back to the ID.
func withSetIDs(exprs []expr.Any, sets map[string]*nftables.Set) []expr.Any {
	for _, e := range exprs {
		if l, ok := e.(*expr.Lookup); ok {
			l.SetID = sets[l.SetName].ID
		}
	}
	return exprs
}

// queueElems adds (or deletes) elements of one set in bounded messages.
func queueElems(c *nftables.Conn, s *nftables.Set, es []elem, add bool) error {
	var batch []nftables.SetElement
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		var err error
		if add {
			err = c.SetAddElements(s, batch)
		} else {
			err = c.SetDeleteElements(s, batch)
		}
		batch = batch[:0]
		return err
	}
	for _, e := range es {
		batch = append(batch, e.kernelElems()...)
		if len(batch) >= elemsPerMessage {
			if err := flush(); err != nil {
				return fmt.Errorf("set %s: %w", s.Name, err)
			}
		}
	}
	if err := flush(); err != nil {
		return fmt.Errorf("set %s: %w", s.Name, err)
	}
	return nil
}

// programDelta queues element deletions, then additions, grouped by set,
// in the tables of mode m. Deleting first lets a map element change its
// data under the same key.
func programDelta(c *nftables.Conn, m Mode, dels, adds []elem) error {
	for _, step := range []struct {
		es  []elem
		add bool
	}{{dels, false}, {adds, true}} {
		bySet := map[*setDef][]elem{}
		var order []*setDef
		for _, e := range step.es {
			if bySet[e.set] == nil {
				order = append(order, e.set)
			}
			bySet[e.set] = append(bySet[e.set], e)
		}
		for _, s := range order {
			tbl := &nftables.Table{Name: m.table(), Family: s.fam}
			if err := queueElems(c, s.kernelSet(tbl), bySet[s], step.add); err != nil {
				return err
			}
		}
	}
	return nil
}

// programUninstall deletes the tables of mode m, and those in stale (the
// other mode's that exist): whichever mode the backend runs in,
// `portcullisd uninstall` leaves no table of either behind. Adding m's
// tables first makes their delete succeed when they are already gone.
func programUninstall(c *nftables.Conn, m Mode, stale []*nftables.Table) {
	for _, t := range tables(m) {
		tbl := t.table()
		c.AddTable(tbl)
		c.DelTable(tbl)
	}
	for _, tbl := range stale {
		c.DelTable(tbl)
	}
}

// staleTables returns the tables of the modes other than the backend's
// that exist in its namespace. They are listed rather than blindly added
// and deleted, so that the local mode never creates, even for an instant,
// a bridge-family table, which a kernel without nftables bridge support
// would refuse.
func (b *Backend) staleTables() ([]*nftables.Table, error) {
	c, err := b.conn(0)
	if err != nil {
		return nil, err
	}
	have, err := c.ListTables()
	if err != nil {
		return nil, fmt.Errorf("list nft tables: %w", err)
	}
	var out []*nftables.Table
	for _, o := range b.mode.others() {
		out = append(out, present(have, o)...)
	}
	return out, nil
}

// present returns the tables of mode m that are among have (a listing of
// the kernel's tables).
func present(have []*nftables.Table, m Mode) []*nftables.Table {
	var out []*nftables.Table
	for _, t := range tables(m) {
		for _, h := range have {
			if h.Name == t.name && h.Family == t.fam {
				out = append(out, t.table())
			}
		}
	}
	return out
}
