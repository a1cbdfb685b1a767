package model

import (
	"net/netip"
	"slices"
)

// index holds the lookups that keep every change O(1) in the number of
// objects: uniqueness of bridges, addresses and interfaces, who refers to
// whom, and which host ports are taken.
type index struct {
	bridges   map[string]string              // bridge -> network
	addrs     map[netip.Addr]string          // endpoint IPv4/IPv6 -> endpoint
	ifnames   map[string]string              // host ifname -> endpoint
	macs      map[string]string              // network/mac -> endpoint
	epsByNet  map[string]map[string]struct{} // network -> endpoints
	portsByEP map[string]map[string]struct{} // endpoint -> port mappings
	linksByEP map[string]map[string]struct{} // endpoint (parent or child) -> links
	// hostPorts holds the single-port mappings of each host port: nearly
	// always one (there are 100,000s of ports, and a set per port costs
	// some 200 bytes), so the first is here and any others, on other host
	// addresses, in morePorts.
	hostPorts  map[hostPortKey]string
	morePorts  map[hostPortKey][]string
	rangePorts map[string]struct{} // port mappings with a host port range
}

type hostPortKey struct {
	proto uint8
	port  uint16
}

func newIndex() index {
	return index{
		bridges: map[string]string{}, addrs: map[netip.Addr]string{}, ifnames: map[string]string{},
		macs: map[string]string{}, epsByNet: map[string]map[string]struct{}{},
		portsByEP: map[string]map[string]struct{}{}, linksByEP: map[string]map[string]struct{}{},
		hostPorts: map[hostPortKey]string{}, morePorts: map[hostPortKey][]string{}, rangePorts: map[string]struct{}{},
	}
}

func addTo(m map[string]map[string]struct{}, k, v string) {
	s := m[k]
	if s == nil {
		s = map[string]struct{}{}
		m[k] = s
	}
	s[v] = struct{}{}
}

func delFrom(m map[string]map[string]struct{}, k, v string) {
	if s := m[k]; s != nil {
		delete(s, v)
		if len(s) == 0 {
			delete(m, k)
		}
	}
}

func macKey(e *REndpoint) string { return e.Net.Name + "/" + e.MAC.String() }

// setNetwork stores n under name (nil removes) and keeps the index true.
func (r *Resolved) setNetwork(name string, n *RNetwork) {
	if old := r.Networks[name]; old != nil {
		delete(r.idx.bridges, old.Bridge)
		delete(r.Networks, name)
	}
	if n != nil {
		r.Networks[name] = n
		if n.Bridge != "" { // routed networks have none to share
			r.idx.bridges[n.Bridge] = name
		}
	}
}

func (r *Resolved) setEndpoint(id string, e *REndpoint) {
	if old := r.Endpoints[id]; old != nil {
		delete(r.idx.addrs, old.IP)
		if old.IP6.IsValid() {
			delete(r.idx.addrs, old.IP6)
		}
		delete(r.idx.ifnames, old.HostIfname)
		delete(r.idx.macs, macKey(old))
		delFrom(r.idx.epsByNet, old.Net.Name, id)
		delete(r.Endpoints, id)
	}
	if e != nil {
		r.Endpoints[id] = e
		r.idx.addrs[e.IP] = id
		if e.IP6.IsValid() {
			r.idx.addrs[e.IP6] = id
		}
		r.idx.ifnames[e.HostIfname] = id
		r.idx.macs[macKey(e)] = id
		addTo(r.idx.epsByNet, e.Net.Name, id)
	}
}

func (r *Resolved) setPort(id string, p *RPort) {
	if old := r.Ports[id]; old != nil {
		delFrom(r.idx.portsByEP, old.EP.ID, id)
		if old.HostLo == old.HostHi {
			r.idx.dropHostPort(hostPortKey{old.Proto, old.HostLo}, id)
		}
		delete(r.idx.rangePorts, id)
		delete(r.Ports, id)
	}
	if p != nil {
		r.Ports[id] = p
		addTo(r.idx.portsByEP, p.EP.ID, id)
		if p.HostLo == p.HostHi {
			k := hostPortKey{p.Proto, p.HostLo}
			r.idx.addHostPort(k, id)
		} else {
			r.idx.rangePorts[id] = struct{}{}
		}
	}
}

func (r *Resolved) setLink(key string, l *RLink) {
	if old := r.Links[key]; old != nil {
		delFrom(r.idx.linksByEP, old.Parent.ID, key)
		delFrom(r.idx.linksByEP, old.Child.ID, key)
		delete(r.Links, key)
	}
	if l != nil {
		r.Links[key] = l
		addTo(r.idx.linksByEP, l.Parent.ID, key)
		addTo(r.idx.linksByEP, l.Child.ID, key)
	}
}

// addHostPort records mapping id on host port k.
func (x *index) addHostPort(k hostPortKey, id string) {
	if _, taken := x.hostPorts[k]; !taken {
		x.hostPorts[k] = id
		return
	}
	x.morePorts[k] = append(x.morePorts[k], id)
}

// dropHostPort removes mapping id from host port k.
func (x *index) dropHostPort(k hostPortKey, id string) {
	more := x.morePorts[k]
	if first, ok := x.hostPorts[k]; ok && first == id {
		if len(more) == 0 {
			delete(x.hostPorts, k)
			return
		}
		x.hostPorts[k], more = more[0], more[1:]
	} else if i := slices.Index(more, id); i >= 0 {
		more = slices.Delete(slices.Clone(more), i, i+1)
	}
	if len(more) == 0 {
		delete(x.morePorts, k)
	} else {
		x.morePorts[k] = more
	}
}

// collidingPort returns the id of a mapping other than p.ID that takes one of
// p's host ports, or "".
func (r *Resolved) collidingPort(p *RPort) string {
	overlaps := func(id string) bool {
		o := r.Ports[id]
		return id != p.ID && o.Proto == p.Proto && o.HostLo <= p.HostHi && p.HostLo <= o.HostHi &&
			(!o.HostIP.IsValid() || !p.HostIP.IsValid() || o.HostIP == p.HostIP)
	}
	for id := range r.idx.rangePorts {
		if overlaps(id) {
			return id
		}
	}
	for port := int(p.HostLo); port <= int(p.HostHi); port++ {
		k := hostPortKey{p.Proto, uint16(port)}
		first, ok := r.idx.hostPorts[k]
		if !ok {
			continue
		}
		if overlaps(first) {
			return first
		}
		for _, id := range r.idx.morePorts[k] {
			if overlaps(id) {
				return id
			}
		}
	}
	return ""
}
