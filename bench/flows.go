package bench

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cilium/ebpf"

	"github.com/portcullis/portcullis/dataplane"
	"github.com/portcullis/portcullis/dataplane/api"
	"github.com/portcullis/portcullis/dataplane/model"
	"github.com/portcullis/portcullis/internal/nstest"
)

// The flow table scenarios run on the eBPF backend only: nftables leaves
// flows to the kernel's conntrack, which has its own limits.

// flowContainers is how many containers open the flows.
const flowContainers = 4

// flowFill is how full the table is with the scenario's flows: the table
// is sized so that they fill it to this fraction.
const flowFill = 0.9

// FlowBench is the million-flow scenario: flows held at once, what they
// cost, and what happens when the table is full.
type FlowBench struct {
	Flows     int      `json:"flows"`
	CTEntries int      `json:"ct_entries"` // --ct-entries given to the agent
	Error     string   `json:"error,omitempty"`
	Notes     []string `json:"notes,omitempty"`
	// StartSeconds is the agent's start until it answered, with its full
	// sync (N = 0) as it logged it.
	StartSeconds    float64 `json:"start_s"`
	FullSyncSeconds float64 `json:"full_sync_s"`
	// The fill: one packet per flow, from flowContainers containers.
	FillSeconds float64   `json:"fill_s"`
	FillRates   []float64 `json:"fill_rates"` // flows/s of each tenth of the flows
	SendErrors  int       `json:"send_errors"`
	Entries     int       `json:"entries"`       // pc_ct entries after the fill, counted
	CTMemlock   int64     `json:"ct_memlock"`    // pc_ct's kernel memory, bytes (status)
	MapsMemlock int64     `json:"maps_memlock"`  // every map the agent holds, bytes
	RSSEmpty    int64     `json:"rss_empty"`     // agent RSS before the fill, bytes
	RSSHeld     int64     `json:"rss_held"`      // after a garbage collection at that fill
	RSSPeak     int64     `json:"rss_peak"`      // VmHWM at the end
	GCWindow    float64   `json:"gc_window_s"`   // from the fill to the end of the next collection
	GCCPU       float64   `json:"gc_cpu_s"`      // the agent's CPU over that window
	GCPassCPU   float64   `json:"gc_pass_cpu_s"` // of it, the collection's burst
	GCEntries   int       `json:"gc_entries"`    // entries the collection read
	// Taking turns, the empty instance and the full one: new flows/s of a
	// batch of the generator's, and connections/s through a published
	// port, one value a round each. AltFlows are the flows that added.
	NewFlowsEmpty  []float64 `json:"new_flows_empty"`
	NewFlowsFull   []float64 `json:"new_flows_full"`
	ConnRatesEmpty []float64 `json:"conn_rates_empty"`
	ConnRatesFull  []float64 `json:"conn_rates_full"`
	AltFlows       int       `json:"alt_flows"`
	EntriesAfter   int       `json:"entries_after"`    // pc_ct entries after the turns
	ConnErrors     int       `json:"conn_errors_full"` // failed connections at the fill
	// Overfilled: flows sent beyond what the table holds.
	Overfill       int    `json:"overfill"`
	FullDrops      uint64 `json:"full_drops"`      // conntrack-full drops counted meanwhile
	Established    string `json:"established"`     // what the held connections did when full ("ok" or the error)
	NewRefused     string `json:"new_refused"`     // what a new connection did when full
	RefusedCounted uint64 `json:"refused_counted"` // conntrack-full drops that new connection added
}

// flowRig is one instance of a flow scenario: the node with its agent,
// the external host, the containers.
type flowRig struct {
	tb     *scope
	e      *env
	topo   *nstest.Topology
	agent  *nstest.Agent
	client *api.Client
	srcs   []flowSrc
	pid    int
	// started is when the agent was started: its collector's first pass
	// comes 30 s later.
	started time.Time
	ct      *ebpf.Map // the pinned pc_ct, read-only
}

