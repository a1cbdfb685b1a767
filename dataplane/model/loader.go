package model

import "fmt"

// Loader resolves a state object by object as a snapshot is read, so
// that the whole State is never held beside its resolved form: Load for a
// stream. Objects must come in Load's order of dependencies: settings,
// networks, endpoints, port mappings, links.
type Loader struct{ r *Resolved }

// NewLoader returns a loader of an empty state.
func NewLoader() *Loader { return &Loader{r: NewResolved()} }

// Resolved returns what was loaded.
func (l *Loader) Resolved() *Resolved { return l.r }

// LoadKinds are the sections of a State, in the order Loader takes them.
var LoadKinds = []string{"settings", "networks", "endpoints", "ports", "links"}

// Put decodes one object of kind (a State section: networks, endpoints,
// ports, links; or settings, with no key) with decode and resolves it,
// failing as Load does, naming the object.
func (l *Loader) Put(kind, key string, decode func(v any) error) error {
	var err error
	switch kind {
	case "settings":
		var s Settings
		if err = decode(&s); err == nil {
			_, err = l.r.PutSettings(s)
		}
		return wrapLoad(err, "settings: %w")
	case "networks":
		var n Network
		if err = decode(&n); err == nil {
			_, err = l.r.PutNetwork(n)
		}
		return wrapLoad(err, "network %q: %w", key)
	case "endpoints":
		var e Endpoint
		if err = decode(&e); err == nil {
			_, err = l.r.PutEndpoint(e)
		}
		return wrapLoad(err, "endpoint %q: %w", key)
	case "ports":
		var p PortMapping
		if err = decode(&p); err == nil {
			_, err = l.r.PutPort(p)
		}
		return wrapLoad(err, "port mapping %q: %w", key)
	case "links":
		var k Link
		if err = decode(&k); err == nil {
			_, err = l.r.PutLink(k)
		}
		return wrapLoad(err, "link %q: %w", key)
	}
	return fmt.Errorf("state section %q is not known: want one of %v", kind, LoadKinds)
}

func wrapLoad(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf(format, append(args, err)...)
}
