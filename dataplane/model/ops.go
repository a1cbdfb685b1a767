package model

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
)

// NewResolved returns an empty desired state.
func NewResolved() *Resolved {
	return &Resolved{
		Networks: map[string]*RNetwork{}, Endpoints: map[string]*REndpoint{},
		Ports: map[string]*RPort{}, Links: map[string]*RLink{}, idx: newIndex(),
	}
}

// Load resolves a whole State (from disk), in dependency order.
func Load(s *State) (*Resolved, error) {
	r := NewResolved()
	if _, err := r.PutSettings(s.Settings); err != nil {
		return nil, fmt.Errorf("settings: %w", err)
	}
	for _, k := range slices.Sorted(maps.Keys(s.Networks)) {
		if _, err := r.PutNetwork(s.Networks[k]); err != nil {
			return nil, fmt.Errorf("network %q: %w", k, err)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(s.Endpoints)) {
		if _, err := r.PutEndpoint(s.Endpoints[k]); err != nil {
			return nil, fmt.Errorf("endpoint %q: %w", k, err)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(s.Ports)) {
		if _, err := r.PutPort(s.Ports[k]); err != nil {
			return nil, fmt.Errorf("port mapping %q: %w", k, err)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(s.Links)) {
		if _, err := r.PutLink(s.Links[k]); err != nil {
			return nil, fmt.Errorf("link %q: %w", k, err)
		}
	}
	return r, nil
}

// State returns the desired state as given by the API, for persistence.
func (r *Resolved) State() *State {
	s := NewState()
	s.Settings = r.Settings
	for k, v := range r.Networks {
		s.Networks[k] = v.Spec
	}
	for k, v := range r.Endpoints {
		s.Endpoints[k] = v.Spec
	}
	for k, v := range r.Ports {
		s.Ports[k] = v.Spec()
	}
	for k, v := range r.Links {
		s.Links[k] = v.Spec
	}
	return s
}

// PutSettings replaces the node-wide settings.
func (r *Resolved) PutSettings(s Settings) (*Delta, error) {
	s, err := resolveSettings(s)
	if err != nil {
		return nil, err
	}
	d := &Delta{Settings: &SettingsChange{Old: r.Settings, New: s}}
	r.Settings = s
	return d, nil
}

// PutNetwork creates or replaces a network. A network in use may change only
// its policy (icc, masquerade, snat_ip, mtu); its endpoints are re-resolved.
func (r *Resolved) PutNetwork(n Network) (*Delta, error) {
	rn, err := resolveNetwork(n)
	if err != nil {
		return nil, err
	}
	if owner, ok := r.idx.bridges[rn.Bridge]; ok && owner != n.Name {
		return nil, conflict("bridge", "bridge %q is already used by network %q", rn.Bridge, owner)
	}
	for _, o := range r.Networks {
		if o.Name == n.Name {
			continue
		}
		if o.Subnet.Overlaps(rn.Subnet) {
			return nil, conflict("subnet", "subnet %s overlaps network %q (subnet %s): choose a subnet outside it", rn.Subnet, o.Name, o.Subnet)
		}
		if rn.Subnet6.IsValid() && o.Subnet6.IsValid() && o.Subnet6.Overlaps(rn.Subnet6) {
			return nil, conflict("subnet6", "subnet6 %s overlaps network %q (subnet6 %s): choose a subnet6 outside it", rn.Subnet6, o.Name, o.Subnet6)
		}
	}
	old := r.Networks[n.Name]
	eps := r.idx.epsByNet[n.Name]
	if old != nil && len(eps) > 0 {
		if err := addressingChange(old, rn, len(eps)); err != nil {
			return nil, err
		}
	}
	if rn.Internal && (old == nil || !old.Internal) {
		if id := r.portOnNetwork(n.Name); id != "" {
			return nil, conflict("internal", "network %q cannot become internal: port mapping %q publishes on it; delete its mappings first", n.Name, id)
		}
	}
	d := &Delta{Networks: []NetworkChange{{Old: old, New: rn}}}
	r.setNetwork(n.Name, rn)
	for _, id := range slices.Sorted(maps.Keys(eps)) {
		e := *r.Endpoints[id]
		e.Net = rn
		r.rebindEndpoint(d, &e)
	}
	return d, nil
}

// portOnNetwork returns a port mapping on network name's endpoints, or "".
func (r *Resolved) portOnNetwork(name string) string {
	for _, id := range slices.Sorted(maps.Keys(r.Ports)) {
		if r.Ports[id].EP.Net.Name == name {
			return id
		}
	}
	return ""
}

// addressingChange refuses a change of what the endpoints of a network in
// use depend on (bridge, subnets, gateways), naming the first field that
// changed with its old and new value.
func addressingChange(old, rn *RNetwork, inUse int) error {
	for _, f := range []struct {
		field    string
		old, new string
	}{
		{"bridge", old.Bridge, rn.Bridge},
		{"subnet", old.Subnet.String(), rn.Subnet.String()},
		{"subnet6", prefixOrNone(old.Subnet6), prefixOrNone(rn.Subnet6)},
		{"gateway", old.Gateway.String(), rn.Gateway.String()},
		{"gateway6", addrOrNone(old.Gateway6), addrOrNone(rn.Gateway6)},
		{"external", fmt.Sprint(old.Spec.External), fmt.Sprint(rn.Spec.External)},
	} {
		if f.old != f.new {
			return conflict(f.field, "network %q is in use by %d endpoints: %s cannot change from %s to %s; delete the endpoints first, or change only icc, masquerade, snat_ip and mtu",
				rn.Name, inUse, f.field, f.old, f.new)
		}
	}
	return nil
}

func prefixOrNone(p netip.Prefix) string {
	if !p.IsValid() {
		return "none"
	}
	return p.String()
}

func addrOrNone(a netip.Addr) string {
	if !a.IsValid() {
		return "none"
	}
	return a.String()
}

// DeleteNetwork removes a network that no endpoint uses.
func (r *Resolved) DeleteNetwork(name string) (*Delta, error) {
	old := r.Networks[name]
	if old == nil {
		return &Delta{}, nil
	}
	if eps := r.idx.epsByNet[name]; len(eps) > 0 {
		return nil, conflict("name", "network %q is in use by %d endpoints (%s): delete them first", name, len(eps), firstKey(eps))
	}
	r.setNetwork(name, nil)
	return &Delta{Networks: []NetworkChange{{Old: old}}}, nil
}

func firstKey(m map[string]struct{}) string { return slices.Min(slices.Collect(maps.Keys(m))) }

// PutEndpoint creates or replaces an endpoint; the port mappings and links
// that refer to it are re-resolved against the new version.
func (r *Resolved) PutEndpoint(e Endpoint) (*Delta, error) {
	re, err := resolveEndpoint(e, r.Networks)
	if err != nil {
		return nil, err
	}
	if err := r.checkEndpointUnique(re); err != nil {
		return nil, err
	}
	old := r.Endpoints[e.ID]
	for pid := range r.idx.portsByEP[e.ID] {
		if _, err := resolvePort(r.Ports[pid].Spec(), map[string]*REndpoint{e.ID: re}); err != nil {
			return nil, conflict("ip6", "endpoint %q would break port mapping %q: %v", e.ID, pid, err)
		}
	}
	if old != nil && old.Net != re.Net && len(r.idx.linksByEP[e.ID]) > 0 {
		return nil, conflict("network", "endpoint %q has links: delete them before moving it to network %q", e.ID, e.Network)
	}
	d := &Delta{}
	r.rebindEndpoint(d, re)
	return d, nil
}

func (r *Resolved) checkEndpointUnique(re *REndpoint) error {
	taken := func(owner string, ok bool) bool { return ok && owner != re.ID }
	if o, ok := r.idx.addrs[re.IP]; taken(o, ok) {
		return conflict("ip", "ip %s is already used by endpoint %q", re.IP, o)
	}
	if o, ok := r.idx.addrs[re.IP6]; re.IP6.IsValid() && taken(o, ok) {
		return conflict("ip6", "ip6 %s is already used by endpoint %q", re.IP6, o)
	}
	if o, ok := r.idx.ifnames[re.HostIfname]; taken(o, ok) {
		return conflict("host_ifname", "host_ifname %q is already used by endpoint %q", re.HostIfname, o)
	}
	if _, ok := r.idx.bridges[re.HostIfname]; ok {
		return conflict("host_ifname", "host_ifname %q is a network's bridge", re.HostIfname)
	}
	if o, ok := r.idx.macs[macKey(re)]; taken(o, ok) {
		return conflict("mac", "mac %s is already used by endpoint %q on network %q", re.MAC, o, re.Net.Name)
	}
	return nil
}

// rebindEndpoint stores e and re-creates the ports and links that point at
// the endpoint it replaces, recording every change in d.
func (r *Resolved) rebindEndpoint(d *Delta, e *REndpoint) {
	d.Endpoints = append(d.Endpoints, EndpointChange{Old: r.Endpoints[e.ID], New: e})
	r.setEndpoint(e.ID, e)
	for _, pid := range slices.Sorted(maps.Keys(r.idx.portsByEP[e.ID])) {
		old := r.Ports[pid]
		p := *old
		p.EP = e
		d.Ports = append(d.Ports, PortChange{Old: old, New: &p})
		r.setPort(pid, &p)
	}
	for _, key := range slices.Sorted(maps.Keys(r.idx.linksByEP[e.ID])) {
		old := r.Links[key]
		l := *old
		if l.Parent.ID == e.ID {
			l.Parent = e
		}
		if l.Child.ID == e.ID {
			l.Child = e
		}
		d.Links = append(d.Links, LinkChange{Old: old, New: &l})
		r.setLink(key, &l)
	}
}

// DeleteEndpoint removes an endpoint with its port mappings and links.
func (r *Resolved) DeleteEndpoint(id string) (*Delta, error) {
	old := r.Endpoints[id]
	d := &Delta{}
	if old == nil {
		return d, nil
	}
	for _, pid := range slices.Sorted(maps.Keys(r.idx.portsByEP[id])) {
		d.Ports = append(d.Ports, PortChange{Old: r.Ports[pid]})
		r.setPort(pid, nil)
	}
	for _, key := range slices.Sorted(maps.Keys(r.idx.linksByEP[id])) {
		d.Links = append(d.Links, LinkChange{Old: r.Links[key]})
		r.setLink(key, nil)
	}
	d.Endpoints = append(d.Endpoints, EndpointChange{Old: old})
	r.setEndpoint(id, nil)
	return d, nil
}

// PutPort creates or replaces a port mapping. One that takes a host port of
// another mapping is refused with 409, naming the other.
func (r *Resolved) PutPort(p PortMapping) (*Delta, error) {
	rp, err := resolvePort(p, r.Endpoints)
	if err != nil {
		return nil, err
	}
	if other := r.collidingPort(rp); other != "" {
		o := r.Ports[other]
		where := "every address"
		if o.HostIP.IsValid() {
			where = o.HostIP.String()
		}
		return nil, conflict("host_port", "host port %s/%s on %s is already published by port mapping %q", ProtoName(rp.Proto), portSpan(rp), where, other)
	}
	d := &Delta{Ports: []PortChange{{Old: r.Ports[p.ID], New: rp}}}
	r.setPort(p.ID, rp)
	return d, nil
}

func portSpan(p *RPort) string {
	if p.HostLo == p.HostHi {
		return fmt.Sprint(p.HostLo)
	}
	return fmt.Sprintf("%d-%d", p.HostLo, p.HostHi)
}

// DeletePort removes a port mapping.
func (r *Resolved) DeletePort(id string) (*Delta, error) {
	old := r.Ports[id]
	if old == nil {
		return &Delta{}, nil
	}
	r.setPort(id, nil)
	return &Delta{Ports: []PortChange{{Old: old}}}, nil
}

// PutLink creates or replaces a link from parent to child under alias.
func (r *Resolved) PutLink(l Link) (*Delta, error) {
	l.Env, l.Hosts = nil, ""
	parent, child := r.Endpoints[l.Parent], r.Endpoints[l.Child]
	switch {
	case parent == nil:
		return nil, invalid("parent", "parent endpoint %q is not known", l.Parent)
	case child == nil:
		return nil, invalid("child", "child endpoint %q is not known", l.Child)
	case l.Parent == l.Child:
		return nil, invalid("child", "endpoint %q cannot be linked to itself", l.Child)
	case parent.Net != child.Net:
		return nil, invalid("child", "child %q is on network %q but parent %q is on %q: links work within one network", l.Child, child.Net.Name, l.Parent, parent.Net.Name)
	}
	if err := checkName("alias", l.Alias); err != nil {
		return nil, err
	}
	rl := &RLink{Spec: l, Parent: parent, Child: child, Alias: l.Alias}
	d := &Delta{Links: []LinkChange{{Old: r.Links[l.Key()], New: rl}}}
	r.setLink(l.Key(), rl)
	return d, nil
}

// DeleteLink removes the link parent/alias.
func (r *Resolved) DeleteLink(parent, alias string) (*Delta, error) {
	key := Link{Parent: parent, Alias: alias}.Key()
	old := r.Links[key]
	if old == nil {
		return &Delta{}, nil
	}
	r.setLink(key, nil)
	return &Delta{Links: []LinkChange{{Old: old}}}, nil
}

// Undo reverts d, which must be the latest change made to r.
func (r *Resolved) Undo(d *Delta) {
	for i := len(d.Links) - 1; i >= 0; i-- {
		c := d.Links[i]
		r.setLink(linkKey(c.Old, c.New), c.Old)
	}
	for i := len(d.Ports) - 1; i >= 0; i-- {
		c := d.Ports[i]
		r.setPort(pick(c.Old, c.New).ID, c.Old)
	}
	for i := len(d.Endpoints) - 1; i >= 0; i-- {
		c := d.Endpoints[i]
		r.setEndpoint(pick(c.Old, c.New).ID, c.Old)
	}
	for i := len(d.Networks) - 1; i >= 0; i-- {
		c := d.Networks[i]
		r.setNetwork(pick(c.Old, c.New).Name, c.Old)
	}
	if d.Settings != nil {
		r.Settings = d.Settings.Old
	}
}

func pick[T any](old, new *T) *T {
	if old != nil {
		return old
	}
	return new
}

func linkKey(old, new *RLink) string { return pick(old, new).Spec.Key() }
