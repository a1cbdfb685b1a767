package cni

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/portcullis/portcullis/dataplane/api"
	"github.com/portcullis/portcullis/dataplane/model"
)

// agent is portcullisd as the plugin sees it.
type agent struct {
	socket string
	c      *api.Client
}

func newAgent(socket string) *agent { return &agent{socket: socket, c: api.NewClient(socket)} }

// wrap turns an API error into a CNI error: a refusal says what the agent
// said; an agent that does not answer is "try again later", so runtimes
// retry instead of giving up on the container.
func (a *agent) wrap(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	what := fmt.Sprintf(format, args...)
	var me *model.Error
	if errors.As(err, &me) {
		return types.NewError(types.ErrInternal, fmt.Sprintf("portcullisd refused to %s: %s", what, me.Msg), fieldDetails(me))
	}
	return a.unreachable(err, what)
}

// unreachable is the error for an agent that did not answer: the socket
// once, the cause without the client's own wording around it (which
// names the socket again), and what to do.
func (a *agent) unreachable(err error, what string) *types.Error {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		err = op.Err
	}
	return types.NewError(types.ErrTryAgainLater,
		fmt.Sprintf("cannot %s: portcullisd is not reachable at %s (%v)", what, a.socket, err),
		"start portcullisd (systemctl start portcullisd), or set \"socket\" in the CNI configuration to where it listens")
}

func fieldDetails(me *model.Error) string {
	if me.Field == "" {
		return ""
	}
	return "field " + me.Field
}

func isNotFound(err error) bool {
	var me *model.Error
	return errors.As(err, &me) && me.Status == http.StatusNotFound
}

// ensureNetwork returns the agent network the configuration names. It is
// created when absent and the configuration gives a subnet; an existing one
// is used as it is, and must agree with what the configuration says.
// created says whether this call made the network, for a failing ADD to
// take it back.
func (a *agent) ensureNetwork(ctx context.Context, c *NetConf) (n model.Network, created bool, err error) {
	n, err = a.c.Network(ctx, c.Network)
	switch {
	case err == nil:
		return n, false, c.mismatch(n)
	case !isNotFound(err):
		return n, false, a.wrap(err, "read network %s", c.Network)
	case c.Subnet == "":
		return n, false, invalidConf("network %q does not exist in portcullisd and the CNI configuration gives no \"subnet\" to create it with: create it first (pcctl or PUT /v1/networks/%s), or add \"subnet\"", c.Network, c.Network)
	}
	if err := a.checkOverlap(ctx, c); err != nil {
		return n, false, err
	}
	// Two ADDs may race here: PUT of the same network is idempotent.
	n, err = a.c.PutNetwork(ctx, c.wantNetwork())
	var me *model.Error
	if errors.As(err, &me) && (me.Status == http.StatusBadRequest || me.Status == http.StatusConflict) {
		// The agent refused what the configuration describes.
		return n, false, types.NewError(types.ErrInvalidNetworkConfig,
			fmt.Sprintf("portcullisd refused to create network %q from the CNI configuration: %s", c.Network, me.Msg), fieldDetails(me))
	}
	return n, err == nil, a.wrap(err, "create network %s", c.Network)
}

// checkOverlap refuses a network to create whose subnet or subnet6
// overlaps another agent network, naming both, before the agent does (its
// answer does not say which of the other network's subnets is hit).
// Values that do not parse are left for the agent to refuse.
func (a *agent) checkOverlap(ctx context.Context, c *NetConf) error {
	nets, err := a.c.Networks(ctx)
	if err != nil {
		return a.wrap(err, "list networks")
	}
	for _, o := range nets {
		if o.Name == c.Network {
			continue
		}
		for _, f := range []struct{ field, want, have string }{
			{"subnet", c.Subnet, o.Subnet}, {"subnet6", c.Subnet6, o.Subnet6},
		} {
			w, err1 := netip.ParsePrefix(f.want)
			h, err2 := netip.ParsePrefix(f.have)
			if err1 == nil && err2 == nil && w.Overlaps(h) {
				return invalidConf("%s %s overlaps network %q (%s %s): choose a %s outside it, or set \"network\" to %q to plug into that network",
					f.field, f.want, o.Name, f.field, f.have, f.field, o.Name)
			}
		}
	}
	return nil
}

// deleteCreatedNetwork takes back a network a failing ADD created. A
// network another ADD already put an endpoint on is refused by the agent
// (in use) and stays: it is that ADD's now.
func (a *agent) deleteCreatedNetwork(ctx context.Context, name string) error {
	err := a.c.DeleteNetwork(ctx, name)
	var me *model.Error
	if err == nil || isNotFound(err) || errors.As(err, &me) && me.Status == http.StatusConflict {
		return nil
	}
	return a.wrap(err, "delete network %s (created by this ADD)", name)
}

// syncPorts makes the endpoint's port mappings exactly want: stale ones
// (from an earlier ADD of the same attachment) go, the others are PUT.
func (a *agent) syncPorts(ctx context.Context, epID string, want []model.PortMapping) error {
	have, err := a.c.Ports(ctx)
	if err != nil {
		return a.wrap(err, "list port mappings")
	}
	for _, p := range have {
		if p.Endpoint != epID || slices.ContainsFunc(want, func(w model.PortMapping) bool { return w.ID == p.ID }) {
			continue
		}
		if err := a.c.DeletePort(ctx, p.ID); err != nil {
			return a.wrap(err, "delete stale port mapping %s", p.ID)
		}
	}
	for _, p := range want {
		if _, err := a.c.PutPort(ctx, p); err != nil {
			return a.wrap(err, "publish %s port %d -> %d (mapping %s)", p.Proto, p.HostPort, p.Port, p.ID)
		}
	}
	return nil
}

// deleteEndpoint removes the endpoint with its port mappings and links.
// Absent is not an error.
func (a *agent) deleteEndpoint(ctx context.Context, id string) error {
	err := a.c.DeleteEndpoint(ctx, id)
	if isNotFound(err) {
		return nil
	}
	return a.wrap(err, "delete endpoint %s", id)
}
