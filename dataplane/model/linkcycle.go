package model

import (
	"maps"
	"slices"
	"strings"
)

// checkLinkCycle refuses a link that would close a cycle: parent reaching
// child reaching, through other links, parent again. Docker's legacy
// links come from docker run/create --link, which names only containers
// that already exist, so they never form one (an early Docker that let
// them, through links given at start, ran out of memory: moby issue
// 10346). Refusing cycles keeps every link one Docker could have made.
// Change asks this of new links only (see there).
func (r *Resolved) checkLinkCycle(l Link) error {
	path := r.linkPath(l.Child, l.Parent, l.Key())
	if path == nil {
		return nil
	}
	cycle := append([]string{l.Parent}, path...)
	return conflict("child", "link %s to %q would close the cycle %s: links cannot form a cycle (Docker's cannot); delete one of the links on that cycle first",
		l.Key(), l.Child, strings.Join(cycle, " -> "))
}

// linkPath returns the endpoints on the shortest chain of links from one
// endpoint to another (both included), leaving out the link skip (the one
// being replaced), or nil when there is none.
func (r *Resolved) linkPath(from, to, skip string) []string {
	prev := map[string]string{from: ""}
	queue := []string{from}
	for len(queue) > 0 {
		id := queue[0]
		queue = queue[1:]
		for _, key := range slices.Sorted(maps.Keys(r.idx.linksByEP[id])) {
			lk := r.Links[key]
			if key == skip || lk.Parent.ID != id {
				continue
			}
			next := lk.Child.ID
			if _, seen := prev[next]; seen {
				continue
			}
			prev[next] = id
			if next == to {
				return chain(prev, from, to)
			}
			queue = append(queue, next)
		}
	}
	return nil
}

// chain walks prev back from to and returns the endpoints from from to to.
func chain(prev map[string]string, from, to string) []string {
	out := []string{to}
	for id := to; id != from; {
		id = prev[id]
		out = append(out, id)
	}
	slices.Reverse(out)
	return out
}
