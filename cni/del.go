package cni

import (
	"context"

	"github.com/containernetworking/cni/pkg/skel"
)

// Del unplugs the container. It is idempotent: an endpoint, veth or
// allocation that is already gone (or never came) is not an error, and
// neither is a container namespace that no longer exists (CNI_NETNS may be
// empty); nothing of it is needed.
//
// The order matters: the endpoint leaves portcullisd first and only then is
// the address released. When the agent cannot be reached, DEL fails
// before it releases anything, so the runtime retries and the address is
// not handed to a new container while the agent still routes it to this
// one.
func Del(args *skel.CmdArgs) error {
	a, err := newAttachment(args)
	if err != nil {
		return err
	}
	ctx := context.Background()
	if err := a.agent.deleteEndpoint(ctx, a.epID); err != nil {
		return err
	}
	if err := deleteHostVeth(a.host); err != nil {
		return err
	}
	ip, err := newIPAM(args.StdinData, a.conf, args.Path)
	if err != nil {
		return err
	}
	return ip.del(ctx)
}
