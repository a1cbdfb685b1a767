package nft

import (
	"github.com/portcullis/portcullis/dataplane/model"
)

// plan is what an incremental sync sends: the elements to delete and to
// add, and the reference counts to keep once the kernel took them.
type plan struct {
	mode       Mode
	dels, adds []elem
	next       map[string]int32 // 0: the element is deleted
}

// touch is the net effect of a delta on one element.
type touch struct {
	dn   int
	any  elem  // a version of it, for its key and set
	prev *elem // the version the delta removes, if any
	last *elem // the newest version added, if any
}

// planDelta turns d into element operations. Its cost is the number of
// elements the changed objects stand for, never the size of the state.
// Reference counts make it safe when two objects stand for the same element
// (two links between the same endpoints), and when a change deletes and adds
// the same element (an endpoint re-resolved with the same addresses): the
// kernel sees nothing for it. Only elements of the tables of mode m count.
//
// A deleted element is sent as the delta's old object stands for it (the
// kernel finds it by its key, which is what makes it the same element).
// Whether a map element's data changed is told by the old and new version
// in the delta: map keys (a published host port, an endpoint's or a
// network's address) stand for one object each, so the old version is the
// one the kernel holds; a map element held and added by another object
// without its old version is replaced, to be sure.
func planDelta(m Mode, held refs, d *model.Delta) *plan {
	touched := map[string]*touch{}
	var order []string
	bump := func(es []elem, dn int) {
		for _, e := range es {
			if !m.holds(e.set) {
				continue
			}
			k := refKey(e)
			t := touched[k]
			if t == nil {
				t = &touch{any: e}
				touched[k] = t
				order = append(order, k)
			}
			t.dn += dn
			e := e
			if dn > 0 {
				t.last = &e
			} else {
				t.prev = &e
			}
		}
	}
	forDelta(d, func(old, new []elem) { bump(old, -1); bump(new, +1) })

	p := &plan{mode: m, next: map[string]int32{}}
	for _, k := range order {
		p.resolve(k, int(held[k]), touched[k])
	}
	return p
}

// resolve decides the kernel operations for one element held n0 times.
func (p *plan) resolve(k string, n0 int, t *touch) {
	n1 := n0 + t.dn
	switch {
	case n1 <= 0 && n0 > 0:
		p.dels = append(p.dels, t.any)
		p.next[k] = 0
	case n1 <= 0:
		// Removing what we do not hold: nothing to do in the kernel.
	case n0 == 0:
		p.adds = append(p.adds, *t.last)
		p.next[k] = int32(n1)
	case t.last != nil && t.last.data != nil && (t.prev == nil || dataOf(*t.prev) != dataOf(*t.last)):
		p.dels = append(p.dels, t.any)
		p.adds = append(p.adds, *t.last)
		p.next[k] = int32(n1)
	default:
		p.next[k] = int32(n1)
	}
}

// commit records the plan in held after the kernel accepted it, and keeps
// the per-set element counts.
func (p *plan) commit(held refs, counts map[string]int) {
	for k, n := range p.next {
		_, had := held[k]
		switch {
		case n == 0 && had:
			delete(held, k)
			counts[setKey(p.mode, setOf(k))]--
		case n == 0:
		case !had:
			held[k] = n
			counts[setKey(p.mode, setOf(k))]++
		default:
			held[k] = n
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
