package cni

import (
	"context"
	"errors"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
)

// Del unplugs the container. It is idempotent: an endpoint, veth or
// allocation that is already gone (or never came) is not an error, and
// neither is a container namespace that no longer exists (CNI_NETNS may be
// empty); nothing of it is needed.
//
// The order matters: the endpoint leaves portcullisd first, then the veth
// goes, and only then is the address released. When the agent cannot be
// reached (down, restarting), DEL still removes the veth and releases the
// address, and fails with "try again later" (11) for the endpoint: a
// runtime that retries finishes it, and for one that never does (Podman
// logs "Unable to clean up network" and moves on, then starts the same
// container again) the agent drops the endpoint, whose host_ifname is
// gone, when it starts or at its next resync. Handing the address out
// again is safe: no ADD gets through while the agent is unreachable, an
// agent that starts drops the stale endpoint before it answers, and one
// that still holds it refuses the address to another endpoint. When the
// agent answers and refuses, DEL changes nothing else.
func Del(args *skel.CmdArgs) error {
	a, err := newAttachment(args)
	if err != nil {
		return err
	}
	if handled, err := a.chainedDel(); handled { // chained.go
		return err
	}
	ctx := context.Background()
	agentErr := a.agent.deleteEndpoint(ctx, a.epID)
	var te *types.Error
	unreachable := errors.As(agentErr, &te) && te.Code == types.ErrTryAgainLater
	if agentErr != nil && !unreachable {
		return agentErr
	}
	err = a.unplug(ctx)
	if !unreachable {
		return err
	}
	msg := te.Msg + "; the container's veth is removed and its address released meanwhile, and portcullisd drops the endpoint (with its port mappings) when it starts"
	if err != nil {
		msg = te.Msg + "; unplugging the container meanwhile failed too: " + err.Error()
	}
	return types.NewError(te.Code, msg, te.Details)
}

// unplug removes the host end of the veth (the container end goes with
// it) and releases the address.
func (a *attachment) unplug(ctx context.Context) error {
	if err := deleteHostVeth(a.host); err != nil {
		return err
	}
	ip, err := newIPAM(a.args.StdinData, a.conf, a.args.Path)
	if err != nil {
		return err
	}
	return ip.del(ctx)
}
