package ebpf

import (
	"errors"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// half is one half of a pair as read from pc_flows4 (IPv4) or pc_flows6 (IPv6
// published ports and masquerade): its key and its entry.
type half[K comparable, V any] struct {
	k K
	v V
}

// ctPair is one half as read from pc_flows4.
type ctPair = half[bpfCtKey, bpfCtEntry]

// nat6Half is one half as read from pc_flows6.
type nat6Half = half[bpfCt6Key, bpfCt6Entry]

func readHalves[K comparable, V any](m *ebpf.Map) ([]half[K, V], error) {
	keys, vals, err := readAll[K, V](m)
	if err != nil {
		return nil, err
	}
	out := make([]half[K, V], len(keys))
	for i := range keys {
		out[i] = half[K, V]{keys[i], vals[i]}
	}
	return out, nil
}

func readCT(m *ebpf.Map) ([]ctPair, error) { return readHalves[bpfCtKey, bpfCtEntry](m) }

func readNAT6(m *ebpf.Map) ([]nat6Half, error) {
	return readHalves[bpfCt6Key, bpfCt6Entry](m)
}

// partner is the key of the other half: the reverse of this half's
// translated tuple.
func partner(v bpfCtEntry) bpfCtKey {
	n := v.Nat
	return bpfCtKey{Saddr: n.Daddr, Daddr: n.Saddr, Sport: n.Dport, Dport: n.Sport, Proto: n.Proto}
}

func partner6(v bpfCt6Entry) bpfCt6Key {
	n := v.Nat
	return bpfCt6Key{Saddr: n.Daddr, Daddr: n.Saddr, Sport: n.Dport, Dport: n.Sport, Proto: n.Proto}
}

// pairTable is how the generic code sees pc_flows4 or pc_flows6.
type pairTable[K comparable, V any] struct {
	m       *ebpf.Map
	partner func(V) K
	expires func(V) uint64
}

func ctTable(m *ebpf.Map) pairTable[bpfCtKey, bpfCtEntry] {
	return pairTable[bpfCtKey, bpfCtEntry]{m, partner, func(v bpfCtEntry) uint64 { return v.Expires }}
}

func nat6Table(m *ebpf.Map) pairTable[bpfCt6Key, bpfCt6Entry] {
	return pairTable[bpfCt6Key, bpfCt6Entry]{m, partner6, func(v bpfCt6Entry) uint64 { return v.Expires }}
}

// deletePairs removes the halves and their partners.
func (t pairTable[K, V]) deletePairs(halves []half[K, V]) (int, error) {
	keys := make([]K, 0, 2*len(halves))
	for _, h := range halves {
		keys = append(keys, h.k, t.partner(h.v))
	}
	return deleteKeys(t.m, keys)
}

// flush deletes every pair one of whose halves match selects. It scans the
// table once.
func (t pairTable[K, V]) flush(match func(half[K, V]) bool) (int, error) {
	all, err := readHalves[K, V](t.m)
	if err != nil {
		return 0, err
	}
	var hit []half[K, V]
	for _, h := range all {
		if match(h) {
			hit = append(hit, h)
		}
	}
	return t.deletePairs(hit)
}

// collect deletes the pairs whose halves both expired. A half whose partner
// is missing (should not happen: pairs are created and deleted together)
// goes when it expires itself. buf is the memory of the pass (nil: its
// own).
func (t pairTable[K, V]) collect(now uint64, buf *gcBuffers[K, V]) (GCResult, error) {
	if buf == nil {
		buf = &gcBuffers[K, V]{}
	}
	keys, vals, err := readInto(t.m, buf.keys, buf.vals, &buf.batch)
	if err != nil {
		return GCResult{}, err
	}
	if buf.index == nil {
		buf.index = make(map[K]int, len(keys))
	}
	for i, k := range keys {
		buf.index[k] = i
	}
	dead := buf.dead[:0]
	for i, k := range keys {
		if t.expires(vals[i]) > now {
			continue
		}
		pk := t.partner(vals[i])
		j, ok := buf.index[pk]
		// A pair whose halves both expired is taken at its first half.
		if ok && (t.expires(vals[j]) > now || j < i) {
			continue
		}
		dead = append(dead, k, pk)
	}
	n, err := deleteKeys(t.m, dead)
	buf.keep(keys, vals, dead)
	return GCResult{At: time.Now(), Entries: len(keys), Deleted: n}, err
}

// gcBuffers is the collector's memory for one table, kept from pass to
// pass. A pass over tens of thousands of flows allocated some 20 MB; with
// few mappings the agent's Go heap is small, so every pass set the Go
// garbage collector off while API calls ran (p99 of one more mapping, at
// 1,000 mappings after a burst of connections: 1.4 ms, 0.8 without
// collection). Memory grown by a burst is let go once the table has shrunk
// to a quarter of it.
type gcBuffers[K comparable, V any] struct {
	batch batchBufs[K, V]
	keys  []K
	vals  []V
	index map[K]int // position of each key in keys
	dead  []K
}

// keep holds on to the pass's slices for the next one, or lets everything
// go after a burst.
func (b *gcBuffers[K, V]) keep(keys []K, vals []V, dead []K) {
	const small = 4096
	if cap(keys) > small && len(keys) < cap(keys)/4 {
		*b = gcBuffers[K, V]{batch: b.batch}
		return
	}
	b.keys, b.vals, b.dead = keys, vals, dead[:0]
	clear(b.index)
}

// flushRule selects flows to forget when the model changes (B13): those of
// a removed or changed published port, of an endpoint address that went
// away, or of a removed link. IPv4 rules apply to pc_flows4, IPv6 ones to
// pc_flows6 and pc_track6.
type flushRule struct {
	port   bool
	link   bool
	addr   netip.Addr // the endpoint; for links the parent
	peer   netip.Addr // for links: the child
	proto  uint8
	lo, hi uint16 // host ports
}

func (r flushRule) match(p ctPair) bool {
	a := be32(r.addr)
	switch {
	case r.link:
		b := be32(r.peer)
		return p.v.Flags&ctLink != 0 && (p.k.Saddr == a && p.k.Daddr == b || p.k.Saddr == b && p.k.Daddr == a)
	case !r.port:
		return p.k.Saddr == a || p.k.Daddr == a || p.v.Nat.Saddr == a || p.v.Nat.Daddr == a
	}
	if p.v.Flags&ctDNAT == 0 || p.v.Flags&ctReverse != 0 || p.k.Proto != r.proto || p.v.Nat.Daddr != a {
		return false
	}
	hp := portFromBE16(p.k.Dport)
	return hp >= r.lo && hp <= r.hi
}

func (r flushRule) match6(h nat6Half) bool {
	a := r.addr.As16()
	if !r.port {
		return h.k.Saddr == a || h.k.Daddr == a || h.v.Nat.Saddr == a || h.v.Nat.Daddr == a
	}
	if h.v.Flags&ctDNAT == 0 || h.v.Flags&ctReverse != 0 || h.k.Proto != r.proto || h.v.Nat.Daddr != a {
		return false
	}
	hp := portFromBE16(h.k.Dport)
	return hp >= r.lo && hp <= r.hi
}

// flushCT deletes every pc_flows4 pair a rule selects.
func flushCT(m *ebpf.Map, rules []flushRule) (int, error) {
	if !slices.ContainsFunc(rules, func(r flushRule) bool { return r.addr.Is4() }) {
		return 0, nil
	}
	return ctTable(m).flush(func(p ctPair) bool {
		for _, r := range rules {
			if r.addr.Is4() && r.match(p) {
				return true
			}
		}
		return false
	})
}

// flushNAT6 deletes every pc_flows6 pair an IPv6 rule selects.
func flushNAT6(m *ebpf.Map, rules []flushRule) (int, error) {
	if !slices.ContainsFunc(rules, func(r flushRule) bool { return r.addr.Is6() && !r.link }) {
		return 0, nil
	}
	return nat6Table(m).flush(func(h nat6Half) bool {
		for _, r := range rules {
			if r.addr.Is6() && !r.link && r.match6(h) {
				return true
			}
		}
		return false
	})
}

func monotonicNow() uint64 {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts) // bpf_ktime_get_ns's clock
	return uint64(ts.Nano())
}

