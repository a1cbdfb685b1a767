package cni

import (
	"context"
	"errors"
	"fmt"
	"net/http"
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
		details := ""
		if me.Field != "" {
			details = "field " + me.Field
		}
		return types.NewError(types.ErrInternal, fmt.Sprintf("portcullisd refused to %s: %s", what, me.Msg), details)
	}
	return types.NewError(types.ErrTryAgainLater,
		fmt.Sprintf("portcullisd is not reachable at %s to %s: %v", a.socket, what, err),
		"start portcullisd (systemctl start portcullisd), or set \"socket\" in the CNI configuration to where it listens")
}

func isNotFound(err error) bool {
	var me *model.Error
	return errors.As(err, &me) && me.Status == http.StatusNotFound
}

// ensureNetwork returns the agent network the configuration names. It is
// created when absent and the configuration gives a subnet; an existing one
// is used as it is, and must agree with what the configuration says.
func (a *agent) ensureNetwork(ctx context.Context, c *NetConf) (model.Network, error) {
	n, err := a.c.Network(ctx, c.Network)
	switch {
	case err == nil:
		return n, c.mismatch(n)
	case !isNotFound(err):
		return n, a.wrap(err, "read network %s", c.Network)
	case c.Subnet == "":
		return n, invalidConf("network %q does not exist in portcullisd and the CNI configuration gives no \"subnet\" to create it with: create it first (pcctl or PUT /v1/networks/%s), or add \"subnet\"", c.Network, c.Network)
	}
	// Two ADDs may race here: PUT of the same network is idempotent.
	n, err = a.c.PutNetwork(ctx, c.wantNetwork())
	return n, a.wrap(err, "create network %s", c.Network)
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
