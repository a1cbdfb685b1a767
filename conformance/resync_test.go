package conformance

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/portcullis/portcullis/dataplane/api"
	"github.com/portcullis/portcullis/internal/nstest"
)

// resyncPeriod is the agent's --resync-period in the resync row: short, so
// the row waits little, long enough that a repair is seen to wait for it.
const resyncPeriod = 2 * time.Second

// Drift repair: what is changed behind the agent's back (a flushed nft
// table; a detached program, a deleted map entry) is put back by the
// periodic resync, within a period, with no API call. A connection
// established before stays up across the resyncs and the repairs.
func testResyncRepairsDrift(t *testing.T) {
	e := newEnvArgs(t, "--resync-period", resyncPeriod.String())
	e.network(pc0(false))
	c1 := e.container("c1", "pc0", 2)
	servers(t, c1.NS, "c1", 80)
	e.publish(tcpPort("web", "c1", 8080, 80))
	conn, r := nstest.ConnectTCP(e.ext(), "192.0.2.1:8080", nstest.DialOptions{Timeout: reachTimeout})
	if conn == nil {
		t.Fatalf("connection through the mapping: %v", r)
	}
	defer conn.Close()

	// A resync with nothing to repair leaves the connection alone, and
	// counts no repair.
	e.waitSyncs(t, "periodic", 1)
	if err := conn.Echo(); err != nil {
		t.Errorf("connection established before a periodic resync: %v", err)
	}
	if n := e.syncStat(t, "repairs"); n != 0 {
		t.Errorf("%v repairs counted with nothing to repair", n)
	}

	for _, d := range drifts(t, e) {
		t.Run(d.name, func(t *testing.T) {
			reachTCP(t, e.ext(), "192.0.2.1:8080", "c1") // control
			repairs := e.syncStat(t, "repairs")
			d.do()
			if r := nstest.DialTCP(e.ext(), "192.0.2.1:8080", nstest.DialOptions{Timeout: probeTimeout}); r.OK() && r.Server == "c1" {
				t.Fatalf("the drift did not break the mapping (test proves nothing): %v", r)
			}
			var last nstest.TCPResult
			for deadline := time.Now().Add(2 * resyncPeriod); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
				if last = nstest.DialTCP(e.ext(), "192.0.2.1:8080", nstest.DialOptions{Timeout: probeTimeout}); last.OK() && last.Server == "c1" {
					break
				}
			}
			if !last.OK() || last.Server != "c1" {
				t.Errorf("published port not repaired within two resync periods: %v", last)
			}
			if err := conn.Echo(); err != nil {
				t.Errorf("connection established before the drift, after the repair: %v", err)
			}
			if n := e.syncStat(t, "repairs"); n != repairs+1 {
				t.Errorf("repairs counted: %v after the drift was repaired, %v before, want one more", n, repairs)
			}
		})
	}
}

// drift is something done behind the agent's back that breaks the
// published port.
type drift struct {
	name string
	do   func()
}

func drifts(t *testing.T, e *env) []drift {
	if *backend != "ebpf" {
		return []drift{{"nft table flushed", func() {
			e.node().MustExec(t, "nft", "flush", "table", "inet", "portcullis")
		}}}
	}
	return []drift{
		{"uplink ingress program detached", func() { detachUplinkIngress(t, e) }},
		{"published port entries deleted", func() { clearMap(t, filepath.Join(e.agent.BPFFS, "maps", "pc_ports")) }},
	}
}

// detachUplinkIngress detaches the program from up0's ingress: its tcx
// link, or its tc filter.
func detachUplinkIngress(t *testing.T, e *env) {
	t.Helper()
	pins, _ := filepath.Glob(filepath.Join(e.agent.BPFFS, "links", "tcx-*-ingress"))
	up, err := e.node().Interface(nstest.UplinkName)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pins {
		if filepath.Base(p) != fmt.Sprintf("tcx-%d-ingress", up.Index) {
			continue
		}
		l, err := link.LoadPinnedLink(p, nil)
		if err != nil {
			t.Fatalf("open pinned link %s: %v", p, err)
		}
		defer l.Close()
		if err := l.Detach(); err != nil {
			t.Fatalf("detach %s: %v", p, err)
		}
		return
	}
	e.node().MustExec(t, "tc", "filter", "del", "dev", nstest.UplinkName, "ingress")
}

// clearMap deletes every entry of the pinned map at path.
func clearMap(t *testing.T, path string) {
	t.Helper()
	m, err := ebpf.LoadPinnedMap(path, nil)
	if err != nil {
		t.Fatalf("open pinned map %s: %v", path, err)
	}
	defer m.Close()
	var keys [][]byte
	var k []byte
	it := m.Iterate()
	for v := []byte(nil); it.Next(&k, &v); {
		keys = append(keys, append([]byte(nil), k...))
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if err := m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			t.Fatalf("delete from %s: %v", path, err)
		}
	}
	if len(keys) == 0 {
		t.Fatalf("%s was empty: nothing to delete", path)
	}
}

// syncStat reads a counter of the sync runner from /v1/status.
func (e *env) syncStat(t *testing.T, name string) float64 {
	t.Helper()
	st, err := e.api.Status(e.ctx)
	if err != nil {
		t.Fatalf("GET /v1/status: %v", err)
	}
	sync, _ := st["sync"].(map[string]any)
	n, _ := sync[name].(float64)
	return n
}

// waitSyncs waits until the agent reports at least n resyncs of reason.
func (e *env) waitSyncs(t *testing.T, reason string, n float64) {
	t.Helper()
	deadline := time.Now().Add(3 * resyncPeriod)
	for {
		st, err := e.api.Status(e.ctx)
		if err != nil {
			t.Fatalf("GET /v1/status: %v", err)
		}
		sync, _ := st["sync"].(map[string]any)
		syncs, _ := sync["syncs"].(map[string]any)
		if got, _ := syncs[reason].(float64); got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s resync reported within %v: status sync = %v", reason, 3*resyncPeriod, sync)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// newEnvArgs is newEnv with extra agent flags.
func newEnvArgs(t *testing.T, args ...string) *env {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	topo := nstest.NewTopology(t, nstest.Options{})
	a := topo.StartAgent(nstest.AgentOptions{Backend: *backend, Binary: agentBinary, Args: args})
	e := &env{t: t, ctx: ctx, topo: topo, agent: a, api: api.NewClient(a.Socket), nets: map[string]netInfo{}}
	e.checkBackend()
	return e
}