// GCResult is what one garbage collection did.
type GCResult struct {
	At      time.Time `json:"at"`
	Entries int       `json:"entries"`
	Deleted int       `json:"deleted"`
}

// collectGarbage6 deletes expired IPv6 flows (one entry each).
func collectGarbage6(m *ebpf.Map, now uint64) (GCResult, error) {
	res := GCResult{At: time.Now()}
	var err error
	res.Entries, res.Deleted, err = prune(m, func(_ bpfCt6Key, v bpfTrack6Entry) bool { return v.Expires <= now })
	return res, err
}

// flushCT6 forgets the pc_track6 flows of the IPv6 container addresses that
// went away (rules with neither port nor link), and the link flows between
// the IPv6 parent/child pairs of rules with link set.
func flushCT6(m *ebpf.Map, rules []flushRule) (int, error) {
	want := map[[16]byte]bool{}
	type pair struct{ child, parent [16]byte }
	linked := map[pair]bool{}
	for _, r := range rules {
		switch {
		case !r.addr.Is6():
		case r.link && r.peer.Is6():
			linked[pair{child: r.peer.As16(), parent: r.addr.As16()}] = true
		case !r.link && !r.port:
			want[r.addr.As16()] = true
		}
	}
	if len(want) == 0 && len(linked) == 0 {
		return 0, nil
	}
	// Flows to the outside are keyed by their replies, so the container is
	// the destination; link flows by the child's answers, from child to
	// parent.
	_, n, err := prune(m, func(k bpfCt6Key, v bpfTrack6Entry) bool {
		return want[k.Daddr] || want[k.Saddr] || v.Flags&track6Link != 0 && linked[pair{child: k.Saddr, parent: k.Daddr}]
	})
	return n, err
}

