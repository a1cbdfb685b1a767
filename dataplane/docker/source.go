// Package docker is the agent's Docker source: it follows a Docker engine
// (dockerd with "iptables": false) through its API and keeps the agent's
// desired state equal to what the engine has: its bridge networks, its
// running containers' interfaces, their published ports and legacy links.
// What it makes is owned by it (model.SourceDocker): the API shows those
// objects and refuses to change them.
package docker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
	"github.com/vishvananda/netlink"

	"github.com/portcullis/portcullis/dataplane/model"
)

// Reconciler is what the source needs of the agent's reconciler.
type Reconciler interface {
	DoAs(ctx context.Context, source string, op model.Op) (*model.Delta, error)
	Read(f func(want *model.Resolved))
}

// Config says which engine to follow and what docker0 gets.
type Config struct {
	Host     string // e.g. unix:///var/run/docker.sock
	Defaults Defaults
	// Resync is how often everything is listed again, events or not.
	Resync time.Duration
}

// Status is what /v1/status says of the source.
type Status struct {
	Host         string         `json:"host"`
	Connected    bool           `json:"connected"`
	APIVersion   string         `json:"api_version,omitempty"`
	LastSync     time.Time      `json:"last_sync,omitzero"`
	LastSyncTook string         `json:"last_sync_took,omitempty"`
	LastError    string         `json:"last_error,omitempty"`
	Networks     int            `json:"networks"`
	Containers   int            `json:"containers"`
	Ignored      map[string]int `json:"ignored,omitempty"`
	Problems     []string       `json:"problems,omitempty"`
	Syncs        uint64         `json:"syncs"`
	Reconnects   uint64         `json:"reconnects"`
}

// Source follows one Docker engine.
type Source struct {
	cfg  Config
	rec  Reconciler
	log  *slog.Logger
	node *netlink.Handle

	mu sync.Mutex
	st Status

	// Owned by the loop: the engine's view, refreshed by lists and events.
	nets []network.Summary
	ctrs map[string]Container
}

// New returns a source; Run follows the engine.
func New(cfg Config, rec Reconciler, log *slog.Logger) (*Source, error) {
	if cfg.Resync <= 0 {
		cfg.Resync = time.Minute
	}
	h, err := netlink.NewHandle()
	if err != nil {
		return nil, fmt.Errorf("netlink handle: %w", err)
	}
	return &Source{cfg: cfg, rec: rec, log: log.With("source", "docker"), node: h,
		st: Status{Host: cfg.Host}, ctrs: map[string]Container{}}, nil
}

// Status returns a copy of the source's status.
func (s *Source) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.st
	st.Problems = slices.Clone(st.Problems)
	return st
}

// ErrIPTables says dockerd still programs iptables.
var ErrIPTables = errors.New("dockerd programs iptables itself")

// CheckIPTables refuses Docker mode while dockerd's own chains are present:
// the two would fight over every packet.
func CheckIPTables() error {
	found, err := IPTablesInUse()
	if err != nil {
		return fmt.Errorf("look for dockerd's iptables chains: %w", err)
	}
	if len(found) > 0 {
		return fmt.Errorf("%w (found %v): set \"iptables\": false, \"ip6tables\": false and \"userland-proxy\": false in /etc/docker/daemon.json, restart dockerd, remove its chains (iptables -t nat -X DOCKER ... or reboot), then start portcullisd --docker", ErrIPTables, found)
	}
	return nil
}

