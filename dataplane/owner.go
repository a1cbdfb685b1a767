package dataplane

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/portcullis/portcullis/dataplane/model"
)

// checkOwner keeps the objects a runtime source owns (model.SourceDocker)
// in that source's hands: a change from another actor (source "", the API)
// to such an object is refused with 409, and only a source may create
// objects that carry its name. One exception: icc of a source's network may
// be overridden through the API (Docker's docker0 cannot carry icc=false
// with its iptables off). It returns the op to apply, which for that
// override is the owned network with only icc changed.
func checkOwner(want *model.Resolved, source string, op model.Op) (model.Op, error) {
	cur := currentSource(want, op)
	// A GET of an owned object sent back (source and all) may still
	// override icc: the source name then matches the object's own.
	if obj := opSource(op); obj != source && !op.Delete && !(source == "" && cur.exists && obj == cur.source) {
		return op, &model.Error{Status: http.StatusBadRequest, Field: "source",
			Msg: fmt.Sprintf("source %q is set by portcullisd for objects that a runtime owns: leave it empty", obj)}
	}
	if cur.source == source || cur.source == "" && !cur.exists {
		return op, nil
	}
	if cur.source == "" {
		// A source must not take over what the API made.
		return op, &model.Error{Status: http.StatusConflict, Field: "name",
			Msg: fmt.Sprintf("%s %q was made through the API, not by %s: delete it there first", op.Kind, op.Target(), source)}
	}
	if source == "" && op.Kind == "network" && !op.Delete {
		return iccOverride(want.Networks[op.Network.Name], *op.Network)
	}
	return op, &model.Error{Status: http.StatusConflict, Field: "source",
		Msg: fmt.Sprintf("%s %q is managed by %s (%s): change it with %s's own commands", op.Kind, op.Target(), cur.source, cur.what, cur.source)}
}

type ownerInfo struct {
	exists bool
	source string
	what   string // for messages: the runtime's name of the object
}

func currentSource(want *model.Resolved, op model.Op) ownerInfo {
	key := op.Target()
	switch op.Kind {
	case "network":
		if n := want.Networks[key]; n != nil {
			return ownerInfo{true, n.Spec.Source, "bridge " + n.Bridge}
		}
	case "endpoint":
		if e := want.Endpoints[key]; e != nil {
			return ownerInfo{true, e.Spec.Source, "container " + e.Name + " on network " + e.Net.Name}
		}
	case "port":
		if p := want.Ports[key]; p != nil {
			return ownerInfo{true, p.Spec().Source, "a published port of container " + p.EP.Name}
		}
	case "link":
		if l := want.Links[key]; l != nil {
			return ownerInfo{true, l.Spec.Source, "a link of container " + l.Parent.Name}
		}
	}
	return ownerInfo{}
}

// opSource is the source the object in op claims.
func opSource(op model.Op) string {
	switch {
	case op.Network != nil:
		return op.Network.Source
	case op.Endpoint != nil:
		return op.Endpoint.Source
	case op.Port != nil:
		return op.Port.Source
	case op.Link != nil:
		return op.Link.Source
	}
	return ""
}

// iccOverride accepts a PUT of an owned network that changes nothing but
// icc (fields left out count as unchanged). icc given sets the override;
// icc left out clears it, and the source puts its own value back.
func iccOverride(cur *model.RNetwork, in model.Network) (model.Op, error) {
	n := cur.Spec
	var changed []string
	diff := func(field string, set bool, same bool) {
		if set && !same {
			changed = append(changed, field)
		}
	}
	diff("bridge", in.Bridge != "", in.Bridge == n.Bridge)
	diff("subnet", in.Subnet != "", in.Subnet == n.Subnet)
	diff("subnet6", in.Subnet6 != "", in.Subnet6 == n.Subnet6)
	diff("gateway", in.Gateway != "", in.Gateway == n.Gateway)
	diff("gateway6", in.Gateway6 != "", in.Gateway6 == n.Gateway6)
	diff("masquerade", in.Masquerade != nil, in.Masquerade != nil && n.Masquerade != nil && *in.Masquerade == *n.Masquerade)
	diff("snat_ip", in.SNATIP != "", in.SNATIP == n.SNATIP)
	diff("mtu", in.MTU != 0, in.MTU == n.MTU)
	if len(changed) > 0 {
		return model.Op{}, &model.Error{Status: http.StatusConflict, Field: changed[0],
			Msg: fmt.Sprintf("network %q is managed by %s (bridge %s): only icc can be overridden here, not %s; change the rest with %s's own commands",
				n.Name, n.Source, cur.Bridge, strings.Join(changed, ", "), n.Source)}
	}
	n.ICCOverride = in.ICC != nil
	if in.ICC != nil {
		icc := *in.ICC
		n.ICC = &icc
	}
	return model.Op{Kind: "network", Network: &n}, nil
}