// flushFlows is the work of b.flushq: it forgets the flows the rules of
// every change queued meanwhile select, in one pass over each table that
// any rule concerns. It holds no lock over the walk, so Apply never waits
// for it.
func (b *Backend) flushFlows(rules []flushRule) {
	ms, err := b.stateMaps(mapFlows4, mapTrack6, mapFlows6)
	if err != nil {
		b.log.Warn("ebpf: forget flows of removed mappings, endpoints and links", "err", err)
		return
	}
	if ms == nil {
		return
	}
	defer closeMaps(ms)
	n4, err4 := flushCT(ms[mapFlows4], rules)
	n6, err6 := flushCT6(ms[mapTrack6], rules)
	nn, errn := flushNAT6(ms[mapFlows6], rules)
	if err := errors.Join(err4, err6, errn); err != nil {
		b.log.Warn("ebpf: forget flows of removed mappings, endpoints and links", "err", err)
	}
	if n := n4 + n6 + nn; n > 0 {
		b.log.Debug("ebpf: flushed conntrack entries", "entries", n)
	}
}

// collector deletes the expired flows of pc_flows4, pc_track6 and pc_flows6 in the
// background at an adaptive interval: shorter while many entries expire
// (short-lived flows must not fill the table, cilium #33074), back to max
// when little does.
type collector struct {
	mu   sync.Mutex
	last GCResult
	// left is what each table held after the last collection, for Fill.
	left map[string]int
	quit chan struct{}
	done chan struct{}
}

func startCollector(m, m6, nat6 *ebpf.Map, longest time.Duration, log *slog.Logger) *collector {
	c := &collector{quit: make(chan struct{}), done: make(chan struct{})}
	shortest := max(longest/16, time.Second)
	go func() {
		defer close(c.done)
		var (
			ctBuf   gcBuffers[bpfCtKey, bpfCtEntry]
			nat6Buf gcBuffers[bpfCt6Key, bpfCt6Entry]
		)
		wait := longest
		for {
			select {
			case <-c.quit:
				return
			case <-time.After(wait):
			}
			now := monotonicNow()
			res, err := ctTable(m).collect(now, &ctBuf)
			if err != nil {
				log.Warn("ebpf: conntrack garbage collection", "err", err)
			}
			res6, err := collectGarbage6(m6, now)
			if err != nil {
				log.Warn("ebpf: ipv6 conntrack garbage collection", "err", err)
			}
			resNAT6, err := nat6Table(nat6).collect(now, &nat6Buf)
			if err != nil {
				log.Warn("ebpf: ipv6 nat garbage collection", "err", err)
			}
			left := map[string]int{
				mapFlows4: res.Entries - res.Deleted,
				mapTrack6: res6.Entries - res6.Deleted,
				mapFlows6: resNAT6.Entries - resNAT6.Deleted,
			}
			res.Entries += res6.Entries + resNAT6.Entries
			res.Deleted += res6.Deleted + resNAT6.Deleted
			c.mu.Lock()
			c.last, c.left = res, left
			c.mu.Unlock()
			switch {
			case res.Entries > 0 && res.Deleted*4 >= res.Entries:
				wait = max(wait/2, shortest)
			case res.Deleted == 0:
				wait = min(wait*2, longest)
			}
		}
	}()
	return c
}

func (c *collector) stop() {
	close(c.quit)
	<-c.done
}

func (c *collector) result() GCResult {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last
}

// entries is what each table held after the last collection; nil before
// the first.
func (c *collector) entries() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.left
}
