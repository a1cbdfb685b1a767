package ebpf

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// ctPair is one half as read from pc_ct.
type ctPair struct {
	k endpointCtKey
	v endpointCtEntry
}

func readCT(m *ebpf.Map) ([]ctPair, error) {
	var (
		out []ctPair
		p   ctPair
	)
	it := m.Iterate()
	for it.Next(&p.k, &p.v) {
		out = append(out, p)
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read conntrack: %w", err)
	}
	return out, nil
}

// partner is the key of the other half: the reverse of this half's
// translated tuple.
func partner(v endpointCtEntry) endpointCtKey {
	n := v.Nat
	return endpointCtKey{Saddr: n.Daddr, Daddr: n.Saddr, Sport: n.Dport, Dport: n.Sport, Proto: n.Proto}
}

// deletePairs removes the halves and their partners.
func deletePairs(m *ebpf.Map, halves []ctPair) (int, error) {
	n := 0
	var errs []error
	for _, h := range halves {
		for _, k := range []endpointCtKey{h.k, partner(h.v)} {
			err := m.Delete(k)
			if err == nil {
				n++
			} else if !errors.Is(err, ebpf.ErrKeyNotExist) {
				errs = append(errs, err)
			}
		}
	}
	return n, errors.Join(errs...)
}

// flushRule selects flows to forget when the model changes (B13): those of
// a removed or changed published port, or of an endpoint address that went
// away.
type flushRule struct {
	port   bool
	addr   netip.Addr
	proto  uint8
	lo, hi uint16 // host ports
}

func (r flushRule) match(p ctPair) bool {
	a := be32(r.addr)
	if !r.port {
		return p.k.Saddr == a || p.k.Daddr == a || p.v.Nat.Saddr == a || p.v.Nat.Daddr == a
	}
	if p.v.Flags&ctDNAT == 0 || p.v.Flags&ctReverse != 0 || p.k.Proto != r.proto || p.v.Nat.Daddr != a {
		return false
	}
	hp := portFromBE16(p.k.Dport)
	return hp >= r.lo && hp <= r.hi
}

// flushCT deletes every pair a rule selects. It scans the table once.
func flushCT(m *ebpf.Map, rules []flushRule) (int, error) {
	all, err := readCT(m)
	if err != nil {
		return 0, err
	}
	var hit []ctPair
	for _, p := range all {
		for _, r := range rules {
			if r.match(p) {
				hit = append(hit, p)
				break
			}
		}
	}
	return deletePairs(m, hit)
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

// collectGarbage deletes the pairs whose halves both expired. A half whose
// partner is missing (should not happen: pairs are created and deleted
// together) goes when it expires itself.
func collectGarbage(m *ebpf.Map, now uint64) (GCResult, error) {
	all, err := readCT(m)
	if err != nil {
		return GCResult{}, err
	}
	byKey := make(map[endpointCtKey]endpointCtEntry, len(all))
	for _, p := range all {
		byKey[p.k] = p.v
	}
	var dead []ctPair
	seen := map[endpointCtKey]bool{}
	for _, p := range all {
		if p.v.Expires > now || seen[p.k] {
			continue
		}
		pk := partner(p.v)
		if pv, ok := byKey[pk]; ok && pv.Expires > now {
			continue
		}
		seen[p.k], seen[pk] = true, true
		dead = append(dead, p)
	}
	n, err := deletePairs(m, dead)
	return GCResult{At: time.Now(), Entries: len(all), Deleted: n}, err
}

// collectGarbage6 deletes expired IPv6 flows (one entry each).
func collectGarbage6(m *ebpf.Map, now uint64) (GCResult, error) {
	var (
		k    endpointCt6Key
		v    endpointCt6Entry
		dead []endpointCt6Key
		res  = GCResult{At: time.Now()}
	)
	it := m.Iterate()
	for it.Next(&k, &v) {
		res.Entries++
		if v.Expires <= now {
			dead = append(dead, k)
		}
	}
	if err := it.Err(); err != nil {
		return res, fmt.Errorf("read ipv6 conntrack: %w", err)
	}
	var errs []error
	for _, k := range dead {
		if err := ignoreNotExist(m.Delete(k)); err != nil {
			errs = append(errs, err)
		} else {
			res.Deleted++
		}
	}
	return res, errors.Join(errs...)
}

// flushCT6 forgets the IPv6 flows of the given container addresses.
func flushCT6(m *ebpf.Map, addrs []netip.Addr) (int, error) {
	want := map[[16]byte]bool{}
	for _, a := range addrs {
		want[a.As16()] = true
	}
	var (
		k    endpointCt6Key
		v    endpointCt6Entry
		dead []endpointCt6Key
	)
	it := m.Iterate()
	for it.Next(&k, &v) {
		if want[k.Daddr] {
			dead = append(dead, k)
		}
	}
	if err := it.Err(); err != nil {
		return 0, err
	}
	n := 0
	for _, k := range dead {
		if m.Delete(k) == nil {
			n++
		}
	}
	return n, nil
}

// collector runs collectGarbage in the background at an adaptive interval:
// shorter while many entries expire (short-lived flows must not fill the
// table, cilium #33074), back to max when little does.
type collector struct {
	mu   sync.Mutex
	last GCResult
	quit chan struct{}
	done chan struct{}
}

func startCollector(m, m6 *ebpf.Map, longest time.Duration, log *slog.Logger) *collector {
	c := &collector{quit: make(chan struct{}), done: make(chan struct{})}
	shortest := max(longest/16, time.Second)
	go func() {
		defer close(c.done)
		wait := longest
		for {
			select {
			case <-c.quit:
				return
			case <-time.After(wait):
			}
			now := monotonicNow()
			res, err := collectGarbage(m, now)
			if err != nil {
				log.Warn("ebpf: conntrack garbage collection", "err", err)
			}
			res6, err := collectGarbage6(m6, now)
			if err != nil {
				log.Warn("ebpf: ipv6 conntrack garbage collection", "err", err)
			}
			res.Entries += res6.Entries
			res.Deleted += res6.Deleted
			c.mu.Lock()
			c.last = res
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