// Run follows the engine until ctx ends, reconnecting with backoff when it
// goes away. Meanwhile the dataplane stays as it is.
func (s *Source) Run(ctx context.Context) {
	defer s.node.Close()
	backoff := 250 * time.Millisecond
	for ctx.Err() == nil {
		began := time.Now()
		err := s.session(ctx)
		if ctx.Err() != nil {
			return
		}
		s.mu.Lock()
		s.st.Connected, s.st.LastError = false, err.Error()
		s.st.Reconnects++
		s.mu.Unlock()
		s.log.Warn("docker engine not followed; dataplane stays in force", "host", s.cfg.Host, "err", err, "retry_in", backoff)
		if time.Since(began) > 30*time.Second {
			backoff = 250 * time.Millisecond
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}

// session connects, lists everything, and follows events until the stream
// breaks. Events are subscribed before the lists, so none is missed.
func (s *Source) session(ctx context.Context) error {
	cli, err := client.New(client.WithHost(s.cfg.Host), client.WithAPIVersionNegotiation())
	if err != nil {
		return fmt.Errorf("docker client for %s: %w", s.cfg.Host, err)
	}
	defer cli.Close()
	ping, err := cli.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true})
	if err != nil {
		return fmt.Errorf("ping %s: %w", s.cfg.Host, err)
	}
	if err := CheckIPTables(); err != nil {
		return err
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	evs := cli.Events(sctx, client.EventsListOptions{Filters: make(client.Filters).
		Add("type", string(events.ContainerEventType), string(events.NetworkEventType))})
	if err := s.listAll(sctx, cli); err != nil {
		return err
	}
	s.mu.Lock()
	s.st.Connected, s.st.APIVersion, s.st.LastError = true, ping.APIVersion, ""
	s.mu.Unlock()
	s.log.Info("following docker engine", "host", s.cfg.Host, "api", ping.APIVersion)
	s.sync(sctx)
	resync := time.NewTicker(s.cfg.Resync)
	defer resync.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-evs.Err:
			return fmt.Errorf("docker events: %w", err)
		case m := <-evs.Messages:
			if err := s.handle(sctx, cli, m); err != nil {
				return err
			}
			// Take what else arrived meanwhile before syncing once: a
			// container start comes with network connect events.
			if err := s.drain(sctx, cli, evs); err != nil {
				return err
			}
			s.sync(sctx)
		case <-resync.C:
			if err := s.listAll(sctx, cli); err != nil {
				return err
			}
			s.sync(sctx)
		}
	}
}

func (s *Source) drain(ctx context.Context, cli *client.Client, evs client.EventsResult) error {
	quiet := time.NewTimer(20 * time.Millisecond)
	defer quiet.Stop()
	for {
		select {
		case m := <-evs.Messages:
			if err := s.handle(ctx, cli, m); err != nil {
				return err
			}
		case <-quiet.C:
			return nil
		}
	}
}

// sync applies the difference between what the engine has and what the
// agent holds. One object that fails does not stop the others; it is
// reported and tried again at the next sync.
func (s *Source) sync(ctx context.Context) {
	start := time.Now()
	want := Translate(s.nets, s.containers(), s.cfg.Defaults)
	var cur *model.State
	s.rec.Read(func(r *model.Resolved) { cur = r.State() })
	ops, skipped := Plan(cur, want)
	problems := append(want.Problems, skipped...)
	failed := map[string]bool{} // endpoints whose PUT failed: their ports and links would too
	for _, op := range ops {
		if dependsOnFailed(op, failed) {
			continue
		}
		if _, err := s.rec.DoAs(ctx, model.SourceDocker, op); err != nil {
			problems = append(problems, fmt.Sprintf("%s %s: %v", op.Kind, op.Target(), err))
			if op.Endpoint != nil {
				failed[op.Endpoint.ID] = true
			}
			continue
		}
		s.log.Debug("applied", "kind", op.Kind, "name", op.Target(), "delete", op.Delete)
	}
	for _, p := range problems {
		s.log.Warn("docker object not applied", "problem", p)
	}
	s.mu.Lock()
	s.st.LastSync, s.st.LastSyncTook = time.Now(), time.Since(start).Round(time.Microsecond).String()
	s.st.Networks, s.st.Containers = len(want.Networks), len(s.ctrs)
	s.st.Ignored, s.st.Problems = want.Ignored, problems
	s.st.Syncs++
	s.mu.Unlock()
	if len(ops) > 0 {
		s.log.Info("synced with docker", "changes", len(ops), "problems", len(problems), "took", time.Since(start))
	}
}

func dependsOnFailed(op model.Op, failed map[string]bool) bool {
	switch {
	case op.Port != nil:
		return failed[op.Port.Endpoint]
	case op.Link != nil:
		return failed[op.Link.Parent] || failed[op.Link.Child]
	}
	return false
}

// macsOf returns each network's container-side MAC address.
func macsOf(c Container) map[string]net.HardwareAddr {
	m := map[string]net.HardwareAddr{}
	for name, es := range c.Info.NetworkSettings.Networks {
		if es != nil && len(es.MacAddress) == 6 {
			m[name] = net.HardwareAddr(es.MacAddress)
		}
	}
	return m
}
