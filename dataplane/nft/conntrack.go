package nft

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"syscall"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/conntrack"

	"github.com/portcullis/portcullis/dataplane/model"
)

// ctMatch picks the conntrack entries that a changed port mapping leaves
// stale (B13). NAT is decided when an entry is created, so without this a
// flow keeps its old translation (or its lack of one) for as long as
// packets keep coming: the UDP client of moby #8795 that never reaches the
// restarted container.
type ctMatch struct {
	proto   uint8
	hostIP  netip.Addr // invalid: any local address
	lo, hi  uint16     // host ports
	ep      []netip.Addr
	epLo    uint16
	epHi    uint16
	removed bool
}

func matchFor(p *model.RPort, removed bool) ctMatch {
	m := ctMatch{proto: p.Proto, hostIP: p.HostIP, lo: p.HostLo, hi: p.HostHi,
		ep: []netip.Addr{p.EP.IP}, epLo: p.Lo, epHi: p.Lo + (p.HostHi - p.HostLo), removed: removed}
	if p.EP.IP6.IsValid() {
		m.ep = append(m.ep, p.EP.IP6)
	}
	return m
}

// stale: for a removed mapping, every flow to its host ports on its
// address, and every flow translated to its endpoint port through one of its
// host ports. For an added mapping, every flow to its host ports that is not
// already translated to its endpoint (created while the port was not
// published, or published elsewhere).
func (m ctMatch) stale(f conntrack.Flow, local func(netip.Addr) bool) bool {
	o := f.TupleOrig
	if o.Proto.Protocol != m.proto || o.Proto.DestinationPort < m.lo || o.Proto.DestinationPort > m.hi {
		return false
	}
	dst := o.IP.DestinationAddress.Unmap()
	toHost := dst == m.hostIP || (!m.hostIP.IsValid() && local(dst))
	if m.removed {
		return toHost || (f.Status&conntrack.StatusDstNAT != 0 && m.toEndpoint(f))
	}
	return toHost && !m.toEndpoint(f)
}

func (m ctMatch) toEndpoint(f conntrack.Flow) bool {
	r := f.TupleReply
	return slices.Contains(m.ep, r.IP.SourceAddress.Unmap()) &&
		r.Proto.SourcePort >= m.epLo && r.Proto.SourcePort <= m.epHi
}

// sameNAT reports whether two versions of a mapping translate alike, so
// their flows stay valid (an endpoint re-resolved without address change).
func sameNAT(a, b *model.RPort) bool {
	return a.Proto == b.Proto && a.HostIP == b.HostIP && a.HostLo == b.HostLo &&
		a.HostHi == b.HostHi && a.Lo == b.Lo && a.EP.IP == b.EP.IP && a.EP.IP6 == b.EP.IP6
}

// clearConntrack runs after an incremental transaction was committed (b.mu
// held). It
// hands the matches to the cleaner and returns at once: a conntrack dump
// walks the kernel's whole hash table (about 9 ms when empty, more with
// entries of every namespace), which must not sit on the API path of one
// more mapping. New flows follow the new ruleset at once either way, and
// the flows of a removed or changed mapping are already stopped by the
// stale-flow guard (stale.go) of the same transaction: the cleaner only
// tidies, as soon as the dump gets there (which a busy table delays), and
// lets a client that kept its port reach a mapping that came back with
// another target. A failure there is logged and counted, not returned: the
// ruleset is already right.
func (b *Backend) clearConntrack(d *model.Delta) {
	var ms []ctMatch
	for _, c := range d.Ports {
		if c.Old != nil && c.New != nil && sameNAT(c.Old, c.New) {
			continue
		}
		if c.Old != nil {
			ms = append(ms, matchFor(c.Old, true))
		}
		// A TCP flow needs no clean-up for a new mapping: a SYN on a
		// closed or reset entry makes the kernel drop it and look up
		// again (NAT included), and an established connection to a node
		// service on the port must not be cut. Datagram flows (moby
		// #8795) and SCTP do.
		if c.New != nil && c.New.Proto != model.ProtoTCP {
			ms = append(ms, matchFor(c.New, false))
		}
	}
	if len(ms) > 0 {
		b.stats.ctPasses++
	}
	b.ct.Add(ms...)
}

// cleanConntrack is the work of b.ct: one conntrack dump for every change
// that queued up meanwhile.
func (b *Backend) cleanConntrack(ms []ctMatch) {
	n, err := b.deleteFlows(ms)
	b.mu.Lock()
	defer b.mu.Unlock()
	b.stats.ctDeleted += uint64(n)
	b.stats.ctLastError = ""
	if err != nil {
		b.stats.ctLastError = err.Error()
		b.log.Warn("clear stale conntrack entries", "err", err)
	}
}

// deleteFlows deletes the conntrack entries matched by ms and returns how
// many. The dump costs the size of the conntrack table, and happens only
// when a mapping changes.
func (b *Backend) deleteFlows(ms []ctMatch) (int, error) {
	local, err := b.localAddrs()
	if err != nil {
		return 0, err
	}
	isLocal := func(a netip.Addr) bool { return a.IsLoopback() || local[a] }
	c, err := conntrack.Dial(&netlink.Config{NetNS: int(b.ns)})
	if err != nil {
		return 0, fmt.Errorf("open conntrack netlink socket: %w", err)
	}
	defer c.Close()
	flows, err := c.Dump(nil)
	if err != nil {
		return 0, fmt.Errorf("dump conntrack: %w", err)
	}
	n := 0
	var errs error
	for _, f := range flows {
		if !slices.ContainsFunc(ms, func(m ctMatch) bool { return m.stale(f, isLocal) }) {
			continue
		}
		if err := c.Delete(f); err != nil && !errors.Is(err, syscall.ENOENT) {
			errs = errors.Join(errs, fmt.Errorf("delete conntrack %v: %w", f.TupleOrig, err))
			continue
		}
		n++
	}
	return n, errs
}

// localAddrs lists the addresses of the backend's namespace.
func (b *Backend) localAddrs() (map[netip.Addr]bool, error) {
	out := map[netip.Addr]bool{}
	err := inNS(b.ns, func() error {
		addrs, err := net.InterfaceAddrs()
		if err != nil {
			return err
		}
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil {
				out[p.Addr().Unmap()] = true
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list local addresses: %w", err)
	}
	return out, nil
}
