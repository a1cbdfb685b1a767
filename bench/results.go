package bench

import (
	"bufio"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Metric keys. Every sample carries the ones its instance measured.
const (
	mConnRate    = "conn_per_s"           // new TCP connections per second through the published port
	mConnP50     = "conn_p50_us"          // connect + 1 byte each way + close, median
	mConnP99     = "conn_p99_us"          // same, 99th percentile
	mConnErrors  = "conn_errors"          // failed connections during the measured run
	mCPUPerConn  = "cpu_us_per_conn"      // busy CPU time of the whole machine per connection (/proc/stat)
	mProcPerConn = "proc_cpu_us_per_conn" // CPU time of pcbench (clients and server) per connection (getrusage)
	mConntrack   = "conntrack_entries"    // conntrack entries in the node after the connection run
	mRRP50       = "rr_p50_us"            // request/response on one connection, median round trip
	mRRP99       = "rr_p99_us"
	mRRRate      = "rr_per_s"
	mEgress      = "tcp_egress_gbps"      // container -> external host, masqueraded (median of egressRuns)
	mEgress1CPU  = "tcp_egress_1cpu_gbps" // the same with client and server on CPU 0
	mIngress     = "tcp_ingress_gbps"     // external host -> published port -> container
	mC2C         = "tcp_c2c_gbps"         // container -> container on the bridge
	mUDP         = "udp_kpps"             // small UDP datagrams received per second through the published port
	mAddMs       = "add_ms"               // add one more mapping, median of the adds at this N
	mAddP99Ms    = "add_p99_ms"           // 99th percentile of those adds (nearest rank)
	mBulkS       = "bulk_s"               // program N mappings from empty, bulk path
	mPerCallS    = "percall_s"            // program PerCall mappings from empty, one call per mapping
	mRSS         = "agent_rss_mb"         // resident memory of portcullisd
	mBPFMem      = "bpf_map_kb"           // memlock of the BPF maps portcullisd holds
	mRulesetKB   = "ruleset_kb"           // size of the ruleset as the tool prints it
	mRules       = "rules"                // rules (iptables) or ruleset lines (nft) in the node
)

// metricDef describes a metric for tables and plots.
type metricDef struct {
	Key    string
	Label  string
	Higher bool // higher is better
	Ratio  bool // worth a ratio to the references
	Digits int  // decimals in tables
}

var metricDefs = []metricDef{
	{mConnRate, "conn/s", true, true, 0},
	{mConnP50, "conn p50 µs", false, true, 0},
	{mConnP99, "conn p99 µs", false, true, 0},
	{mConnErrors, "conn errors", false, false, 0},
	{mCPUPerConn, "CPU µs/conn", false, true, 1},
	{mProcPerConn, "pcbench CPU µs/conn", false, true, 1},
	{mConntrack, "conntrack entries", false, false, 0},
	{mRRP50, "RR p50 µs", false, true, 1},
	{mRRP99, "RR p99 µs", false, true, 1},
	{mRRRate, "RR/s", true, true, 0},
	{mEgress, "egress Gbit/s", true, true, 2},
	{mEgress1CPU, "egress 1 CPU Gbit/s", true, true, 2},
	{mIngress, "ingress Gbit/s", true, true, 2},
	{mC2C, "c2c Gbit/s", true, true, 2},
	{mUDP, "UDP kpps", true, true, 1},
	{mAddMs, "add one ms", false, true, 2},
	{mAddP99Ms, "add one p99 ms", false, false, 2},
	{mBulkS, "program N s", false, true, 3},
	{mPerCallS, "program per call s", false, true, 2},
	{mRSS, "agent RSS MB", false, false, 1},
	{mBPFMem, "BPF maps KB", false, false, 0},
	{mRulesetKB, "ruleset KB", false, false, 0},
	{mRules, "rules", false, false, 0},
}

func metricByKey(k string) (metricDef, bool) {
	for _, m := range metricDefs {
		if m.Key == k {
			return m, true
		}
	}
	return metricDef{}, false
}

// Sample is one mode at one N in one round: one instance.
type Sample struct {
	Mode    string             `json:"mode"`
	Round   int                `json:"round"`
	N       int                `json:"n"`
	Error   string             `json:"error,omitempty"`
	Metrics map[string]float64 `json:"metrics,omitempty"`
	Notes   []string           `json:"notes,omitempty"`
	Seconds float64            `json:"seconds"`         // wall time of the instance, set-up to tear-down
	Netns   string             `json:"netns,omitempty"` // the instance's namespaces, removed at its end
}

// ModeInfo says what a mode is and whether it ran.
type ModeInfo struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	Unavailable string `json:"unavailable,omitempty"`
}

// Results is what a run produced; pcbench writes it as results.json.
type Results struct {
	Started time.Time  `json:"started"`
	Seconds float64    `json:"seconds"`
	Machine Machine    `json:"machine"`
	Config  Config     `json:"config"`
	Modes   []ModeInfo `json:"modes"`
	Samples []Sample   `json:"samples"`
	Summary []Summary  `json:"summary"`
	// SideBySide is the stream comparison with every mode alive at once.
	SideBySide *SideBySide `json:"side_by_side,omitempty"`
	// Docker is the Docker engine comparison, one per number of ports.
	Docker []*DockerSide `json:"docker,omitempty"`
	// Memory is the agent's memory at each N, each way (memory.go).
	Memory *Memory `json:"memory,omitempty"`
	// Flows is the flow table scenario, Churn the short-lived flows run
	// (flows.go, churn.go).
	Flows *FlowBench `json:"flows,omitempty"`
	Churn *Churn     `json:"churn,omitempty"`
}

// find returns the summary of a metric of a mode at N.
func (r *Results) find(mode string, n int, metric string) (Summary, bool) {
	for _, s := range r.Summary {
		if s.Mode == mode && s.N == n && s.Metric == metric {
			return s, true
		}
	}
	return Summary{}, false
}

// Machine is where the numbers came from.
type Machine struct {
	Kernel   string            `json:"kernel"`
	CPU      string            `json:"cpu"`
	CPUs     int               `json:"cpus"`
	MemoryGB float64           `json:"memory_gb"`
	Go       string            `json:"go"`
	Tools    map[string]string `json:"tools"`
}

func machineInfo() Machine {
	m := Machine{CPUs: runtime.NumCPU(), Go: runtime.Version(), Tools: map[string]string{}}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		m.Kernel = unix.ByteSliceToString(u.Release[:])
	}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	var si unix.Sysinfo_t
	if unix.Sysinfo(&si) == nil {
		m.MemoryGB = float64(si.Totalram) * float64(si.Unit) / (1 << 30)
	}
	for name, args := range map[string][]string{
		"iptables-legacy":             {"iptables-legacy", "--version"},
		"iptables-nft":                {"iptables-nft", "--version"},
		"nft":                         {"nft", "--version"},
		"iperf3":                      {"iperf3", "--version"},
		"containernetworking-plugins": {"dpkg-query", "-W", "-f=${Version}", "containernetworking-plugins"},
	} {
		if out, err := exec.Command(args[0], args[1:]...).Output(); err == nil {
			m.Tools[name] = firstLine(string(out))
		}
	}
	return m
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(l)
}
