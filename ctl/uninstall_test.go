package ctl

import (
	"context"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/dataplane/api"
	"github.com/portcullis/portcullis/dataplane/model"
	"github.com/portcullis/portcullis/internal/nstest"
)

// pcctl uninstall refuses while the agent runs, and once it is stopped
// leaves nothing in the node: no table, no interface, no pin.
func TestUninstall(t *testing.T) {
	topo := nstest.NewTopology(t, nstest.Options{})
	ag := topo.StartAgent(nstest.AgentOptions{Backend: "ebpf"})
	c := api.NewClient(ag.Socket)
	ctx := context.Background()
	if _, err := c.PutNetwork(ctx, model.Network{Name: "n", Bridge: "pc0", Subnet: "172.17.0.0/16"}); err != nil {
		t.Fatal(err)
	}
	ns := topo.AddContainer("c1")
	if _, err := c.PutEndpoint(ctx, model.Endpoint{ID: "c1", Network: "n", IP: "172.17.0.2", Netns: ns.Path}); err != nil {
		t.Fatal(err)
	}
	args := []string{"uninstall", "-state-dir", ag.StateDir, "-bpffs", ag.BPFFS}
	run := func() (string, error) {
		var out string
		var err error
		topo.Node.Do(func() error { out, err = pcctl(t, ag.Socket, args...); return nil })
		return out, err
	}
	if _, err := run(); err == nil || !strings.Contains(err.Error(), "stop it first") {
		t.Fatalf("uninstall with the agent running: %v", err)
	}
	if err := ag.Stop(); err != nil {
		t.Fatal(err)
	}
	if out, err := run(); err != nil {
		t.Fatalf("uninstall: %v (%s)", err, out)
	}
	f, err := nstest.Inspect(topo.Node, ag.BPFFS)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.NftTables) > 0 || len(f.Pinned) > 0 || len(f.TCX) > 0 || len(f.TCFilters) > 0 || strings.Join(f.Interfaces, " ") != "lo up0" {
		t.Errorf("left behind: %+v", f)
	}
	if _, err := run(); err != nil {
		t.Errorf("second uninstall: %v", err)
	}
}
