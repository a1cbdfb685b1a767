package ebpf

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// localPortRangePath is net.ipv4.ip_local_port_range of the reading
// thread's network namespace.
const localPortRangePath = "/proc/sys/net/ipv4/ip_local_port_range"

// LocalPorts returns the node's ephemeral port range
// (net.ipv4.ip_local_port_range) as the calling thread's namespace has it.
func LocalPorts() (lo, hi uint16, err error) {
	b, err := os.ReadFile(localPortRangePath)
	if err != nil {
		return 0, 0, fmt.Errorf("read the node's ephemeral ports: %w", err)
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0, 0, fmt.Errorf("%s: %q: want two ports", localPortRangePath, strings.TrimSpace(string(b)))
	}
	a, err1 := strconv.ParseUint(f[0], 10, 16)
	z, err2 := strconv.ParseUint(f[1], 10, 16)
	if err1 != nil || err2 != nil || a > z {
		return 0, 0, fmt.Errorf("%s: %q: want two ports, low first", localPortRangePath, strings.TrimSpace(string(b)))
	}
	return uint16(a), uint16(z), nil
}

// NATPortsOutside returns the longest run of unprivileged ports
// (1024-65535) outside the local range lo-hi: where SNAT picks ports when
// it has to. With Linux's default local range, 32768-60999, that is
// 1024-32767.
func NATPortsOutside(lo, hi uint16) (first, last uint16, err error) {
	const lowest, highest = 1024, 65535
	type run struct{ a, z int }
	var best run
	for _, r := range []run{{lowest, int(lo) - 1}, {int(hi) + 1, highest}} {
		r.a = max(r.a, lowest)
		if r.z-r.a > best.z-best.a {
			best = r
		}
	}
	if best.z-best.a < 1023 {
		return 0, 0, fmt.Errorf("the node's ephemeral ports %d-%d (net.ipv4.ip_local_port_range) leave fewer than 1024 other unprivileged ports for SNAT: "+
			"narrow them or give --nat-ports", lo, hi)
	}
	return uint16(best.a), uint16(best.z), nil
}

// ParsePortRange parses "MIN-MAX" (1 <= MIN <= MAX <= 65535).
func ParsePortRange(s string) (lo, hi uint16, err error) {
	a, z, ok := strings.Cut(s, "-")
	l, err1 := strconv.ParseUint(a, 10, 16)
	h, err2 := strconv.ParseUint(z, 10, 16)
	if !ok || err1 != nil || err2 != nil || l == 0 || l > h {
		return 0, 0, fmt.Errorf("%q: want MIN-MAX with 1 <= MIN <= MAX <= 65535, e.g. 1024-32767", s)
	}
	return uint16(l), uint16(h), nil
}