// newFlowRig builds the node, the external host and n containers on one
// masqueraded network, starts the eBPF agent with args, and publishes
// 8080 and 8081 to the first container's 80 and 81.
func newFlowRig(tb *scope, e *env, n int, args ...string) *flowRig {
	r := &flowRig{tb: tb, e: e, topo: nstest.NewTopology(tb, nstest.Options{}), started: time.Now()}
	r.agent = nstest.StartAgent(tb, r.topo.Node, nstest.AgentOptions{Backend: "ebpf", Binary: e.agent, Args: args})
	r.client = api.NewClient(r.agent.Socket)
	ctx := context.Background()
	r.must(r.client.PutNetwork(ctx, model.Network{Name: "bench", Bridge: bridgeName, Subnet: subnet, Gateway: gateway}))
	for i := range n {
		ns := r.topo.AddContainer(fmt.Sprintf("c%d", i+1))
		ip := netip.AddrFrom4([4]byte{172, 17, 0, byte(2 + i)})
		r.must(r.client.PutEndpoint(ctx, model.Endpoint{ID: ns.Name, Network: "bench", IP: ip.String(), Netns: ns.Path}))
		r.srcs = append(r.srcs, flowSrc{ns: ns, addr: ip})
	}
	for i, hp := range []int{echoHostPort, echoHostPort + 1} {
		r.must(r.client.PutPort(ctx, model.PortMapping{ID: fmt.Sprintf("p%d", hp), Endpoint: r.srcs[0].ns.Name, Proto: "tcp", HostPort: hp, Port: echoPort + i}))
	}
	for _, s := range r.srcs {
		if err := s.ns.WaitInterface("eth0", s.addr, 10*time.Second); err != nil {
			tb.Fatalf("%v", err)
		}
		for _, kv := range [][2]string{{"net.core.somaxconn", "4096"}, {"net.ipv4.tcp_tw_reuse", "1"}, {"net.ipv4.ip_local_port_range", "1024 65535"}} {
			if err := s.ns.SetSysctl(kv[0], kv[1]); err != nil {
				tb.Fatalf("%v", err)
			}
		}
	}
	in := &instance{tb: tb, topo: r.topo, c1: r.srcs[0].ns, c2: r.srcs[0].ns}
	if err := in.tuneClient(e.cfg.Clients); err != nil {
		tb.Fatalf("%v", err)
	}
	var err error
	if r.pid, err = findAgent(r.agent.Socket); err != nil {
		tb.Fatalf("%v", err)
	}
	r.ct, err = ebpf.LoadPinnedMap(filepath.Join(r.agent.BPFFS, "maps", "pc_flows4"), &ebpf.LoadPinOptions{ReadOnly: true})
	if err != nil {
		tb.Fatalf("open the pinned pc_ct: %v", err)
	}
	tb.Cleanup(func() { r.ct.Close() })
	return r
}

func (r *flowRig) must(_ any, err error) {
	if err != nil {
		r.tb.Fatalf("%v", err)
	}
}

// published is the node's address and the published port hp.
func published(hp int) netip.AddrPort { return netip.AddrPortFrom(nstest.NodeAddr, uint16(hp)) }

// drops returns the agent's drop counters summed by reason.
func (r *flowRig) drops() map[string]uint64 {
	var list []dataplane.Drop
	if err := r.client.Do(context.Background(), "GET", "/v1/drops", nil, &list); err != nil {
		r.tb.Fatalf("GET /v1/drops: %v", err)
	}
	out := map[string]uint64{}
	for _, d := range list {
		out[d.Reason] += d.Packets
	}
	return out
}

// lastGC is when the agent's last conntrack collection ended ("" before
// the first), how many entries it read and how many it deleted.
func (r *flowRig) lastGC() (at string, entries, deleted int) {
	st, err := r.agent.Status()
	if err != nil {
		r.tb.Fatalf("%v", err)
	}
	be, _ := st["backend_status"].(map[string]any)
	gc, _ := be["gc"].(map[string]any)
	at, _ = gc["at"].(string)
	if strings.HasPrefix(at, "0001-") {
		at = "" // the zero time: no collection yet
	}
	n, _ := gc["entries"].(float64)
	d, _ := gc["deleted"].(float64)
	return at, int(n), int(d)
}

// count counts pc_ct's entries now, reading the pinned map in batches.
func (r *flowRig) count() int {
	n, err := countEntries(r.ct)
	if err != nil {
		r.tb.Fatalf("count pc_ct: %v", err)
	}
	return n
}

// countEntries counts a hash map's entries with batch lookups: a walk of
// the keys one system call each takes seconds at a million.
func countEntries(m *ebpf.Map) (int, error) {
	const batch = 4096
	mk := func(size uint32) any {
		t := reflect.SliceOf(reflect.ArrayOf(int(size), reflect.TypeOf(byte(0))))
		return reflect.MakeSlice(t, batch, batch).Interface()
	}
	keys, vals := mk(m.KeySize()), mk(m.ValueSize())
	var cursor ebpf.MapBatchCursor
	total := 0
	for {
		n, err := m.BatchLookup(&cursor, keys, vals, nil)
		total += n
		if err != nil {
			if strings.Contains(err.Error(), ebpf.ErrKeyNotExist.Error()) {
				return total, nil
			}
			return total, err
		}
	}
}

