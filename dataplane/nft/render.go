package nft

import (
	"bytes"
	"maps"
	"slices"
	"strings"

	"github.com/portcullis/portcullis/dataplane/model"
)

// held is an element in the kernel (or about to be) and the number of
// objects that stand for it. Only links can share an element (two aliases
// for the same parent and child); validation keeps everything else unique.
type held struct {
	e elem
	n int
}

// eachObjectElems calls add with the elements of each object of want, one
// object at a time: networks, endpoints, ports, links.
func eachObjectElems(want *model.Resolved, add func([]elem)) {
	for _, n := range want.Networks {
		add(networkElems(n))
	}
	for _, e := range want.Endpoints {
		add(endpointElems(e))
	}
	for _, p := range want.Ports {
		add(portElems(p))
	}
	for _, l := range want.Links {
		add(linkElems(l))
	}
}

// wantElems returns every element that want stands for in the tables of
// mode m.
func wantElems(m Mode, want *model.Resolved) map[string]*held {
	out := map[string]*held{}
	add := func(es []elem) {
		for _, e := range es {
			if !m.holds(e.set) {
				continue
			}
			if h := out[e.id()]; h != nil {
				h.n++
			} else {
				out[e.id()] = &held{e: e, n: 1}
			}
		}
	}
	eachObjectElems(want, add)
	return out
}

// Render returns the ruleset the backend programs for want with the default
// options (ModeFull), as `nft list table` prints it right after a first
// sync (all drop counters at zero). routeLocalnet is the saved sysctl value
// shown in set saved-route_localnet. The text comes from the same rule and
// element descriptions as the netlink messages.
func Render(want *model.Resolved, routeLocalnet uint32) string {
	return RenderMode(ModeFull, want, routeLocalnet)
}

// RenderMode is Render for a backend in mode m: for ModeLocal, the one
// table inet portcullis-local.
func RenderMode(m Mode, want *model.Resolved, routeLocalnet uint32) string {
	return renderWith(m, want, routeLocalnet, DefaultPublishedMark)
}

// renderWith is RenderMode for a backend with Options.PublishedMark = mark.
func renderWith(m Mode, want *model.Resolved, routeLocalnet, mark uint32) string {
	elems := wantElems(m, want)
	saved := el(setSavedLocalnet, vMark(routeLocalnet))
	elems[saved.id()] = &held{e: saved, n: 1}
	return render(m, elems, mark)
}

func render(m Mode, elems map[string]*held, mark uint32) string {
	bySet := map[*setDef][]elem{}
	for _, id := range slices.Sorted(maps.Keys(elems)) {
		e := elems[id].e
		bySet[e.set] = append(bySet[e.set], e)
	}
	var sb strings.Builder
	for _, t := range schema(m, mark) {
		renderTable(&sb, t, bySet)
	}
	return sb.String()
}

func renderTable(sb *strings.Builder, t *tableDef, bySet map[*setDef][]elem) {
	sb.WriteString("table " + famName(t.fam) + " " + t.name + " {\n")
	var blocks []string
	for _, c := range t.counters { // nft lists objects before sets
		blocks = append(blocks, "\tcounter "+c.name()+" {\n\t\tpackets 0 bytes 0\n\t}\n")
	}
	for _, s := range t.sets {
		blocks = append(blocks, renderSet(s, bySet[s]))
	}
	for _, c := range t.chains {
		blocks = append(blocks, renderChain(c))
	}
	sb.WriteString(strings.Join(blocks, "\n"))
	sb.WriteString("}\n")
}

func renderSet(s *setDef, es []elem) string {
	var sb strings.Builder
	kind, typ := "set", typeText(s.key)
	if s.data != nil {
		kind, typ = "map", typ+" : "+typeText(s.data)
	}
	sb.WriteString("\t" + kind + " " + s.name + " {\n\t\ttype " + typ + "\n")
	if s.interval {
		sb.WriteString("\t\tflags interval\n")
	}
	if len(es) > 0 {
		// Sorted by key bytes, as nft lists them.
		slices.SortFunc(es, func(a, b elem) int {
			return bytes.Compare(concatBytes(a.key, false), concatBytes(b.key, false))
		})
		texts := make([]string, len(es))
		for i, e := range es {
			texts[i] = e.String()
		}
		sb.WriteString("\t\telements = { " + strings.Join(texts, ",\n\t\t\t     ") + " }\n")
	}
	sb.WriteString("\t}\n")
	return sb.String()
}

func renderChain(c *chainDef) string {
	var sb strings.Builder
	sb.WriteString("\tchain " + c.name + " {\n")
	if c.base != nil {
		sb.WriteString("\t\t" + c.head + "\n")
	}
	for _, r := range c.rules {
		sb.WriteString("\t\t" + r.text + "\n")
	}
	sb.WriteString("\t}\n")
	return sb.String()
}
