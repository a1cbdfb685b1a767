package bench

import (
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"time"
)

// dockerNftMode is the shape of Docker 29's nftables backend for the default
// bridge (firewall-backend=nftables, userland proxy on): table ip
// docker-bridges, base chains that jump through verdict maps keyed on the
// interface name to per-bridge chains, and still one rule per published
// port in regular chains (a DNAT rule in nat-prerouting-and-output, an
// ACCEPT rule in filter-forward-in__pc0 ahead of its final drop), no sets.
type dockerNftMode struct{}

// dockerNftTable is Docker's table.
const dockerNftTable = "docker-bridges"

func (*dockerNftMode) name() string { return "docker-nftables" }

func (*dockerNftMode) describe() string {
	return "the shape of Docker 29's nftables backend: table ip docker-bridges, filter-FORWARD and nat-POSTROUTING " +
		"dispatching through ifname verdict maps to per-bridge chains, per published port one DNAT rule in " +
		"nat-prerouting-and-output and one ACCEPT rule in filter-forward-in__pc0 (no sets), a raw DROP DIRECT ACCESS " +
		"rule per container; bulk programming with one nft -f, a mapping added the way Docker's nftables package applies " +
		"a change: one nft -f that flushes the chains it touched and writes them again whole"
}

func (*dockerNftMode) check(*env) error {
	if _, err := exec.LookPath("nft"); err != nil {
		return fmt.Errorf("nft not found: install Debian's nftables package")
	}
	return nil
}

// dockerNftState is what Docker's nftables package keeps in memory: every
// rule of every chain, so that an update can rewrite the chains it touches.
type dockerNftState struct {
	ms         []Mapping
	containers []netip.Addr
}

func (m *dockerNftMode) setup(in *instance) (time.Duration, error) {
	in.plumb()
	st := &dockerNftState{
		ms:         append(fillerMappings(in.n, in.c2IP), measuredMappings(in.c1IP)...),
		containers: []netip.Addr{in.c1IP, in.c2IP},
	}
	in.modeState = st
	text := dockerNftRuleset(st.ms, st.containers)
	start := time.Now()
	_, err := command{ns: in.topo.Node, args: []string{"nft", "-f", "-"}, stdin: text, timeout: bulkTimeout(in.n)}.run()
	return time.Since(start), err
}

// program publishes each mapping the way Docker 29's nftables package
// applies a change: one nft -f transaction that flushes every chain the
// change touched and writes it again whole (nat-prerouting-and-output and
// filter-forward-in__pc0), so each add costs O(N) rules.
func (m *dockerNftMode) program(in *instance, ms []Mapping) error {
	st := in.modeState.(*dockerNftState)
	for _, mp := range ms {
		st.ms = append(st.ms, mp)
		tx := dockerNftUpdate(st.ms)
		if _, err := (command{ns: in.topo.Node, args: []string{"nft", "-f", "-"}, stdin: tx, timeout: bulkTimeout(len(st.ms))}).run(); err != nil {
			return err
		}
	}
	return nil
}

func (m *dockerNftMode) footprint(in *instance) map[string]float64 {
	if in.n > footprintMaxN {
		return nil
	}
	return nftFootprint(in)
}

// nftFootprint measures `nft list ruleset` in the node.
func nftFootprint(in *instance) map[string]float64 {
	out, err := command{ns: in.topo.Node, args: []string{"nft", "list", "ruleset"}, timeout: 2 * time.Minute}.run()
	if err != nil {
		in.note("footprint: %v", err)
		return nil
	}
	return map[string]float64{mRulesetKB: float64(len(out)) / 1024, mRules: float64(strings.Count(out, "\n"))}
}

// dockerNftMapping returns the DNAT rule and the ACCEPT rule Docker 29
// writes for one mapping, as nft rule statements.
func dockerNftMapping(m Mapping) (dnat, accept string) {
	dnat = fmt.Sprintf(`iifname != "%s" %s dport %d counter dnat to %s:%d comment "DNAT"`, bridgeName, m.Proto, m.HostPort, m.IP, m.Port)
	accept = fmt.Sprintf(`ip daddr %s %s dport %d counter accept`, m.IP, m.Proto, m.Port)
	return dnat, accept
}

// dockerNftMaps are the verdict maps of the table, keyed on interface
// name, each jumping to a per-bridge chain.
var dockerNftMaps = []string{"filter-forward-in", "filter-forward-out", "nat-postrouting-in", "nat-postrouting-out"}