// cpu is the agent's user and system time so far.
func (r *flowRig) cpu() time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", r.pid))
	if err != nil {
		r.tb.Fatalf("%v", err)
	}
	// Fields after the command name, which may hold spaces: state is the
	// first, utime and stime the 12th and 13th.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	ut, _ := strconv.ParseUint(f[11], 10, 64)
	st, _ := strconv.ParseUint(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / userHZ
}

func (r *flowRig) memory() procMemory {
	m, err := processMemory(r.pid)
	if err != nil {
		r.tb.Fatalf("%v", err)
	}
	return m
}

// runFlows runs the million-flow scenario and the churn, each in an
// instance of its own.
func runFlows(e *env) (*FlowBench, *Churn) {
	var fb *FlowBench
	var ch *Churn
	if e.cfg.Flows > 0 {
		fb = &FlowBench{Flows: e.cfg.Flows}
		fb.Error = inScope(e, func(sc *scope) { flowScenario(sc, e, fb) })
		e.progress("flows: %s", flowLine(fb))
	}
	if e.cfg.Churn > 0 {
		ch = &Churn{Seconds: e.cfg.Churn.Seconds()}
		ch.Error = inScope(e, func(sc *scope) { churnScenario(sc, e, ch) })
		e.progress("churn: %s", churnLine(ch))
	}
	return fb, ch
}

// inScope runs f in a scope of its own and returns what failed ("" when
// nothing did), the scope's logs with it.
func inScope(e *env, f func(sc *scope)) string {
	sc := newScope()
	err := sc.run(func() error { f(sc); return nil })
	sc.Close()
	if err == nil {
		return ""
	}
	return strings.Join(append([]string{err.Error()}, sc.logs()...), "\n")
}

// flowScenario: two agents with tables of the same size, one filled with
// fb.Flows flows, one left empty; new flows and connections measured on
// both in turn; memory and garbage collection at the fill; then the full
// one overfilled.
func flowScenario(sc *scope, e *env, fb *FlowBench) {
	fb.CTEntries = ctEntriesFor(fb.Flows, e.cfg.Duration)
	start := time.Now()
	r := newFlowRig(sc, e, flowContainers, "--ct-entries", strconv.Itoa(fb.CTEntries))
	fb.StartSeconds = time.Since(start).Seconds()
	if d, ok := fullSyncTook(r.agent.Logs()); ok {
		fb.FullSyncSeconds = d.Seconds()
	}
	empty := newFlowRig(sc, e, flowContainers, "--ct-entries", strconv.Itoa(fb.CTEntries))
	var held *nstest.TCPServer
	for i, x := range []*flowRig{r, empty} {
		startEcho(sc, x.srcs[0].ns, echoPort)
		srv := nstest.ListenTCP(sc, x.srcs[0].ns, "c1", fmt.Sprintf(":%d", echoPort+1))
		if i == 0 {
			held = srv
		}
		nstest.ListenTCP(sc, x.topo.Ext, "ext", ":7")
		if err := probe(x.topo.Ext, published(echoHostPort), 10*time.Second); err != nil {
			sc.Fatalf("the published port does not work: %v", err)
		}
	}
	conns := holdConns(sc, r)
	fb.RSSEmpty = r.memory().RSS

	dropsBefore := r.drops()
	fill := time.Now()
	for k := range 10 {
		took, errs := sendFlows(r.srcs, k*fb.Flows/10, (k+1)*fb.Flows/10)
		fb.FillRates = append(fb.FillRates, float64(fb.Flows/10)/took.Seconds())
		for msg, n := range errs {
			fb.SendErrors += n
			fb.note("fill: %d× %s", n, msg)
		}
	}
	fb.FillSeconds = time.Since(fill).Seconds()
	fb.Entries = r.count()
	if n := r.drops()["conntrack-full"] - dropsBefore["conntrack-full"]; n > 0 {
		fb.note("%d conntrack-full drops during the fill: the table was sized too small", n)
	}
	if info, err := r.ct.Info(); err == nil {
		fb.CTMemlock, _ = memlock(info)
	}
	fb.MapsMemlock = r.memory().BPFMemlock
	alternate(e, fb, empty, r)
	fb.EntriesAfter = r.count()
	measureGC(r, fb)
	overfill(r, fb, held, conns)
	fb.RSSPeak = r.peakRSS()
}

