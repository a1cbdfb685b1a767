package model

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"slices"
)

// StateWriter writes a desired state as the JSON fields of State
// ("settings", "networks", "endpoints", "ports", "links"), for a snapshot
// written piece by piece instead of marshalled whole.
type StateWriter interface {
	WriteStateJSON(w io.Writer) error
}

// Frozen is the desired state at one moment, to be written out while
// changes go on. Resolved objects are never changed in place (a change
// stores a new object), so holding pointers to them holds that moment:
// 8 bytes per object, where a State copy costs a PortMapping (and its map
// slot) per mapping.
type Frozen struct {
	settings  Settings
	networks  []*RNetwork
	endpoints []*REndpoint
	ports     []*RPort
	links     []*RLink
}

// Freeze returns the state as it is now.
func (r *Resolved) Freeze() *Frozen {
	f := &Frozen{settings: r.Settings}
	f.settings.Uplinks = slices.Clone(r.Settings.Uplinks)
	for _, n := range r.Networks {
		f.networks = append(f.networks, n)
	}
	for _, e := range r.Endpoints {
		f.endpoints = append(f.endpoints, e)
	}
	f.ports = make([]*RPort, 0, len(r.Ports))
	for _, p := range r.Ports {
		f.ports = append(f.ports, p)
	}
	for _, l := range r.Links {
		f.links = append(f.links, l)
	}
	return f
}

// WriteStateJSON implements StateWriter: the objects as given, each
// kind's in the order of their keys (as json.Marshal orders a map's).
func (f *Frozen) WriteStateJSON(w io.Writer) error {
	slices.SortFunc(f.networks, func(a, b *RNetwork) int { return cmp.Compare(a.Name, b.Name) })
	slices.SortFunc(f.endpoints, func(a, b *REndpoint) int { return cmp.Compare(a.ID, b.ID) })
	slices.SortFunc(f.ports, func(a, b *RPort) int { return cmp.Compare(a.ID, b.ID) })
	slices.SortFunc(f.links, func(a, b *RLink) int { return cmp.Compare(a.Spec.Key(), b.Spec.Key()) })
	jw := &jsonFields{w: w}
	jw.value("settings", f.settings)
	writeObjects(jw, "networks", f.networks, func(n *RNetwork) (string, any) { return n.Name, n.Spec })
	writeObjects(jw, "endpoints", f.endpoints, func(e *REndpoint) (string, any) { return e.ID, e.Spec })
	writeObjects(jw, "ports", f.ports, func(p *RPort) (string, any) { return p.ID, p.Spec() })
	writeObjects(jw, "links", f.links, func(l *RLink) (string, any) { return l.Spec.Key(), l.Spec })
	return jw.err
}

// WriteStateJSON implements StateWriter.
func (s *State) WriteStateJSON(w io.Writer) error {
	jw := &jsonFields{w: w}
	jw.value("settings", s.Settings)
	jw.value("networks", s.Networks)
	jw.value("endpoints", s.Endpoints)
	jw.value("ports", s.Ports)
	jw.value("links", s.Links)
	return jw.err
}

// jsonFields writes "name":value pairs separated by commas, keeping the
// first error.
type jsonFields struct {
	w   io.Writer
	n   int
	err error
}

func (j *jsonFields) raw(s string) {
	if j.err == nil {
		_, j.err = io.WriteString(j.w, s)
	}
}

func (j *jsonFields) key(name string) {
	if j.n > 0 {
		j.raw(",")
	}
	j.n++
	b, _ := json.Marshal(name)
	j.raw(string(b) + ":")
}

func (j *jsonFields) value(name string, v any) {
	j.key(name)
	b, err := json.Marshal(v)
	if err != nil && j.err == nil {
		j.err = fmt.Errorf("encode %s: %w", name, err)
	}
	j.raw(string(b))
}

// writeObjects writes name as a JSON object of objs, one marshalled at a
// time.
func writeObjects[T any](j *jsonFields, name string, objs []T, kv func(T) (string, any)) {
	j.key(name)
	inner := &jsonFields{w: j.w}
	inner.raw("{")
	for _, o := range objs {
		k, v := kv(o)
		inner.value(k, v)
	}
	inner.raw("}")
	if j.err == nil {
		j.err = inner.err
	}
}
