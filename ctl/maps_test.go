package ctl

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/portcullis/portcullis/internal/nstest"
)

func TestMapsFromPins(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a bpffs")
	}
	dir := t.TempDir()
	if err := unix.Mount("bpf", dir, "bpf", 0, ""); err != nil {
		t.Skipf("cannot mount bpffs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	os.MkdirAll(filepath.Join(dir, "maps"), 0o700)
	hm, err := ebpf.NewMap(&ebpf.MapSpec{Name: "pc_test", Type: ebpf.Hash, KeySize: 4, ValueSize: 4, MaxEntries: 16})
	if err != nil {
		t.Fatal(err)
	}
	defer hm.Close()
	hm.Put(uint32(0x01020304), uint32(0xaabbccdd))
	pm, err := ebpf.NewMap(&ebpf.MapSpec{Name: "pc_cnt", Type: ebpf.PerCPUHash, KeySize: 4, ValueSize: 8, MaxEntries: 16})
	if err != nil {
		t.Fatal(err)
	}
	defer pm.Close()
	n, _ := ebpf.PossibleCPU()
	per := make([]uint64, n)
	for i := range per {
		per[i] = 2
	}
	pm.Put(uint32(7), per)
	if err := hm.Pin(filepath.Join(dir, "maps", "pc_test")); err != nil {
		t.Fatal(err)
	}
	if err := pm.Pin(filepath.Join(dir, "maps", "pc_cnt")); err != nil {
		t.Fatal(err)
	}
	// No agent: the socket does not exist. maps reads bpffs only.
	out, err := pcctl(t, filepath.Join(dir, "none.sock"), "maps", "-bpffs", dir, "-dump", "pc_test")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "pc_test") || !strings.Contains(out, "04030201") || !strings.Contains(out, "ddccbbaa") {
		t.Errorf("maps output:\n%s", out)
	}
	// maps' own -bpffs defaults to the global -bpffs (or PORTCULLIS_BPFFS).
	if got, err := pcctl(t, "", "-bpffs", dir, "maps", "-dump", "pc_test"); err != nil || got != out {
		t.Errorf("pcctl -bpffs DIR maps: %v\n%s", err, got)
	}
	if got, _, err := run(map[string]string{"PORTCULLIS_BPFFS": dir}, "maps", "-dump", "pc_test"); err != nil || got != out {
		t.Errorf("maps with PORTCULLIS_BPFFS: %v\n%s", err, got)
	}
	out, _ = pcctl(t, "", "maps", "-bpffs", dir, "-dump", "pc_cnt")
	want := fmt.Sprintf("=> %02x00000000000000 (sum over CPUs)", 2*n) // little-endian uint64
	if !strings.Contains(out, want) {
		t.Errorf("per-CPU sum missing (%s):\n%s", want, out)
	}
}

// The eBPF agent pins a ring buffer (pc_events) among its maps: maps lists
// it without walking it, and -dump of it says to use trace.
func TestMapsOfEBPFAgent(t *testing.T) {
	topo := nstest.NewTopology(t, nstest.Options{})
	ag := topo.StartAgent(nstest.AgentOptions{Backend: "ebpf"})
	env := map[string]string{"PORTCULLIS_SOCKET": ag.Socket, "PORTCULLIS_BPFFS": ag.BPFFS}
	out, _, err := run(env, "maps", "-o", "json")
	if err != nil {
		t.Fatalf("maps with the eBPF agent running: %v", err)
	}
	var list []struct {
		Name       string `json:"name"`
		Type       string `json:"type"`
		Entries    *int   `json:"entries"`
		MaxEntries uint32 `json:"max_entries"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("maps json: %v\n%s", err, out)
	}
	byName := map[string]int{}
	for i, m := range list {
		byName[m.Name] = i
	}
	ev, ok := byName["pc_events"]
	if !ok || list[ev].Type != "RingBuf" || list[ev].Entries != nil || list[ev].MaxEntries == 0 {
		t.Errorf("pc_events in maps: %+v (found %v)\n%s", list[min(ev, len(list)-1)], ok, out)
	}
	// The hash maps beside it are counted.
	ct, ok := byName["pc_flows4"]
	if !ok || list[ct].Entries == nil || list[ct].MaxEntries == 0 {
		t.Errorf("pc_ct in maps: found %v\n%s", ok, out)
	}
	table, _, err := run(env, "maps")
	if err != nil || !regexp.MustCompile(`\npc_events\s+RingBuf\s+-\s+\d+(\.\d)? [kMG]?B\s`).MatchString(table) {
		t.Errorf("maps table: %v\n%s", err, table)
	}
	out, _, err = run(env, "maps", "-dump", "pc_events")
	if err == nil || out != "" || !strings.Contains(err.Error(), "ring buffer") || !strings.Contains(err.Error(), "pcctl trace") {
		t.Errorf("maps -dump pc_events: %v\n%s", err, out)
	}
	// A map that holds entries dumps them: the agent's counters are an array.
	out, _, err = run(env, "maps", "-dump", "pc_stats")
	if err != nil || !strings.Contains(out, "=> ") {
		t.Errorf("maps -dump pc_stats: %v\n%s", err, out)
	}
	if _, _, err := run(env, "maps", "-dump", "pc_nope"); err == nil || !strings.Contains(err.Error(), "pc_events") {
		t.Errorf("maps -dump pc_nope: %v", err)
	}
	// Completion offers the pinned maps to -dump.
	if got, _, _ := run(env, completeCmd, "maps", "-dump", "pc_ev"); strings.TrimSpace(got) != "pc_events" {
		t.Errorf("complete maps -dump pc_ev: %q", got)
	}
}
