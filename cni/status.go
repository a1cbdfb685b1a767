package cni

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/vishvananda/netlink"
)

// Status says whether ADD can work now (spec 1.1.0): portcullisd answers,
// the network exists or the configuration can create it, and the IPAM
// plugin is ready when it speaks STATUS.
func Status(args *skel.CmdArgs) error {
	c, err := parseConf(args.StdinData)
	if err != nil {
		return err
	}
	ctx := context.Background()
	ag := newAgent(c.Socket)
	// notAvailable is code 50 (spec 1.1.0) with what failed, then why;
	// agent errors name portcullisd themselves, so they get no "what".
	notAvailable := func(what string, err error) error {
		msg, details := what, ""
		var te *types.Error
		if errors.As(err, &te) {
			msg, details = strings.TrimPrefix(msg+": "+te.Msg, ": "), te.Details
		} else if err != nil {
			msg = strings.TrimPrefix(msg+": "+err.Error(), ": ")
		}
		return types.NewError(types.ErrPluginNotAvailable, msg, details)
	}
	if _, err := ag.c.Status(ctx); err != nil {
		return notAvailable("", ag.wrap(err, "read portcullisd's status"))
	}
	if handled, err := chainedStatus(ctx, args.StdinData, c, ag); handled { // chained.go
		return err
	}
	n, err := ag.c.Network(ctx, c.Network)
	switch {
	case isNotFound(err) && c.Subnet == "":
		return notAvailable(fmt.Sprintf("network %q does not exist in portcullisd and the configuration gives no subnet to create it with", c.Network), nil)
	case isNotFound(err):
	case err != nil:
		return notAvailable("", ag.wrap(err, "read network %s", c.Network))
	default:
		if err := c.mismatch(n); err != nil {
			return notAvailable("configuration", err)
		}
	}
	ip, err := newIPAM(args.StdinData, c, args.Path)
	if err != nil {
		return err
	}
	if err := ip.status(ctx); err != nil {
		return notAvailable("ipam", err)
	}
	return nil
}

// GC removes what no valid attachment uses (spec 1.1.0): endpoints of the
// network that portcullis-cni made (id cni-...) and that are not in
// cni.dev/valid-attachments, when their host veth is gone (the container
// is) or belongs to this configuration; host veths of this configuration
// that no valid attachment has; then the IPAM plugin's own GC.
func GC(args *skel.CmdArgs) error {
	c, err := parseConf(args.StdinData)
	if err != nil {
		return err
	}
	ctx := context.Background()
	ag := newAgent(c.Socket)
	if handled, err := chainedGC(ctx, args.StdinData, c, ag); handled { // chained.go
		return err
	}
	valid := map[string]bool{}
	validVeth := map[string]bool{}
	for _, at := range c.ValidAttachments {
		id := EndpointID(at.ContainerID, at.IfName)
		valid[id], validVeth[HostVethName(id)] = true, true
	}
	links, err := listRetry(netlink.LinkList)
	if err != nil {
		return fmt.Errorf("list interfaces: %w", err)
	}
	alias := map[string]string{}
	for _, l := range links {
		alias[l.Attrs().Name] = l.Attrs().Alias
	}
	eps, err := ag.c.Endpoints(ctx)
	if err != nil {
		return ag.wrap(err, "list endpoints")
	}
	var errs []error
	for _, ep := range eps {
		if ep.Network != c.Network || !strings.HasPrefix(ep.ID, "cni-") || valid[ep.ID] {
			continue
		}
		if al, ok := alias[ep.HostIfname]; ok && al != vethAlias(c.Name) {
			continue // alive, and another configuration's
		}
		errs = append(errs, ag.deleteEndpoint(ctx, ep.ID))
	}
	for name, al := range alias {
		if al == vethAlias(c.Name) && !validVeth[name] {
			errs = append(errs, deleteHostVeth(name))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	ip, err := newIPAM(args.StdinData, c, args.Path)
	if err != nil {
		return err
	}
	return ip.gc(ctx)
}
