package docker

import (
	"maps"
	"reflect"
	"slices"

	"github.com/portcullis/portcullis/dataplane/model"
)

// Plan returns the changes that make the Docker-owned part of cur equal to
// want, in an order the model accepts at every step: what goes away first
// (links, ports, endpoints), so a host port or an address can move from
// one container to another in one sync; then networks, endpoints, ports and
// links that are new or changed; networks that went away last.
//
// Objects of cur made through the API are left alone; a Docker object
// whose name one of them already has is reported in skipped.
func Plan(cur *model.State, want *Desired) (ops []model.Op, skipped []string) {
	// An operator's icc override of a Docker network survives every sync.
	for name, n := range want.Networks {
		if c, ok := cur.Networks[name]; ok && mine(c.Source) && c.ICCOverride {
			n.ICC, n.ICCOverride = c.ICC, true
			want.Networks[name] = n
		}
	}
	p := &planner{}
	gone(p, "link", cur.Links, want.Links, func(l model.Link) string { return l.Source })
	gone(p, "port", cur.Ports, want.Ports, func(x model.PortMapping) string { return x.Source })
	gone(p, "endpoint", cur.Endpoints, want.Endpoints, func(e model.Endpoint) string { return e.Source })
	changed(p, cur.Networks, want.Networks, func(n model.Network) string { return n.Source },
		func(a, b model.Network) bool { return reflect.DeepEqual(a, b) },
		func(n model.Network) model.Op { return model.Op{Kind: "network", Network: &n} })
	changed(p, cur.Endpoints, want.Endpoints, func(e model.Endpoint) string { return e.Source }, sameEndpoint,
		func(e model.Endpoint) model.Op { return model.Op{Kind: "endpoint", Endpoint: &e} })
	changed(p, cur.Ports, want.Ports, func(x model.PortMapping) string { return x.Source },
		func(a, b model.PortMapping) bool { return a == b },
		func(x model.PortMapping) model.Op { return model.Op{Kind: "port", Port: &x} })
	changed(p, cur.Links, want.Links, func(l model.Link) string { return l.Source },
		func(a, b model.Link) bool { a.Env, a.Hosts = nil, ""; return reflect.DeepEqual(a, b) },
		func(l model.Link) model.Op { return model.Op{Kind: "link", Link: &l} })
	gone(p, "network", cur.Networks, want.Networks, func(n model.Network) string { return n.Source })
	return p.ops, p.skipped
}

func mine(source string) bool { return source == model.SourceDocker }

type planner struct {
	ops     []model.Op
	skipped []string
}

// gone deletes the Docker objects of cur that want no longer has.
func gone[V any](p *planner, kind string, cur, want map[string]V, source func(V) string) {
	for _, k := range slices.Sorted(maps.Keys(cur)) {
		if _, ok := want[k]; !ok && mine(source(cur[k])) {
			p.ops = append(p.ops, model.Op{Kind: kind, Delete: true, Key: k})
		}
	}
}

// changed puts the objects of want that cur lacks or has otherwise,
// skipping names that the API's objects hold.
func changed[V any](p *planner, cur, want map[string]V, source func(V) string, same func(a, b V) bool, put func(V) model.Op) {
	for _, k := range slices.Sorted(maps.Keys(want)) {
		c, ok := cur[k]
		switch {
		case ok && !mine(source(c)):
			op := put(want[k])
			p.skipped = append(p.skipped, op.Kind+" "+k+": the name is taken by one made through the API")
		case !ok || !same(c, want[k]):
			p.ops = append(p.ops, put(want[k]))
		}
	}
}

// sameEndpoint compares what Docker sets; empty and nil lists are equal.
func sameEndpoint(a, b model.Endpoint) bool {
	a.HostVeth, b.HostVeth = "", ""
	if len(a.Exposed) == 0 && len(b.Exposed) == 0 {
		a.Exposed, b.Exposed = nil, nil
	}
	if len(a.Env) == 0 && len(b.Env) == 0 {
		a.Env, b.Env = nil, nil
	}
	return reflect.DeepEqual(a, b)
}
