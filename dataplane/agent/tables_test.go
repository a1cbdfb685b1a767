package agent

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/dataplane"
	"github.com/portcullis/portcullis/dataplane/api"
	"github.com/portcullis/portcullis/dataplane/model"
	"github.com/portcullis/portcullis/internal/nstest"
)

// TestTableSizeFlags: --ct-entries, --ct6-entries and --nat6-entries size
// the eBPF flow tables; a value out of bounds is refused with the flag and
// the value, and 0 keeps the default.
func TestTableSizeFlags(t *testing.T) {
	dp := ebpfConfig(Config{})
	if err := tableSizes(&dp, Config{CTEntries: 2 << 20, NAT6Entries: 4096}); err != nil {
		t.Fatal(err)
	}
	if dp.Maps.CT != 2<<20 || dp.Maps.NAT6 != 4096 || dp.Maps.CT6 != 0 {
		t.Errorf("sizes %+v: want CT 2097152, NAT6 4096, CT6 left to the default", dp.Maps)
	}
	for _, c := range []struct {
		cfg  Config
		flag string
	}{
		{Config{CTEntries: 10}, "--ct-entries=10"},
		{Config{CT6Entries: 1 << 30}, "--ct6-entries=1073741824"},
		{Config{NAT6Entries: 1023}, "--nat6-entries=1023"},
	} {
		dp := ebpfConfig(Config{})
		err := tableSizes(&dp, c.cfg)
		if err == nil || !strings.Contains(err.Error(), c.flag) {
			t.Errorf("%s: error %v, want one naming the flag and the value", c.flag, err)
		}
		if dp.Maps != ebpfConfig(Config{}).Maps {
			t.Errorf("%s: refused, but the sizes changed to %+v", c.flag, dp.Maps)
		}
	}
	// A bad size stops the agent rather than falling back to nftables.
	if _, _, err := chooseBackend(Config{Backend: "auto", CTEntries: 5}, nil); err == nil || !strings.Contains(err.Error(), "--ct-entries=5") {
		t.Errorf("backend auto with --ct-entries=5: %v, want the flag's error", err)
	}
}

// TestTableSizeRestart: the agent restarted with another --ct-entries
// replaces the pinned pc_ct by one of the new size and carries its flows
// over: an established connection through a published port is still
// listed and still works, and status shows the new size and its memory.
func TestTableSizeRestart(t *testing.T) {
	topo := nstest.NewTopology(t, nstest.Options{})
	ag := topo.StartAgent(nstest.AgentOptions{Backend: "ebpf", Args: []string{"--ct-entries", "4096"}})
	c1 := plugContainer(t, topo, ag, "c1", "172.17.0.2")
	if err := c1.WaitInterface("eth0", netip.MustParseAddr("172.17.0.2"), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	nstest.ListenTCP(t, c1, "c1", ":80")
	client := api.NewClient(ag.Socket)
	if _, err := client.PutPort(context.Background(), model.PortMapping{ID: "web", Endpoint: "c1", Proto: "tcp", HostPort: 8080, Port: 80}); err != nil {
		t.Fatal(err)
	}
	conn, r := nstest.ConnectTCP(topo.Ext, "192.0.2.1:8080", nstest.DialOptions{Timeout: 3 * time.Second})
	if !r.OK() {
		t.Fatalf("published port before the restart: %v", r)
	}
	defer conn.Close()
	small := ctTable(t, ag)
	if small.max != 4096 || small.memlock == 0 || small.entries < 2 {
		t.Fatalf("pc_ct with --ct-entries 4096: %+v", small)
	}

	ag.SetArgs("--ct-entries", "65536")
	if err := ag.Restart(); err != nil {
		t.Fatal(err)
	}
	big := ctTable(t, ag)
	if big.max != 65536 || big.memlock <= small.memlock {
		t.Errorf("pc_ct after a restart with --ct-entries 65536: %+v (before: %+v)", big, small)
	}
	t.Logf("pc_ct: %+v with --ct-entries 4096, %+v with 65536", small, big)
	var flows []dataplane.Flow
	if err := client.Do(context.Background(), "GET", fmt.Sprintf("/v1/flows?port=%d", r.Local.Port()), nil, &flows); err != nil {
		t.Fatal(err)
	}
	if len(flows) != 1 || flows[0].Orig[0] != r.Local {
		t.Errorf("flows of %v after the resize: %+v, want the connection's", r.Local, flows)
	}
	if err := conn.Echo(); err != nil {
		t.Errorf("established connection after the resize: %v", err)
	}
	// The control: a new connection works too.
	if r := nstest.DialTCP(topo.Ext, "192.0.2.1:8080", nstest.DialOptions{Timeout: 3 * time.Second}); !r.OK() {
		t.Errorf("new connection after the resize: %v", r)
	}
}

// table is one map as /v1/status shows it.
type table struct{ entries, max, memlock float64 }

func ctTable(t *testing.T, ag *nstest.Agent) table {
	t.Helper()
	st, err := ag.Status()
	if err != nil {
		t.Fatal(err)
	}
	be, _ := st["backend_status"].(map[string]any)
	maps, _ := be["maps"].(map[string]any)
	ct, ok := maps["pc_flows4"].(map[string]any)
	if !ok {
		t.Fatalf("status has no backend_status.maps.pc_ct: %v", st["backend_status"])
	}
	num := func(k string) float64 { v, _ := ct[k].(float64); return v }
	return table{num("entries"), num("max_entries"), num("memlock")}
}

// TestAutoLoadsOnce: --backend=auto loads the eBPF programs once, pinned
// for use (no probe load of its own beforehand), and says how they attach.
func TestAutoLoadsOnce(t *testing.T) {
	topo := nstest.NewTopology(t, nstest.Options{})
	start := time.Now()
	ag := topo.StartAgent(nstest.AgentOptions{Backend: "auto"})
	t.Logf("agent with --backend=auto answered after %v", time.Since(start).Round(time.Millisecond))
	st, err := ag.Status()
	if err != nil {
		t.Fatal(err)
	}
	why := fmt.Sprint(st["backend_reason"])
	if st["backend"] != "ebpf" || !strings.HasPrefix(why, "auto: the eBPF programs load on this kernel (attach ") {
		t.Fatalf("backend %v: %s", st["backend"], why)
	}
	if n := strings.Count(ag.Logs(), `msg="ebpf datapath loaded"`); n != 1 {
		t.Errorf("the datapath was loaded %d times, want once:\n%s", n, ag.Logs())
	}
	if ct := ctTable(t, ag); ct.max != 524288 {
		t.Errorf("pc_ct of the loaded datapath: %+v, want the default size", ct)
	}
}