// dockerNftUpdate is Docker's incremental update after publishing a port:
// declare the table, its maps and the touched chains (so that flushing them
// cannot fail), flush those chains, and write them again with every rule.
func dockerNftUpdate(ms []Mapping) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	touched := []string{"nat-prerouting-and-output", "filter-forward-in__" + bridgeName}
	w("table ip %s {", dockerNftTable)
	for _, mp := range dockerNftMaps {
		w("\tmap %s-jumps {", mp)
		w("\t\ttype ifname : verdict")
		w("\t}")
	}
	for _, c := range touched {
		w("\tchain %s {", c)
		w("\t} ;")
	}
	w("}")
	for _, c := range touched {
		w("flush chain ip %s %s", dockerNftTable, c)
	}
	w("table ip %s {", dockerNftTable)
	writeDNATChain(w, ms)
	writeForwardInChain(w, ms)
	w("}")
	return b.String()
}

func writeDNATChain(w func(string, ...any), ms []Mapping) {
	w("\tchain nat-prerouting-and-output {")
	for _, m := range ms {
		dnat, _ := dockerNftMapping(m)
		w("\t\t%s", dnat)
	}
	w("\t}")
}

func writeForwardInChain(w func(string, ...any), ms []Mapping) {
	w("\tchain filter-forward-in__%s {", bridgeName)
	w("\t\tct state established,related counter accept")
	w("\t\tiifname \"%s\" counter accept comment \"ICC\"", bridgeName)
	for _, m := range ms {
		_, accept := dockerNftMapping(m)
		w("\t\t%s", accept)
	}
	w("\t\tcounter drop comment \"UNPUBLISHED PORT DROP\"")
	w("\t}")
}

// dockerNftRuleset renders the table for the default bridge with the
// mappings, in order, and containers (raw DROP DIRECT ACCESS rules). The
// regular chains come first so that the verdict maps can refer to them.
func dockerNftRuleset(ms []Mapping, containers []netip.Addr) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	br := bridgeName
	w("table ip %s {", dockerNftTable)
	writeForwardInChain(w, ms)
	w("\tchain filter-forward-out__%s {", br)
	w("\t\tct state established,related counter accept")
	w("\t\tcounter accept comment \"OUTGOING\"")
	w("\t}")
	w("\tchain nat-postrouting-in__%s {", br)
	w("\t}")
	w("\tchain nat-postrouting-out__%s {", br)
	w("\t\toifname != \"%s\" ip saddr %s counter masquerade comment \"MASQUERADE\"", br, subnet)
	w("\t}")
	writeDNATChain(w, ms)
	for _, mp := range dockerNftMaps {
		w("\tmap %s-jumps {", mp)
		w("\t\ttype ifname : verdict")
		w("\t\telements = { \"%s\" : jump %s__%s }", br, mp, br)
		w("\t}")
	}
	w("\tchain filter-FORWARD {")
	w("\t\ttype filter hook forward priority filter; policy accept;")
	w("\t\toifname vmap @filter-forward-in-jumps")
	w("\t\tiifname vmap @filter-forward-out-jumps")
	w("\t}")
	w("\tchain nat-OUTPUT {")
	// Docker writes "priority dstnat"; nft 1.0.6 knows that name only
	// for prerouting, and -100 is its value.
	w("\t\ttype nat hook output priority -100; policy accept;")
	w("\t\tip daddr != 127.0.0.0/8 fib daddr type local counter jump nat-prerouting-and-output")
	w("\t}")
	w("\tchain nat-POSTROUTING {")
	w("\t\ttype nat hook postrouting priority srcnat; policy accept;")
	w("\t\tiifname vmap @nat-postrouting-out-jumps")
	w("\t\toifname vmap @nat-postrouting-in-jumps")
	w("\t}")
	w("\tchain nat-PREROUTING {")
	w("\t\ttype nat hook prerouting priority dstnat; policy accept;")
	w("\t\tfib daddr type local counter jump nat-prerouting-and-output")
	w("\t}")
	w("\tchain raw-PREROUTING {")
	w("\t\ttype filter hook prerouting priority raw; policy accept;")
	for _, c := range containers {
		w("\t\tip daddr %s iifname != \"%s\" counter drop comment \"DROP DIRECT ACCESS\"", c, br)
	}
	w("\t}")
	w("}")
	return b.String()
}