func (fb *FlowBench) note(format string, args ...any) {
	fb.Notes = append(fb.Notes, fmt.Sprintf(format, args...))
}

func memlock(info *ebpf.MapInfo) (int64, bool) {
	n, ok := info.Memlock()
	return int64(n), ok
}

// holdConns opens the connections held from before the fill to after the
// overfill: one in through the published port 8081, one out through
// masquerade.
func holdConns(sc *scope, r *flowRig) []*nstest.TCPConn {
	var conns []*nstest.TCPConn
	for _, c := range []struct {
		ns  *nstest.NS
		dst string
	}{{r.topo.Ext, published(echoHostPort + 1).String()}, {r.srcs[1].ns, nstest.ExtAddr.String() + ":7"}} {
		conn, res := nstest.ConnectTCP(c.ns, c.dst, nstest.DialOptions{Timeout: 3 * time.Second})
		if !res.OK() {
			sc.Fatalf("held connection: %v", res)
		}
		sc.Cleanup(func() { conn.Close() })
		conns = append(conns, conn)
	}
	return conns
}

// altRounds is how many times the empty and the full instance take turns.
const altRounds = 5

// altBatch is how many new flows each turn of alternate sends: enough for
// a tenth of a second or more.
func altBatch(flows int) int { return max(flows/100, 5000) }

// alternate measures new flows per second (a batch of the generator's)
// and connections per second through the published port on the empty
// instance and the full one in turn, altRounds times: the machine's speed
// drifts, so the two are compared round by round.
func alternate(e *env, fb *FlowBench, empty, full *flowRig) {
	batch := altBatch(fb.Flows)
	d := e.cfg.Duration
	for _, x := range []*flowRig{empty, full} {
		connRate(x.topo.Ext, published(echoHostPort), e.cfg.Clients, min(time.Second, d/4))
	}
	for k := range altRounds {
		for i, x := range []*flowRig{empty, full} {
			from := k * batch
			if i == 1 {
				from += fb.Flows
			}
			took, _ := sendFlows(x.srcs, from, from+batch)
			cr := connRate(x.topo.Ext, published(echoHostPort), e.cfg.Clients, d)
			rate := float64(cr.Count) / cr.Elapsed.Seconds()
			if i == 0 {
				fb.NewFlowsEmpty = append(fb.NewFlowsEmpty, float64(batch)/took.Seconds())
				fb.ConnRatesEmpty = append(fb.ConnRatesEmpty, rate)
			} else {
				fb.NewFlowsFull = append(fb.NewFlowsFull, float64(batch)/took.Seconds())
				fb.ConnRatesFull = append(fb.ConnRatesFull, rate)
				fb.ConnErrors += cr.errorCount()
				if n := cr.errorCount(); n > 0 {
					fb.note("at the fill: %d failed connections: %s", n, topErrors(cr.Errors))
				}
			}
		}
	}
	fb.AltFlows = altRounds * batch
}

// peakRSS is the agent's VmHWM: the most memory it ever held.
func (r *flowRig) peakRSS() int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", r.pid))
	if err != nil {
		r.tb.Fatalf("%v", err)
	}
	_, v, _ := strings.Cut(string(b), "VmHWM:")
	v, _, _ = strings.Cut(v, "\n")
	kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
	return kb << 10
}

// ctEntriesFor is the --ct-entries that flows fill to flowFill (two entries
// a flow), plus room for what alternate adds on top: its batches of new
// flows, and the connection-rate runs' (at 8,000 conn/s, every
// connection's pair kept for the 10 s close timeout). In whole KiB of
// entries. The runs' flows are not flushed (DELETE /v1/flows) after each
// run: the flush builds every flow of the table in the agent's memory,
// which would be what its RSS shows.
func ctEntriesFor(flows int, d time.Duration) int {
	conns := 8000 * (float64(altRounds)*d.Seconds() + 1)
	n := int(float64(2*flows)/flowFill+2*conns) + 2*altRounds*altBatch(flows)
	return (n + 1023) / 1024 * 1024
}

