package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/portcullis/portcullis/dataplane/api"
	"github.com/portcullis/portcullis/dataplane/model"
	"github.com/portcullis/portcullis/internal/nstest"
)

// The agent's memory at N mappings, for each of the three ways a node gets
// them (issue 15: under 100 MiB at 100,000, whichever way):
//
//   - one PUT each: PUT /v1/ports/{id} per mapping, one after the other,
//     as runtimes publish ports; read at every N on the way up;
//   - restart: that agent stopped and started again, so it replays its
//     state directory (snapshot and journal) at start; its peak is the
//     start's;
//   - bulk: a fresh agent started on a state directory written with all N
//     mappings (the bulk path of the rounds).
//
// RSS is VmRSS read memorySettle after the last change (the Go scavenger
// returns freed pages gradually); peak is VmHWM, the most the process
// ever had resident.

// MemoryRow is the agent's memory after one way of reaching N mappings.
type MemoryRow struct {
	Backend string  `json:"backend"`
	Way     string  `json:"way"`
	N       int     `json:"n"`
	RSSMB   float64 `json:"rss_mb"`
	PeakMB  float64 `json:"peak_mb"`
	// HeapMB is what the Go heap holds live (after a collection).
	HeapMB float64 `json:"heap_live_mb"`
	// BytesPerMapping is (RSS - RSS of the same way at N = 0) / N.
	BytesPerMapping float64 `json:"bytes_per_mapping,omitempty"`
	Seconds         float64 `json:"seconds"` // to create the mappings (or start)
	Error           string  `json:"error,omitempty"`
}

// Memory is the memory section of the results.
type Memory struct {
	Ns   []int       `json:"ns"`
	Rows []MemoryRow `json:"rows"`
	// Profiles is, per backend, the top of the agent's heap profile at the
	// largest N after one PUT each (go tool pprof -top
	// -sample_index=inuse_space).
	Profiles map[string]string `json:"profiles"`
}

const (
	wayPut     = "one PUT each"
	wayRestart = "restart"
	wayBulk    = "bulk"
	// memorySettle is how long after the last change RSS is read.
	memorySettle = 5 * time.Second
	// memoryStart bounds an agent's start with 100,000 mappings (the eBPF
	// one writes each map entry with its own system calls; on a busy
	// 2-CPU machine that took over 20 s).
	memoryStart = 3 * time.Minute
)

// runMemory measures every agent backend among modes.
func runMemory(e *env, modes []mode, ns []int) *Memory {
	mem := &Memory{Ns: ns, Profiles: map[string]string{}}
	for _, m := range modes {
		am, ok := m.(*agentMode)
		if !ok {
			continue
		}
		start := time.Now()
		rows, prof := memoryOnePutEach(e, am.backend, ns)
		mem.Rows = append(mem.Rows, rows...)
		if prof != "" {
			mem.Profiles[am.backend] = prof
		}
		for _, n := range append([]int{0}, ns...) {
			mem.Rows = append(mem.Rows, memoryBulk(e, am.backend, n))
		}
		perMapping(mem.Rows)
		for _, r := range mem.Rows {
			if r.Backend == am.backend {
				e.progress("memory %-8s %-12s N=%-6d %s", r.Backend, r.Way, r.N, memoryLine(r))
			}
		}
		e.progress("memory %s took %v", am.backend, time.Since(start).Round(time.Second))
	}
	return mem
}

func memoryLine(r MemoryRow) string {
	if r.Error != "" {
		return "error: " + r.Error
	}
	return fmt.Sprintf("rss %.0fMB peak %.0fMB heap %.0fMB %.0f B/mapping", r.RSSMB, r.PeakMB, r.HeapMB, r.BytesPerMapping)
}

// perMapping fills BytesPerMapping from each way's row at N = 0 (restart
// counts from the one-PUT-each agent at 0).
func perMapping(rows []MemoryRow) {
	base := map[string]float64{}
	for _, r := range rows {
		if r.N == 0 && r.Error == "" {
			base[r.Backend+"/"+r.Way] = r.RSSMB
		}
	}
	for i := range rows {
		r := &rows[i]
		way := r.Way
		if way == wayRestart {
			way = wayPut
		}
		if b, ok := base[r.Backend+"/"+way]; ok && r.N > 0 && r.Error == "" {
			r.BytesPerMapping = (r.RSSMB - b) * (1 << 20) / float64(r.N)
		}
	}
}

