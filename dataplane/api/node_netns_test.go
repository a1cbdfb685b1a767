package api_test

import (
	"context"
	"net/http"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/dataplane/api"
	"github.com/portcullis/portcullis/dataplane/model"
	"github.com/portcullis/portcullis/internal/nstest"
)

func TestMain(m *testing.M) { nstest.Main(m) }

// What only the node knows (is a path a network namespace, is an address
// the node's, does an interface exist) is refused with 400 naming the
// field and the value, before anything is created, on both backends.
func TestNodeChecks(t *testing.T) {
	for _, backend := range []string{"nftables", "ebpf"} {
		t.Run(backend, func(t *testing.T) {
			topo := nstest.NewTopology(t, nstest.Options{})
			ag := topo.StartAgent(nstest.AgentOptions{Backend: backend})
			c := api.NewClient(ag.Socket)
			if _, err := c.PutNetwork(context.Background(), model.Network{Name: "pc0", Bridge: "pc0", Subnet: "172.17.0.0/16"}); err != nil {
				t.Fatal(err)
			}
			t.Run("netns", func(t *testing.T) { checkNetns(t, topo, c) })
			t.Run("host_ip", func(t *testing.T) { checkHostIP(t, topo, c) })
			t.Run("uplinks", func(t *testing.T) { checkUplinks(t, c) })
		})
	}
}

// refused checks err is a 400 of field whose message names every value.
func refused(t *testing.T, what string, err error, field string, values ...string) {
	t.Helper()
	e, ok := err.(*model.Error)
	if !ok || e.Status != http.StatusBadRequest || e.Field != field {
		t.Errorf("%s: got %v, want 400 naming field %s", what, err, field)
		return
	}
	t.Logf("%s: %d %s: %s", what, e.Status, e.Field, e.Msg)
	for _, v := range values {
		if !strings.Contains(e.Msg, v) {
			t.Errorf("%s: %q does not name %q", what, e.Msg, v)
		}
	}
}

func nodeLinks(t *testing.T, topo *nstest.Topology) string {
	t.Helper()
	return topo.Node.MustIP(t, "-brief", "link")
}

func checkNetns(t *testing.T, topo *nstest.Topology, c *api.Client) {
	ctx := context.Background()
	links := nodeLinks(t, topo)
	for _, bad := range []struct{ path, says string }{
		{"/etc/passwd", "not a namespace file"},
		{"/proc/self/ns/mnt", "mount namespace"},
		{"/run/netns/pct-never-made-" + topo.Suffix, "no such file"},
	} {
		_, err := c.PutEndpoint(ctx, model.Endpoint{ID: "c1", Network: "pc0", IP: "172.17.0.2", Netns: bad.path})
		refused(t, "netns "+bad.path, err, "netns", bad.path, bad.says)
		if _, err := c.Endpoint(ctx, "c1"); model.StatusOf(err) != http.StatusNotFound {
			t.Errorf("netns %s: endpoint exists after the refusal: %v", bad.path, err)
		}
		if now := nodeLinks(t, topo); now != links {
			t.Errorf("netns %s: the node's interfaces changed:\nbefore %s\nafter  %s", bad.path, links, now)
		}
	}
	// Positive control: a network namespace is plugged.
	ns := topo.AddContainer("c1")
	ip := "172.17.0.2"
	if _, err := c.PutEndpoint(ctx, model.Endpoint{ID: "c1", Network: "pc0", IP: ip, Netns: ns.Path}); err != nil {
		t.Fatalf("netns %s: %v", ns.Path, err)
	}
	if err := ns.WaitInterface("eth0", netip.MustParseAddr(ip), 5*time.Second); err != nil {
		t.Error(err)
	}
}

func checkHostIP(t *testing.T, topo *nstest.Topology, c *api.Client) {
	ctx := context.Background()
	p := model.PortMapping{ID: "p", Endpoint: "c1", Proto: "tcp", HostIP: "192.0.2.99", HostPort: 8080, Port: 80}
	_, err := c.PutPort(ctx, p)
	refused(t, "host_ip not on the node", err, "host_ip", "192.0.2.99", nstest.NodeAddr.String(), "127.0.0.1", nstest.NodeAddr6.String())
	if _, err := c.Port(ctx, "p"); model.StatusOf(err) != http.StatusNotFound {
		t.Errorf("mapping exists after the refusal: %v", err)
	}
	// Positive controls: the node's uplink address, loopback (B7, B11)
	// and every address.
	for i, ok := range []string{nstest.NodeAddr.String(), "127.0.0.1", "0.0.0.0", ""} {
		p.HostIP, p.HostPort = ok, 8081+i
		if _, err := c.PutPort(ctx, p); err != nil {
			t.Errorf("host_ip %q: %v", ok, err)
		}
	}
}

func checkUplinks(t *testing.T, c *api.Client) {
	ctx := context.Background()
	before, err := c.Settings(ctx)
	if err != nil {
		t.Fatal(err)
	}
	err = c.PutSettings(ctx, model.Settings{Uplinks: []string{"nope9"}})
	refused(t, "uplink that does not exist", err, "uplinks", `"nope9"`, nstest.UplinkName)
	if now, err := c.Settings(ctx); err != nil || !reflect.DeepEqual(now, before) {
		t.Errorf("settings after the refusal: %+v %v, want %+v", now, err, before)
	}
	// Positive control: the node's uplink is accepted.
	if err := c.PutSettings(ctx, model.Settings{Uplinks: []string{nstest.UplinkName}}); err != nil {
		t.Errorf("uplink %s: %v", nstest.UplinkName, err)
	}
	if now, err := c.Settings(ctx); err != nil || !reflect.DeepEqual(now.Uplinks, []string{nstest.UplinkName}) {
		t.Errorf("settings after uplink %s: %+v %v", nstest.UplinkName, now, err)
	}
}
