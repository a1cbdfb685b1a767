package docker

import (
	"context"
	"fmt"
	"maps"
	"slices"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/client"
)

// listAll refreshes the engine's view: every bridge network and every
// running container.
func (s *Source) listAll(ctx context.Context, cli *client.Client) error {
	if err := s.listNetworks(ctx, cli); err != nil {
		return err
	}
	list, err := cli.ContainerList(ctx, client.ContainerListOptions{})
	if err != nil {
		return fmt.Errorf("list containers: %w", err)
	}
	s.ctrs = map[string]Container{}
	for _, c := range list.Items {
		if err := s.inspect(ctx, cli, c.ID); err != nil {
			return err
		}
	}
	return nil
}

func (s *Source) listNetworks(ctx context.Context, cli *client.Client) error {
	nl, err := cli.NetworkList(ctx, client.NetworkListOptions{})
	if err != nil {
		return fmt.Errorf("list networks: %w", err)
	}
	s.nets = nl.Items
	return nil
}

// inspect refreshes one container: running ones are kept with the host
// ends of their veths, anything else is forgotten.
func (s *Source) inspect(ctx context.Context, cli *client.Client, id string) error {
	r, err := cli.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if cerrdefs.IsNotFound(err) {
		delete(s.ctrs, id)
		return nil
	}
	if err != nil {
		return fmt.Errorf("inspect container %s: %w", shortID(id), err)
	}
	info := r.Container
	if info.State == nil || !info.State.Running || info.NetworkSettings == nil ||
		info.HostConfig == nil || info.Config == nil {
		delete(s.ctrs, id)
		return nil
	}
	c := Container{Info: info}
	if macs := macsOf(c); len(macs) > 0 {
		c.Veths, err = hostVeths(s.node, info.NetworkSettings.SandboxKey, info.State.Pid, macs)
		if err != nil {
			// The container may be going away as we look: its endpoints
			// are reported as problems, and the next event settles it.
			s.log.Warn("container interfaces not found", "container", containerName(info), "err", err)
			c.VethErr = err.Error()
		}
	}
	s.ctrs[id] = c
	return nil
}

// handle takes one event into the engine's view.
func (s *Source) handle(ctx context.Context, cli *client.Client, m events.Message) error {
	switch m.Type {
	case events.ContainerEventType:
		switch m.Action {
		case events.ActionStart, events.ActionDie, events.ActionDestroy, events.ActionRename,
			events.ActionRestart, events.ActionKill, events.ActionStop:
			return s.inspect(ctx, cli, m.Actor.ID)
		}
	case events.NetworkEventType:
		switch m.Action {
		case events.ActionCreate, events.ActionDestroy, events.ActionRemove:
			return s.listNetworks(ctx, cli)
		case events.ActionConnect, events.ActionDisconnect:
			if id := m.Actor.Attributes["container"]; id != "" {
				return s.inspect(ctx, cli, id)
			}
		}
	}
	return nil
}

// containers returns the running containers in a stable order.
func (s *Source) containers() []Container {
	out := make([]Container, 0, len(s.ctrs))
	for _, id := range slices.Sorted(maps.Keys(s.ctrs)) {
		out = append(out, s.ctrs[id])
	}
	return out
}
