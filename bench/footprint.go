package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// findAgent returns the pid of the portcullisd serving socket: the process
// whose command line has --socket <socket> (each instance has its own).
func findAgent(socket string) (int, error) {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	want := []byte("\x00--socket\x00" + socket + "\x00")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || !bytes.Contains(append(b, 0), want) {
			continue
		}
		// ip netns exec replaces itself with the agent; skip anything else
		// that merely mentions the socket.
		if !bytes.Contains(b[:bytes.IndexByte(append(b, 0), 0)], []byte("portcullisd")) {
			continue
		}
		return strconv.Atoi(strings.Split(p, "/")[2])
	}
	return 0, fmt.Errorf("no portcullisd process with --socket %s", socket)
}

// procMemory is what a process holds.
type procMemory struct {
	RSS        int64 // bytes
	Peak       int64 // bytes: VmHWM, the most RSS the process ever had
	BPFMemlock int64 // bytes charged for the BPF maps it has open
	Maps       int
}

// processMemory reads VmRSS and VmHWM from /proc/PID/status and adds up the memlock
// of every distinct BPF map the process holds a descriptor of
// (/proc/PID/fdinfo), which works whatever the backend pins.
func processMemory(pid int) (procMemory, error) {
	var m procMemory
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return m, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			m.RSS = statusKB(v)
		}
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			m.Peak = statusKB(v)
		}
	}
	fds, _ := filepath.Glob(fmt.Sprintf("/proc/%d/fdinfo/*", pid))
	seen := map[string]bool{}
	for _, fd := range fds {
		id, memlock := bpfMapInfo(fd)
		if id == "" || seen[id] {
			continue
		}
		seen[id] = true
		m.Maps++
		m.BPFMemlock += memlock
	}
	return m, nil
}

// statusKB reads a "  1234 kB" value of /proc/PID/status, in bytes.
func statusKB(v string) int64 {
	kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
	return kb * 1024
}

// bpfMapInfo returns map_id and memlock of a BPF map descriptor's fdinfo,
// or "" for anything else.
func bpfMapInfo(path string) (string, int64) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0
	}
	defer f.Close()
	var id string
	var memlock int64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch k {
		case "map_id":
			id = v
		case "memlock":
			memlock, _ = strconv.ParseInt(v, 10, 64)
		}
	}
	return id, memlock
}
