package model

import "strings"

// Op is one change through the API. The agent journals Ops, so replaying
// them on the last snapshot gives the same state, cascades included.
type Op struct {
	Kind     string       `json:"kind"` // settings, network, endpoint, port, link
	Delete   bool         `json:"delete,omitempty"`
	Key      string       `json:"key,omitempty"` // what Delete removes; a link's is parent/alias
	Settings *Settings    `json:"settings,omitempty"`
	Network  *Network     `json:"network,omitempty"`
	Endpoint *Endpoint    `json:"endpoint,omitempty"`
	Port     *PortMapping `json:"port,omitempty"`
	Link     *Link        `json:"link,omitempty"`
}

// Target is the identity of the object op changes: a network's name, an
// endpoint's or a mapping's ID, a link's parent/alias.
func (op Op) Target() string {
	switch {
	case op.Delete:
		return op.Key
	case op.Network != nil:
		return op.Network.Name
	case op.Endpoint != nil:
		return op.Endpoint.ID
	case op.Port != nil:
		return op.Port.ID
	case op.Link != nil:
		return op.Link.Key()
	}
	return ""
}

// Change applies op as a new change: Do, after the checks that only new
// changes must pass (a link may not close a cycle of links). What was saved
// before such a check existed still loads, through Load and Do.
func (r *Resolved) Change(op Op) (*Delta, error) {
	if op.Kind == "link" && !op.Delete && op.Link != nil {
		if err := r.checkLinkCycle(*op.Link); err != nil {
			return nil, err
		}
	}
	return r.Do(op)
}

// Do applies op and returns what changed.
func (r *Resolved) Do(op Op) (*Delta, error) {
	switch {
	case op.Kind == "settings" && op.Settings != nil:
		return r.PutSettings(*op.Settings)
	case op.Kind == "network" && op.Delete:
		return r.DeleteNetwork(op.Key)
	case op.Kind == "network" && op.Network != nil:
		return r.PutNetwork(*op.Network)
	case op.Kind == "endpoint" && op.Delete:
		return r.DeleteEndpoint(op.Key)
	case op.Kind == "endpoint" && op.Endpoint != nil:
		return r.PutEndpoint(*op.Endpoint)
	case op.Kind == "port" && op.Delete:
		return r.DeletePort(op.Key)
	case op.Kind == "port" && op.Port != nil:
		return r.PutPort(*op.Port)
	case op.Kind == "link" && op.Delete:
		parent, alias, _ := strings.Cut(op.Key, "/")
		return r.DeleteLink(parent, alias)
	case op.Kind == "link" && op.Link != nil:
		return r.PutLink(*op.Link)
	}
	return nil, invalid("kind", "operation on %q is not known or has no object", op.Kind)
}
