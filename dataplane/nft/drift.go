package nft

import (
	"slices"

	"github.com/google/nftables"
)

// drifted reports whether the kernel's tables of the backend's mode differ
// from what its last sync left there (b.mu held): a table or chain gone, a
// chain with another number of rules, a set (interval sets aside: the
// kernel splits their elements) with another number of elements. It only
// reads; failing to list chains or elements counts as drift (the full sync
// that follows rewrites everything anyway). Rules google/nftables cannot
// decode (it reads the ct direction attribute as 32 bits, the kernel
// sends 8: chains stale-target*) are not counted. Before the first sync
// there is nothing to compare with.
func (b *Backend) drifted() bool {
	if len(b.refs) == 0 {
		return false
	}
	c, err := b.conn(0)
	if err != nil {
		return true
	}
	for _, t := range schema(b.mode, b.mark) {
		tbl := t.table()
		have, err := c.ListChainsOfTableFamily(t.fam)
		if err != nil {
			return true
		}
		for _, ch := range t.chains {
			if !slices.ContainsFunc(have, func(k *nftables.Chain) bool { return k.Table.Name == t.name && k.Name == ch.name }) {
				return true
			}
			rules, err := c.GetRules(tbl, &nftables.Chain{Name: ch.name, Table: tbl})
			if err == nil && len(rules) != len(ch.rules) {
				return true
			}
		}
		for _, s := range t.sets {
			if s.interval {
				continue
			}
			es, err := c.GetSetElements(&nftables.Set{Table: tbl, Name: s.name, KeyType: concatType(s.key)})
			if err != nil || len(es) != b.counts[setKey(b.mode, s)] {
				return true
			}
		}
	}
	return false
}

// Repaired implements dataplane.Repairer: the full syncs that found the
// tables drifted (see drifted) and put them right.
func (b *Backend) Repaired() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.stats.repaired
}
