package api_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/portcullis/portcullis/dataplane"
	"github.com/portcullis/portcullis/dataplane/api"
	"github.com/portcullis/portcullis/dataplane/dptest"
	"github.com/portcullis/portcullis/dataplane/model"
)

func startAgent(t *testing.T, dir string, be dataplane.Backend) *api.Client {
	return api.NewClient(dptest.StartAgent(t, dir, be))
}

func TestAPI(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	be := &dptest.Recorder{}
	c := startAgent(t, dir, be)
	n, err := c.PutNetwork(ctx, model.Network{Name: "default", Bridge: "pc0", Subnet: "172.17.0.0/16"})
	if err != nil || n.Gateway != "172.17.0.1" {
		t.Fatalf("put network: %+v %v", n, err)
	}
	if _, err := c.PutEndpoint(ctx, model.Endpoint{ID: "web", Network: "default", IP: "172.17.0.2", Netns: "/run/netns/web"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PutPort(ctx, model.PortMapping{ID: "web80", Endpoint: "web", Proto: "tcp", HostPort: 8080, Port: 80}); err != nil {
		t.Fatal(err)
	}
	status := func(err error) int {
		var e *model.Error
		if errors.As(err, &e) {
			return e.Status
		}
		return 0
	}
	_, err = c.PutPort(ctx, model.PortMapping{ID: "x", Endpoint: "web", Proto: "tcp", HostPort: 8080, Port: 81})
	if status(err) != 409 {
		t.Errorf("collision: %v", err)
	}
	if _, err := c.Port(ctx, "nope"); status(err) != 404 {
		t.Errorf("missing port: %v", err)
	}
	if err := c.Do(ctx, "PUT", "/v1/ports/a", map[string]any{"id": "b", "endpoint": "web", "proto": "tcp", "host_port": 1}, nil); status(err) != 400 {
		t.Errorf("id mismatch: %v", err)
	}
	if err := c.Do(ctx, "PUT", "/v1/ports/a", map[string]any{"endpoint": "web", "colour": "red"}, nil); status(err) != 400 {
		t.Errorf("unknown field: %v", err)
	}
	if err := c.DeletePort(ctx, "never-was"); err != nil {
		t.Errorf("deleting an absent mapping: %v", err)
	}

	// A change the backend refuses leaves everything as it was.
	be.Fail = errors.New("kernel said no")
	if _, err := c.PutPort(ctx, model.PortMapping{ID: "p2", Endpoint: "web", Proto: "udp", HostPort: 53, Port: 53}); status(err) != 500 {
		t.Errorf("failed apply: %v", err)
	}
	be.Fail = nil
	if _, err := c.Port(ctx, "p2"); status(err) != 404 {
		t.Errorf("failed change is visible: %v", err)
	}
	if _, ok := be.Applied.Ports["p2"]; ok {
		t.Error("failed change reached the backend state")
	}
	// The next change after a failure is a full resync.
	before := be.Full
	if _, err := c.PutPort(ctx, model.PortMapping{ID: "p3", Endpoint: "web", Proto: "udp", HostPort: 54, Port: 53}); err != nil {
		t.Fatal(err)
	}
	if be.Full != before+1 {
		t.Error("no full resync after a failed apply")
	}

	// A new agent on the same state directory re-applies the same state.
	be2 := &dptest.Recorder{}
	startAgent(t, t.TempDir(), be2) // unrelated dir: starts empty
	if len(be2.Applied.Ports) != 0 {
		t.Error("fresh agent has ports")
	}
	be3 := &dptest.Recorder{}
	c3 := startAgentAt(t, dir, be3)
	ports, err := c3.Ports(ctx)
	if err != nil || len(ports) != 2 || be3.Full != 1 || len(be3.Applied.Ports) != 2 {
		t.Errorf("restart: ports %v err %v full %d", ports, err, be3.Full)
	}
}

// startAgentAt starts a second agent on dir's state with its own socket.
func startAgentAt(t *testing.T, dir string, be dataplane.Backend) *api.Client {
	sub := t.TempDir()
	if err := copyState(filepath.Join(dir, "state"), filepath.Join(sub, "state")); err != nil {
		t.Fatal(err)
	}
	return startAgent(t, sub, be)
}
