package nft

import (
	"github.com/portcullis/portcullis/dataplane/model"
)

// plan is what an incremental sync sends: the elements to delete and to
// add, and the reference counts to keep once the kernel took them.
type plan struct {
	mode       Mode
	dels, adds []elem
	next       map[string]*held // nil value: the element is gone
}

// touch is the net effect of a delta on one element id.
type touch struct {
	dn   int
	last *elem // the newest version added, if any
}

// planDelta turns d into element operations. Its cost is the number of
// elements the changed objects stand for, never the size of the state.
// Reference counts make it safe when two objects stand for the same element
// (two links between the same endpoints), and when a change deletes and adds
// the same element (an endpoint re-resolved with the same addresses): the
// kernel sees nothing for it. Only elements of the tables of mode m count.
func planDelta(m Mode, refs map[string]*held, d *model.Delta) *plan {
	touched := map[string]*touch{}
	var order []string
	bump := func(es []elem, dn int) {
		for _, e := range es {
			if !m.holds(e.set) {
				continue
			}
			t := touched[e.id()]
			if t == nil {
				t = &touch{}
				touched[e.id()] = t
				order = append(order, e.id())
			}
			t.dn += dn
			if dn > 0 {
				e := e
				t.last = &e
			}
		}
	}
	forDelta(d, func(old, new []elem) { bump(old, -1); bump(new, +1) })

	p := &plan{mode: m, next: map[string]*held{}}
	for _, id := range order {
		p.resolve(id, refs[id], touched[id])
	}
	return p
}

// resolve decides the kernel operations for one element id.
func (p *plan) resolve(id string, before *held, t *touch) {
	n0 := 0
	if before != nil {
		n0 = before.n
	}
	n1 := n0 + t.dn
	switch {
	case n1 <= 0 && n0 > 0:
		p.dels = append(p.dels, before.e)
		p.next[id] = nil
	case n1 <= 0:
		// Removing what we do not hold: nothing to do in the kernel.
	case n0 == 0:
		p.adds = append(p.adds, *t.last)
		p.next[id] = &held{e: *t.last, n: n1}
	case t.last != nil && !t.last.sameData(before.e):
		p.dels = append(p.dels, before.e)
		p.adds = append(p.adds, *t.last)
		p.next[id] = &held{e: *t.last, n: n1}
	default:
		p.next[id] = &held{e: before.e, n: n1}
	}
}

// commit records the plan in refs after the kernel accepted it, and keeps
// the per-set element counts.
func (p *plan) commit(refs map[string]*held, counts map[string]int) {
	for id, h := range p.next {
		before := refs[id]
		switch {
		case h == nil && before != nil:
			delete(refs, id)
			counts[setKey(p.mode, before.e.set)]--
		case h != nil && before == nil:
			refs[id] = h
			counts[setKey(p.mode, h.e.set)]++
		case h != nil:
			refs[id] = h
		}
	}
}

// setKey names set s of mode m's tables: "inet portcullis dnat4".
func setKey(m Mode, s *setDef) string { return famName(s.fam) + " " + m.table() + " " + s.name }

// forDelta calls f with the elements of the old and the new version of
// every object that d changes.
func forDelta(d *model.Delta, f func(old, new []elem)) {
	for _, c := range d.Networks {
		f(elemsOf(c.Old, networkElems), elemsOf(c.New, networkElems))
	}
	for _, c := range d.Endpoints {
		f(elemsOf(c.Old, endpointElems), elemsOf(c.New, endpointElems))
	}
	for _, c := range d.Ports {
		f(elemsOf(c.Old, portElems), elemsOf(c.New, portElems))
	}
	for _, c := range d.Links {
		f(elemsOf(c.Old, linkElems), elemsOf(c.New, linkElems))
	}
}

func elemsOf[T any](x *T, f func(*T) []elem) []elem {
	if x == nil {
		return nil
	}
	return f(x)
}