// memoryOnePutEach runs one agent up through every N one PUT at a time,
// then restarts it. It returns the rows and the heap profile's top.
func memoryOnePutEach(e *env, backend string, ns []int) ([]MemoryRow, string) {
	var rows []MemoryRow
	var prof string
	tb := newScope()
	defer tb.Close()
	fail := func(n int, way string, err error) {
		rows = append(rows, MemoryRow{Backend: backend, Way: way, N: n, Error: err.Error()})
	}
	err := tb.run(func() error {
		in := newInstance(tb, e, "memory-"+backend, 0, 1)
		a := nstest.StartAgent(tb, in.topo.Node, nstest.AgentOptions{Backend: backend, Binary: e.agent, ReadyTimeout: memoryStart})
		c := api.NewClient(a.Socket)
		if err := putEndpoints(c, in); err != nil {
			return err
		}
		rows = append(rows, readMemory(a, backend, wayPut, 0, 0))
		done := 0
		for _, n := range ns {
			start := time.Now()
			for ; done < n; done++ {
				if err := putOne(c, modelPort(fillerMapping(done, in.c2IP))); err != nil {
					fail(n, wayPut, err)
					return nil
				}
			}
			rows = append(rows, readMemory(a, backend, wayPut, n, time.Since(start)))
		}
		prof = heapTop(a)
		if err := a.Stop(); err != nil {
			return fmt.Errorf("stop the agent: %w", err)
		}
		start := time.Now()
		if err := a.Start(); err != nil {
			return fmt.Errorf("restart the agent with %d mappings: %w", done, err)
		}
		rows = append(rows, readMemory(a, backend, wayRestart, done, time.Since(start)))
		return nil
	})
	if err != nil {
		fail(0, wayPut, err)
	}
	return rows, prof
}

// memoryBulk starts a fresh agent on a state directory holding n mappings
// (and the three measured ones, as the rounds' bulk path).
func memoryBulk(e *env, backend string, n int) MemoryRow {
	row := MemoryRow{Backend: backend, Way: wayBulk, N: n}
	tb := newScope()
	defer tb.Close()
	err := tb.run(func() error {
		in := newInstance(tb, e, "memory-"+backend, n, 1)
		a := nstest.StartAgent(tb, in.topo.Node, nstest.AgentOptions{Backend: backend, Binary: e.agent, ReadyTimeout: memoryStart})
		if err := a.Stop(); err != nil {
			return err
		}
		if err := writeAgentState(a.StateDir, in); err != nil {
			return err
		}
		start := time.Now()
		if err := a.Start(); err != nil {
			return fmt.Errorf("start with %d mappings: %w", n, err)
		}
		row = readMemory(a, backend, wayBulk, n, time.Since(start))
		return nil
	})
	if err != nil {
		row.Error = err.Error()
	}
	return row
}

// putEndpoints creates the network and c1 and c2 through the API.
func putEndpoints(c *api.Client, in *instance) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := c.PutNetwork(ctx, model.Network{Name: "bench", Bridge: bridgeName, Subnet: subnet, Gateway: gateway}); err != nil {
		return fmt.Errorf("PUT network: %w", err)
	}
	for _, ep := range []model.Endpoint{
		{ID: "c1", Network: "bench", IP: in.c1IP.String(), Netns: in.c1.Path},
		{ID: "c2", Network: "bench", IP: in.c2IP.String(), Netns: in.c2.Path},
	} {
		if _, err := c.PutEndpoint(ctx, ep); err != nil {
			return fmt.Errorf("PUT endpoint %s: %w", ep.ID, err)
		}
	}
	in.waitContainers()
	return nil
}

func putOne(c *api.Client, p model.PortMapping) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := c.PutPort(ctx, p); err != nil {
		return fmt.Errorf("PUT /v1/ports/%s: %w", p.ID, err)
	}
	return nil
}

