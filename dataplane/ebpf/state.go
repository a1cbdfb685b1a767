package ebpf

// The backend's record of what it wrote, by owner. An owner is one model
// object ("net/pc0", "ep/web1", "port/p1", "link/web/db") or the uplink set
// ("uplinks"); it wants some map entries and some hooks. Several owners may
// want the same key (two endpoints with one SNAT address both make it a node
// address), so keys are reference-counted and deleted with their last owner.
// An incremental Apply touches only the owners its delta names.

type slotKey struct {
	m string
	k any
}

type slot struct {
	val  any
	refs int
}

type owner struct {
	entries []entry
	hooks   []hook
}

// endpointIfindex is the host veth of an endpoint's owner (its key in
// pc_endpoints).
func (o owner) endpointIfindex() (uint32, bool) {
	for _, e := range o.entries {
		if e.m == mapEndpoints {
			ifindex, ok := e.key.(uint32)
			return ifindex, ok
		}
	}
	return 0, false
}

type state struct {
	owners map[string]owner
	slots  map[slotKey]*slot
	hooks  map[attachKey]hook // wanted hooks, by key
	hookN  map[attachKey]int  // how many owners want each
	// entries counts the slots of each map: what the configuration maps
	// hold after an Apply, without walking them (Fill).
	entries map[string]int
}

func newState() *state {
	return &state{
		owners:  map[string]owner{},
		slots:   map[slotKey]*slot{},
		hooks:   map[attachKey]hook{},
		hookN:   map[attachKey]int{},
		entries: map[string]int{},
	}
}

// setSlot puts sl at k (nil: removes it), keeping entries in step.
func (s *state) setSlot(k slotKey, sl *slot) {
	_, had := s.slots[k]
	switch {
	case sl == nil && had:
		delete(s.slots, k)
		s.entries[k.m]--
	case sl != nil:
		if !had {
			s.entries[k.m]++
		}
		s.slots[k] = sl
	}
}

// setOwner replaces what owner id wants. Map writes go through t (puts
// before deletes, so a key that moves between owners never disappears);
// hooks that gain or lose their last owner are returned for the caller to
// attach or detach. The in-memory change is undone with t.
func (s *state) setOwner(t *txn, id string, nw owner) (added, removed []hook, err error) {
	old := s.owners[id]
	touched := map[slotKey]*slot{}
	hooksBefore := map[attachKey]struct {
		h hook
		n int
	}{}
	t.onRollback(func() error {
		for k, sl := range touched {
			s.setSlot(k, sl)
		}
		for k, v := range hooksBefore {
			if v.n == 0 {
				delete(s.hooks, k)
				delete(s.hookN, k)
			} else {
				s.hooks[k], s.hookN[k] = v.h, v.n
			}
		}
		if len(old.entries) == 0 && len(old.hooks) == 0 {
			delete(s.owners, id)
		} else {
			s.owners[id] = old
		}
		return nil
	})
	remember := func(k slotKey) {
		if _, ok := touched[k]; ok {
			return
		}
		if sl := s.slots[k]; sl != nil {
			c := *sl
			touched[k] = &c
		} else {
			touched[k] = nil
		}
	}
	for _, e := range nw.entries {
		k := slotKey{e.m, e.key}
		remember(k)
		sl := s.slots[k]
		if sl == nil {
			sl = &slot{}
			s.setSlot(k, sl)
		}
		changed := sl.refs == 0 || sl.val != e.val
		sl.refs++
		sl.val = e.val
		if changed {
			if err := t.put(e.m, e.key, e.val); err != nil {
				return nil, nil, err
			}
		}
	}
	for _, e := range old.entries {
		k := slotKey{e.m, e.key}
		remember(k)
		sl := s.slots[k]
		if sl == nil {
			continue
		}
		if sl.refs--; sl.refs <= 0 {
			s.setSlot(k, nil)
			if err := t.del(e.m, e.key); err != nil {
				return nil, nil, err
			}
		}
	}

	rememberHook := func(k attachKey) {
		if _, ok := hooksBefore[k]; !ok {
			hooksBefore[k] = struct {
				h hook
				n int
			}{s.hooks[k], s.hookN[k]}
		}
	}
	for _, h := range nw.hooks {
		k := h.key()
		rememberHook(k)
		if s.hookN[k] == 0 || s.hooks[k] != h {
			added = append(added, h)
		}
		s.hooks[k] = h
		s.hookN[k]++
	}
	for _, h := range old.hooks {
		k := h.key()
		rememberHook(k)
		if s.hookN[k]--; s.hookN[k] <= 0 {
			delete(s.hooks, k)
			delete(s.hookN, k)
			removed = append(removed, h)
		}
	}
	if len(nw.entries) == 0 && len(nw.hooks) == 0 {
		delete(s.owners, id)
	} else {
		s.owners[id] = nw
	}
	return added, removed, nil
}