// measureGC reads the agent's CPU every 100 ms until a garbage collection
// pass has run: the agent does nothing else meanwhile, so a burst of CPU
// followed by a new time of the last collection in /v1/status is a pass.
// The collector runs every 30 s while little expires. The status reads'
// own CPU is left out of the window's. Status is not asked before the
// collector's first pass (30 s after the agent's start): until then it
// walks pc_ct key by key, which at a million flows takes longer than a
// client waits.
func measureGC(r *flowRig, fb *FlowBench) {
	const tick = 100 * time.Millisecond
	var asked time.Duration // the agent's CPU answering status
	status := func() (string, int) {
		c := r.cpu()
		at, n, _ := r.lastGC()
		asked += r.cpu() - c
		return at, n
	}
	var at0 string
	firstPass := r.started.Add(30 * time.Second)
	if time.Now().After(firstPass.Add(5 * time.Second)) {
		at0, _ = status()
	}
	asked = 0
	start, cpu0 := time.Now(), r.cpu()
	prev := cpu0
	var burst time.Duration
	for deadline := start.Add(45 * time.Second); time.Now().Before(deadline); {
		time.Sleep(tick)
		now := r.cpu()
		busy := now - prev
		prev = now
		switch {
		case busy >= tick/5:
			burst += busy
			continue
		case burst < 50*time.Millisecond || time.Now().Before(firstPass):
			burst = 0
			continue
		}
		at, n := status()
		prev = r.cpu()
		if at == at0 {
			burst = 0
			continue
		}
		fb.GCWindow, fb.GCCPU = time.Since(start).Seconds(), (prev - cpu0 - asked).Seconds()
		fb.GCPassCPU, fb.GCEntries = burst.Seconds(), n
		fb.RSSHeld = r.memory().RSS
		return
	}
	fb.note("no garbage collection pass seen within 45 s")
}

// overfill refreshes the flows (the SYN and UDP timeouts are 60 s), sends
// more than the table has room for, and checks that the held connections
// still work while a new one is refused and counted.
func overfill(r *flowRig, fb *FlowBench, held *nstest.TCPServer, conns []*nstest.TCPConn) {
	sent := fb.Flows + fb.AltFlows // the fill, then alternate's batches
	sendFlows(r.srcs, 0, sent)
	room := (fb.CTEntries - r.count()) / 2
	fb.Overfill = min(room+fb.Flows/20, maxGenFlows(len(r.srcs))-sent)
	before := r.drops()["conntrack-full"]
	sendFlows(r.srcs, sent, sent+fb.Overfill)
	after := r.drops()["conntrack-full"]
	fb.FullDrops = after - before
	fb.Established = "ok"
	for _, c := range conns {
		if err := c.Echo(); err != nil {
			fb.Established = err.Error()
		}
	}
	peers := len(held.Peers())
	res := nstest.DialTCP(r.topo.Ext, published(echoHostPort+1).String(), nstest.DialOptions{Timeout: 2 * time.Second})
	switch {
	case res.OK():
		fb.NewRefused = "connected: " + res.String()
	case len(held.Peers()) != peers:
		fb.NewRefused = "reached the server: " + res.Err.Error()
	default:
		fb.NewRefused = "refused: " + res.Err.Error()
	}
	fb.RefusedCounted = r.drops()["conntrack-full"] - after
}

func flowLine(fb *FlowBench) string {
	if fb.Error != "" {
		return "FAILED: " + firstLine(fb.Error)
	}
	return fmt.Sprintf("%d flows in %.1fs, pc_ct %d of %d, %.0f MB kernel, RSS %.0f MB held, GC pass %.2fs CPU, new flows/s full×empty %.2f, conn/s full×empty %.2f, %d full drops, established %s, new %s",
		fb.Flows, fb.FillSeconds, fb.Entries, fb.CTEntries, mb(fb.CTMemlock), mb(fb.RSSHeld), fb.GCPassCPU,
		medianRatio(fb.NewFlowsFull, fb.NewFlowsEmpty), medianRatio(fb.ConnRatesFull, fb.ConnRatesEmpty), fb.FullDrops, fb.Established, fb.NewRefused)
}

// medianRatio is the median of the round-by-round ratios a[i]/b[i].
func medianRatio(a, b []float64) float64 {
	var rs []float64
	for i := range min(len(a), len(b)) {
		if b[i] > 0 {
			rs = append(rs, a[i]/b[i])
		}
	}
	if len(rs) == 0 {
		return 0
	}
	sort.Float64s(rs)
	return median(rs)
}

func mb(b int64) float64 { return float64(b) / (1 << 20) }

func first(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	return xs[0]
}

func last(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	return xs[len(xs)-1]
}
