package bench

import (
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// iptablesMode is Docker 27's rule set for the default bridge (behaviour.md
// section 1), with iptables-legacy or iptables-nft: one DNAT rule, one
// ACCEPT rule and one hairpin MASQUERADE rule per published port, appended
// in order, so the measured port sits behind every filler.
type iptablesMode struct {
	variant string // legacy or nft
}

func (m *iptablesMode) name() string { return "iptables-" + m.variant }

func (m *iptablesMode) describe() string {
	return fmt.Sprintf("Docker 27's iptables rule set for the default bridge (behaviour.md section 1) with iptables-%s: "+
		"per published port a DNAT rule in nat DOCKER, an ACCEPT rule in filter DOCKER and a hairpin MASQUERADE rule in nat POSTROUTING, "+
		"fillers first; bulk programming with iptables-%s-restore, a mapping added the way Docker's ProgramRule does it "+
		"(iptables -C, then iptables -A, for each of the three rules)", m.variant, m.variant)
}

func (m *iptablesMode) bin(tool string) string {
	if tool == "" {
		return "iptables-" + m.variant
	}
	return "iptables-" + m.variant + "-" + tool
}

func (m *iptablesMode) check(*env) error {
	for _, t := range []string{"", "restore", "save"} {
		if _, err := exec.LookPath(m.bin(t)); err != nil {
			return fmt.Errorf("%s not found: install Debian's iptables package (make deps-bench)", m.bin(t))
		}
	}
	return nil
}

func (m *iptablesMode) setup(in *instance) (time.Duration, error) {
	in.plumb()
	ms := append(fillerMappings(in.n, in.c2IP), measuredMappings(in.c1IP)...)
	rules := dockerIptables(ms)
	start := time.Now()
	_, err := command{ns: in.topo.Node, args: []string{m.bin("restore"), "-w"}, stdin: rules, timeout: bulkTimeout(in.n)}.run()
	return time.Since(start), err
}

// bulkTimeout bounds a bulk load of n mappings.
func bulkTimeout(n int) time.Duration { return time.Minute + time.Duration(n)*3*time.Millisecond }

func (m *iptablesMode) program(in *instance, ms []Mapping) error {
	for _, mp := range ms {
		for _, r := range dockerMappingRules(mp) {
			check := append([]string{m.bin(""), "-w", "-t", r.table, "-C", r.chain}, r.spec...)
			if _, err := (command{ns: in.topo.Node, args: check}).run(); err == nil {
				continue // present already: Docker's ProgramRule leaves it
			}
			add := append([]string{m.bin(""), "-w", "-t", r.table, "-A", r.chain}, r.spec...)
			if _, err := (command{ns: in.topo.Node, args: add}).run(); err != nil {
				return err
			}
		}
	}
	return nil
}

func (m *iptablesMode) footprint(in *instance) map[string]float64 {
	if in.n > footprintMaxN {
		return nil
	}
	out, err := command{ns: in.topo.Node, args: []string{m.bin("save")}, timeout: 2 * time.Minute}.run()
	if err != nil {
		in.note("footprint: %v", err)
		return nil
	}
	return map[string]float64{mRulesetKB: float64(len(out)) / 1024, mRules: float64(countRules(out))}
}

// countRules counts the -A lines of iptables-save output.
func countRules(save string) int {
	n := 0
	for _, l := range strings.Split(save, "\n") {
		if strings.HasPrefix(l, "-A ") {
			n++
		}
	}
	return n
}

// iptRule is one rule as Docker programs it: table, chain, match and target.
type iptRule struct {
	table, chain string
	spec         []string
}

// dockerMappingRules are the three rules Docker 27 adds for -p
// HOSTPORT:PORT/PROTO on the default bridge (userland proxy on, the
// default).
func dockerMappingRules(m Mapping) []iptRule {
	ip := m.IP.String()
	port := strconv.Itoa(m.Port)
	return []iptRule{
		{"nat", "DOCKER", []string{"!", "-i", bridgeName, "-p", m.Proto, "-m", m.Proto, "--dport", strconv.Itoa(m.HostPort),
			"-j", "DNAT", "--to-destination", ip + ":" + port}},
		{"filter", "DOCKER", []string{"-d", ip + "/32", "!", "-i", bridgeName, "-o", bridgeName, "-p", m.Proto, "-m", m.Proto, "--dport", port,
			"-j", "ACCEPT"}},
		{"nat", "POSTROUTING", []string{"-s", ip + "/32", "-d", ip + "/32", "-p", m.Proto, "-m", m.Proto, "--dport", port,
			"-j", "MASQUERADE"}},
	}
}

// dockerIptables renders Docker 27's rule set for the default bridge with
// the mappings, in order, as iptables-restore input: behaviour.md section
// 1, plus the RETURN rules Docker also installs at the end of its chains.
func dockerIptables(ms []Mapping) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	by := map[string][]iptRule{}
	for _, m := range ms {
		for _, r := range dockerMappingRules(m) {
			k := r.table + " " + r.chain
			by[k] = append(by[k], r)
		}
	}
	rules := func(table, chain string) {
		for _, r := range by[table+" "+chain] {
			w("-A %s %s", chain, strings.Join(quoteArgs(r.spec), " "))
		}
	}
	w("*nat")
	w(":PREROUTING ACCEPT [0:0]")
	w(":INPUT ACCEPT [0:0]")
	w(":OUTPUT ACCEPT [0:0]")
	w(":POSTROUTING ACCEPT [0:0]")
	w(":DOCKER - [0:0]")
	w("-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER")
	w("-A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER")
	w("-A POSTROUTING -s %s ! -o %s -j MASQUERADE", subnet, bridgeName)
	rules("nat", "POSTROUTING")
	w("-A DOCKER -i %s -j RETURN", bridgeName)
	rules("nat", "DOCKER")
	w("COMMIT")
	w("*filter")
	w(":INPUT ACCEPT [0:0]")
	w(":FORWARD DROP [0:0]")
	w(":OUTPUT ACCEPT [0:0]")
	w(":DOCKER - [0:0]")
	w(":DOCKER-ISOLATION-STAGE-1 - [0:0]")
	w(":DOCKER-ISOLATION-STAGE-2 - [0:0]")
	w(":DOCKER-USER - [0:0]")
	w("-A FORWARD -j DOCKER-USER")
	w("-A FORWARD -j DOCKER-ISOLATION-STAGE-1")
	w("-A FORWARD -o %s -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT", bridgeName)
	w("-A FORWARD -o %s -j DOCKER", bridgeName)
	w("-A FORWARD -i %s ! -o %s -j ACCEPT", bridgeName, bridgeName)
	w("-A FORWARD -i %s -o %s -j ACCEPT", bridgeName, bridgeName)
	rules("filter", "DOCKER")
	w("-A DOCKER-ISOLATION-STAGE-1 -i %s ! -o %s -j DOCKER-ISOLATION-STAGE-2", bridgeName, bridgeName)
	w("-A DOCKER-ISOLATION-STAGE-1 -j RETURN")
	w("-A DOCKER-ISOLATION-STAGE-2 -o %s -j DROP", bridgeName)
	w("-A DOCKER-ISOLATION-STAGE-2 -j RETURN")
	w("-A DOCKER-USER -j RETURN")
	w("COMMIT")
	return b.String()
}

// quoteArgs quotes arguments with spaces for iptables-restore input.
func quoteArgs(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		if strings.ContainsAny(a, " \"") {
			a = strconv.Quote(a)
		}
		out[i] = a
	}
	return out
}
