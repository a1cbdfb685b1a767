package bench

import (
	"fmt"
	"net/netip"
	"sync"
	"time"
)

// Churn is short-lived flows at full speed for a while, on the eBPF
// backend with its default table: connections in through a published port
// and out through masquerade, each closed at once. The garbage collector
// must keep up (cilium #33074: NAT exhaustion when GC lags), so the fill
// should level off and no new flow be dropped.
type Churn struct {
	Seconds   float64  `json:"seconds"`
	Error     string   `json:"error,omitempty"`
	Notes     []string `json:"notes,omitempty"`
	CTEntries int      `json:"ct_entries"` // the table's size
	// Connections completed and failed, in and out.
	In        int `json:"in"`
	Out       int `json:"out"`
	InErrors  int `json:"in_errors"`
	OutErrors int `json:"out_errors"`
	// Fill is pc_ct's entries, counted every second.
	Fill []FillSample `json:"fill"`
	// Drops are the drop counters' increase over the run, by reason.
	Drops map[string]uint64 `json:"drops"`
}

// FillSample is the table's entries at T seconds into the run.
type FillSample struct {
	T       float64 `json:"t"`
	Entries int     `json:"entries"`
}

// maxFill is the most entries of the samples in [from, to) of the run's
// length (fractions).
func (c *Churn) maxFill(from, to float64) int {
	m := 0
	for _, s := range c.Fill {
		if s.T >= from*c.Seconds && s.T < to*c.Seconds {
			m = max(m, s.Entries)
		}
	}
	return m
}

// minBoundedRun is the shortest run whose fill says whether it levelled
// off: the collector's interval starts at 30 s and takes a minute or so to
// settle (it halves after each pass that deletes a quarter of the table).
const minBoundedRun = 2 * time.Minute

// bounded says whether the fill levelled off, "too short to tell" below
// minBoundedRun: the last third's peak is within 10% of the middle third's.
func (c *Churn) bounded() string {
	if c.Seconds < minBoundedRun.Seconds() {
		return fmt.Sprintf("too short to tell (under %v)", minBoundedRun)
	}
	mid, end := c.maxFill(1.0/3, 2.0/3), c.maxFill(2.0/3, 1.01)
	if mid > 0 && float64(end) <= 1.1*float64(mid) {
		return "yes"
	}
	return "no"
}

func churnScenario(sc *scope, e *env, ch *Churn) {
	r := newFlowRig(sc, e, 2)
	ch.CTEntries = int(r.ct.MaxEntries())
	startEcho(sc, r.srcs[0].ns, echoPort)
	startEcho(sc, r.topo.Ext, 7)
	if err := probe(r.topo.Ext, published(echoHostPort), 10*time.Second); err != nil {
		sc.Fatalf("the published port does not work: %v", err)
	}
	// Out: one loop per address of the external host, from the container.
	var outs []connPair
	for i := range e.cfg.Clients {
		outs = append(outs, connPair{r.srcs[1].addr, netip.AddrPortFrom(clientAddr(i), 7)})
	}
	// The collector's first pass comes 30 s after the agent's start, then
	// its interval adapts: the run starts after it, to see the steady
	// state rather than the start.
	for deadline := time.Now().Add(40 * time.Second); time.Now().Before(deadline); time.Sleep(time.Second) {
		if at, _, _ := r.lastGC(); at != "" {
			break
		}
	}
	before := r.drops()
	d := e.cfg.Churn
	start := time.Now()
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Second):
			}
			ch.Fill = append(ch.Fill, FillSample{T: time.Since(start).Seconds(), Entries: r.count()})
		}
	}()
	var in, out loadResult
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); in = connRate(r.topo.Ext, published(echoHostPort), e.cfg.Clients, d) }()
	go func() { defer wg.Done(); out = connLoops(r.srcs[1].ns, outs, d) }()
	wg.Wait()
	close(stop)
	<-sampled
	ch.In, ch.Out, ch.InErrors, ch.OutErrors = in.Count, out.Count, in.errorCount(), out.errorCount()
	for _, x := range []struct {
		dir string
		r   loadResult
	}{{"in", in}, {"out", out}} {
		if n := x.r.errorCount(); n > 0 {
			ch.Notes = append(ch.Notes, fmt.Sprintf("%s: %d failed connections: %s", x.dir, n, topErrors(x.r.Errors)))
		}
	}
	if at, n, del := r.lastGC(); at != "" {
		ch.Notes = append(ch.Notes, fmt.Sprintf("last garbage collection at %s: %d entries read, %d deleted", at, n, del))
	}
	ch.Drops = map[string]uint64{}
	for k, v := range r.drops() {
		if v > before[k] {
			ch.Drops[k] = v - before[k]
		}
	}
}

func churnLine(c *Churn) string {
	if c.Error != "" {
		return "FAILED: " + firstLine(c.Error)
	}
	return fmt.Sprintf("%.0fs: %d in + %d out (%.0f conn/s), %d+%d failed, pc_ct peak %d of %d (middle third %d, last third %d, bounded: %s), drops %v",
		c.Seconds, c.In, c.Out, float64(c.In+c.Out)/c.Seconds, c.InErrors, c.OutErrors, c.maxFill(0, 1.01), c.CTEntries,
		c.maxFill(1.0/3, 2.0/3), c.maxFill(2.0/3, 1.01), c.bounded(), c.Drops)
}
