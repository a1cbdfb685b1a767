package nft

import (
	"fmt"

	"github.com/google/nftables"

	"github.com/portcullis/portcullis/dataplane/model"
)

// refs are the elements the kernel holds, by refKey, with the number of
// objects that stand for each. A node holds two or three elements per
// port mapping, 100,000s of them: an elem with its text and byte slices
// costs some 400 bytes, a ref some 60. The elements themselves are built
// again from the model objects whenever a change needs them; so is a map
// element's data (see planDelta).
type refs map[string]int32

// refKey identifies an element in the backend's tables, as compact as the
// kernel's own key: its set's index in setRegistry and its key bytes (with
// the key's end for intervals). Two elements with one refKey are the same
// kernel object, as with id.
func refKey(e elem) string {
	k := concatBytes(e.key, false)
	b := make([]byte, 0, 1+2*len(k))
	b = append(b, e.set.idx)
	b = append(b, k...)
	if e.set.interval {
		b = append(b, concatBytes(e.key, true)...)
	}
	return string(b)
}

// setOf returns the set of a refKey.
func setOf(k string) *setDef { return setRegistry[k[0]] }

// dataOf is the element's data bytes, "" for a set element.
func dataOf(e elem) string {
	if e.data == nil {
		return ""
	}
	return string(concatBytes(e.data, false))
}

// refsOf returns the refs of a set of held elements.
func refsOf(elems map[string]*held) refs {
	out := make(refs, len(elems))
	for _, h := range elems {
		out[refKey(h.e)] = int32(h.n)
	}
	return out
}

// counts returns the elements of each set (setKey) of mode m.
func (r refs) counts(m Mode) map[string]int {
	counts := map[string]int{}
	for k := range r {
		counts[setKey(m, setOf(k))]++
	}
	return counts
}

// elemQueue queues element additions set by set, a message of at most
// elemsPerMessage elements at a time, so that a full sync never holds every
// element at once: only the refs and the netlink batch.
type elemQueue struct {
	c     *nftables.Conn
	sets  map[*setDef]*nftables.Set
	batch map[*setDef][]nftables.SetElement
	// queued counts the kernel elements queued (an interval can be two).
	queued int
}

func (q *elemQueue) add(e elem) error {
	ks := e.kernelElems()
	q.queued += len(ks)
	q.batch[e.set] = append(q.batch[e.set], ks...)
	if len(q.batch[e.set]) >= elemsPerMessage {
		return q.flush(e.set)
	}
	return nil
}

func (q *elemQueue) flush(s *setDef) error {
	b := q.batch[s]
	if len(b) == 0 {
		return nil
	}
	ks := q.sets[s]
	if ks == nil {
		return fmt.Errorf("set %s: not in the tables being created", s.name)
	}
	if err := q.c.SetAddElements(ks, b); err != nil {
		return fmt.Errorf("set %s: %w", s.name, err)
	}
	q.batch[s] = b[:0]
	return nil
}

func (q *elemQueue) flushAll() error {
	for s := range q.batch {
		if err := q.flush(s); err != nil {
			return err
		}
	}
	return nil
}

// queueWant queues every element of want in mode m's tables (and extra),
// one object at a time, and returns their refs.
func queueWant(q *elemQueue, m Mode, want *model.Resolved, extra ...elem) (refs, error) {
	out := refs{}
	var err error
	add := func(es []elem) {
		for _, e := range es {
			if err != nil || !m.holds(e.set) {
				continue
			}
			k := refKey(e)
			if n, ok := out[k]; ok {
				out[k] = n + 1
				continue
			}
			out[k] = 1
			err = q.add(e)
		}
	}
	add(extra)
	eachObjectElems(want, add)
	if err != nil {
		return nil, err
	}
	return out, q.flushAll()
}
