package bench

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func syntheticResults() *Results {
	cfg := Config{Modes: []string{"none", "iptables-nft", "nftables", "ebpf"}, Rounds: 2, Duration: time.Second,
		Ns: []int{0, 1000}, Adds: 3, PerCall: 100, Clients: 8}
	r := &Results{Started: time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC), Seconds: 75, Config: cfg,
		Machine: Machine{CPU: "Test CPU", CPUs: 2, MemoryGB: 24, Kernel: "6.18"}}
	r.Modes = []ModeInfo{
		{Name: "none", Description: "no netfilter"},
		{Name: "iptables-nft", Description: "Docker's rules"},
		{Name: "nftables", Description: "our nftables backend"},
		{Name: "ebpf", Description: "our eBPF backend", Unavailable: "portcullisd --backend=ebpf does not start: not in this build"},
	}
	rate := map[string][]float64{"none": {10000, 8000}, "iptables-nft": {8000, 4000}, "nftables": {9000, 8800}}
	for round := 1; round <= 2; round++ {
		for i, n := range cfg.Ns {
			for mode, v := range rate {
				m := map[string]float64{mConnRate: v[i] * (1 + 0.1*float64(round-1)), mConnP99: 2000}
				if mode != "none" {
					m[mAddMs] = 5 + float64(i)*10
					m[mAddP99Ms] = 7 + float64(i)*10
					m[mBulkS] = 0.01 + float64(i)
					m[mRulesetKB] = 3 + float64(i)*250
					m[mRules] = 33 + float64(i)*3000
				}
				if mode == "nftables" {
					m[mRSS] = 25
				}
				if n == 0 && round == 1 && mode != "none" {
					m[mPerCallS] = 1.5
				}
				r.Samples = append(r.Samples, Sample{Mode: mode, Round: round, N: n, Metrics: m})
			}
		}
	}
	r.Samples = append(r.Samples, Sample{Mode: "ebpf", Round: 1, N: 0, Error: "unavailable: not in this build"},
		Sample{Mode: "iptables-nft", Round: 3, N: 0, Error: "the published port does not work"})
	r.Summary = summarizeSamples(r.Samples, cfg.Modes, cfg.Ns)
	return r
}

func TestRenderMarkdown(t *testing.T) {
	md := RenderMarkdown(syntheticResults())
	requireMarkdown(t, md,
		"# pcbench results",
		"2026-01-02 03:04 UTC, 2 rounds, 1s per measurement, 8 connection-rate clients, N = 0, 1000",
		"| mode | conn/s | ×none | ×ipt-nft | conn p50 µs | conn p99 µs |",
		"| none | 10500 [10000–11000] | 1.00× | 1.25× |",
		"| iptables-nft | 8400 [8000–8800] | 0.80× | 1.00× |",
		"| nftables | 9450 [9000–9900] | 0.90× | 1.12× |",
		"| ebpf | unavailable: portcullisd --backend=ebpf does not start: not in this build |",
		"## Connection rate against N (conn/s, ×ipt-nft)",
		"| nftables | 9450 (1.12×) | 9240 (2.20×) |",
		"## Add one more mapping at N (ms, p50 / p99 of up to 3 adds per round within 0s)",
		"| iptables-nft | 5.00 / 7.00 | 15.00 / 17.00 |",
		"## Program 100 mappings from empty, one call per mapping (s, first round)",
		"| nftables | 1.50 | 15.00 |",
		"portcullisd resident memory (MB):",
		"| nftables | 25.0 | 25.0 |",
		"| iptables-nft | 3 / 33 | 253 / 3033 |",
		"- round 3, iptables-nft, N=0: the published port does not work",
		"- **ebpf**: our eBPF backend",
	)
	// Every table row has as many cells as its header.
	var cols int
	for _, l := range strings.Split(md, "\n") {
		if !strings.HasPrefix(l, "|") {
			cols = 0
			continue
		}
		n := strings.Count(l, " | ") + 1
		if cols == 0 {
			cols = n
		} else if n != cols && !strings.Contains(l, "unavailable") {
			t.Errorf("row has %d cells, header %d: %s", n, cols, l)
		}
	}
}

func TestFmtValue(t *testing.T) {
	cases := []struct {
		v      float64
		digits int
		want   string
	}{
		{1234.5, 0, "1234"}, {1234.56, 2, "1234.56"}, {0.0123, 0, "0.012"}, {0.5, 2, "0.500"}, {0, 1, "0.0"},
	}
	for _, c := range cases {
		if got := fmtValue(c.v, c.digits); got != c.want {
			t.Errorf("fmtValue(%v, %d) = %q, want %q", c.v, c.digits, got, c.want)
		}
	}
}

func TestWriteAll(t *testing.T) {
	dir := t.TempDir()
	files, err := WriteAll(syntheticResults(), dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"results.json", "results.md", "conn_rate.png", "add_latency.png", "program_bulk.png"}
	if len(files) != len(want) {
		t.Fatalf("wrote %v, want %v", files, want)
	}
	for _, f := range want {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil || fi.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
	b, _ := os.ReadFile(filepath.Join(dir, "results.json"))
	var back Results
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatalf("results.json does not parse back: %v", err)
	}
	if len(back.Samples) != len(syntheticResults().Samples) || back.Config.Duration != time.Second {
		t.Errorf("results.json round trip lost data: %d samples, duration %v", len(back.Samples), back.Config.Duration)
	}
	png, _ := os.ReadFile(filepath.Join(dir, "conn_rate.png"))
	if !strings.HasPrefix(string(png), "\x89PNG") {
		t.Error("conn_rate.png is not a PNG")
	}
}

// requireMarkdown fails for each of want that md lacks.
func requireMarkdown(t *testing.T, md string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(md, w) {
			t.Errorf("markdown lacks %q\n%s", w, md)
		}
	}
}