// readMemory waits memorySettle, then reads the agent's VmRSS and VmHWM,
// and last (it collects garbage) the live heap.
func readMemory(a *nstest.Agent, backend, way string, n int, took time.Duration) MemoryRow {
	row := MemoryRow{Backend: backend, Way: way, N: n, Seconds: took.Seconds()}
	time.Sleep(memorySettle)
	pid, err := findAgent(a.Socket)
	if err == nil {
		var m procMemory
		if m, err = processMemory(pid); err == nil {
			row.RSSMB, row.PeakMB = float64(m.RSS)/(1<<20), float64(m.Peak)/(1<<20)
		}
	}
	if err != nil {
		row.Error = err.Error()
		return row
	}
	if st, b, err := a.Get("/debug/memory?gc=1"); err == nil && st == http.StatusOK {
		var ms map[string]uint64
		if json.Unmarshal(b, &ms) == nil {
			row.HeapMB = float64(ms["heap_alloc"]) / (1 << 20)
		}
	}
	return row
}

// heapTop returns the top of the agent's heap profile by live bytes, as
// `go tool pprof -top -sample_index=inuse_space` prints it.
func heapTop(a *nstest.Agent) string {
	st, b, err := a.Get("/debug/pprof/heap?gc=1")
	if err != nil || st != http.StatusOK {
		return fmt.Sprintf("(no heap profile: %d %v)", st, err)
	}
	f := filepath.Join(a.Dir, "heap.pprof")
	if err := os.WriteFile(f, b, 0o600); err != nil {
		return fmt.Sprintf("(no heap profile: %v)", err)
	}
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	if p, err := exec.LookPath("go"); err == nil {
		goTool = p
	}
	out, err := exec.Command(goTool, "tool", "pprof", "-top", "-nodecount=25", "-sample_index=inuse_space", f).CombinedOutput()
	if err != nil {
		return fmt.Sprintf("(go tool pprof: %v: %s)", err, out)
	}
	return strings.TrimSpace(string(out))
}

// renderMemory writes the memory section: one table of every way at every
// N, then each backend's heap profile.
func renderMemory(b *strings.Builder, mem *Memory) {
	if mem == nil {
		return
	}
	w := func(format string, args ...any) { fmt.Fprintf(b, format+"\n", args...) }
	w("")
	w("## Agent memory (issue 15: under 100 MiB at 100,000 mappings, whichever way)")
	w("")
	w("VmRSS %v after the last change (or after start), VmHWM (peak: for restart and bulk, the start's), "+
		"the live Go heap after a collection, and bytes per mapping over the same way at N = 0 (MiB = 2^20 bytes). "+
		"One PUT each: PUT /v1/ports/{id} one after the other; restart: that agent restarted, replaying its state "+
		"directory; bulk: a fresh agent started on a state directory holding the N mappings.", memorySettle)
	w("")
	var rows [][]string
	for _, r := range mem.Rows {
		if r.Error != "" {
			rows = append(rows, []string{r.Backend, r.Way, fmt.Sprint(r.N), "error: " + firstLine(r.Error), "", "", "", ""})
			continue
		}
		bpm := ""
		if r.N > 0 {
			bpm = fmtValue(r.BytesPerMapping, 0)
		}
		rows = append(rows, []string{r.Backend, r.Way, fmt.Sprint(r.N), fmtValue(r.RSSMB, 1), fmtValue(r.PeakMB, 1),
			fmtValue(r.HeapMB, 1), bpm, fmtValue(r.Seconds, 1)})
	}
	writeTable(b, []string{"backend", "way", "N", "RSS MiB", "peak MiB", "live heap MiB", "bytes/mapping", "s"}, rows)
	for _, be := range slices.Sorted(maps.Keys(mem.Profiles)) {
		w("")
		w("Heap profile of the %s agent at N = %d after one PUT each (go tool pprof -top -sample_index=inuse_space):", be, mem.Ns[len(mem.Ns)-1])
		w("")
		w("```")
		w("%s", mem.Profiles[be])
		w("```")
	}
}
