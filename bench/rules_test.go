package bench

import (
	"net/netip"
	"strings"
	"testing"
)

// TestDockerIptables checks the rendered rule set against behaviour.md
// section 1 (docker0 read as pc0, 8080:80 as the measured mapping), and that
// fillers come before it.
func TestDockerIptables(t *testing.T) {
	ms := append(fillerMappings(2, defaultC2), measuredMappings(defaultC1)[0])
	got := dockerIptables(ms)
	for _, want := range []string{
		"-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER",
		"-A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER",
		"-A POSTROUTING -s 172.17.0.0/16 ! -o pc0 -j MASQUERADE",
		"-A POSTROUTING -s 172.17.0.2/32 -d 172.17.0.2/32 -p tcp -m tcp --dport 80 -j MASQUERADE",
		"-A DOCKER -i pc0 -j RETURN",
		"-A DOCKER ! -i pc0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80",
		":FORWARD DROP [0:0]",
		"-A FORWARD -j DOCKER-USER",
		"-A FORWARD -j DOCKER-ISOLATION-STAGE-1",
		"-A FORWARD -o pc0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
		"-A FORWARD -o pc0 -j DOCKER",
		"-A FORWARD -i pc0 ! -o pc0 -j ACCEPT",
		"-A FORWARD -i pc0 -o pc0 -j ACCEPT",
		"-A DOCKER -d 172.17.0.2/32 ! -i pc0 -o pc0 -p tcp -m tcp --dport 80 -j ACCEPT",
		"-A DOCKER-ISOLATION-STAGE-1 -i pc0 ! -o pc0 -j DOCKER-ISOLATION-STAGE-2",
		"-A DOCKER-ISOLATION-STAGE-2 -o pc0 -j DROP",
	} {
		if !strings.Contains(got, want+"\n") {
			t.Errorf("rule set lacks %q", want)
		}
	}
	filler := strings.Index(got, "--dport 10001 -j DNAT --to-destination 172.17.0.3:10001")
	measured := strings.Index(got, "--dport 8080 -j DNAT")
	if filler < 0 || measured < filler {
		t.Errorf("the measured DNAT rule is not behind the fillers:\n%s", got)
	}
	if n := strings.Count(got, "COMMIT"); n != 2 {
		t.Errorf("%d COMMITs, want 2 (nat, filter)", n)
	}
}

func TestFillers(t *testing.T) {
	a, b := fillerMapping(0, defaultC2), fillerMapping(fillerPerProt, defaultC2)
	if a.Proto != "tcp" || b.Proto != "udp" || a.HostPort != b.HostPort {
		t.Errorf("fillers 0 and %d: %+v %+v, want tcp and udp on the same port", fillerPerProt, a, b)
	}
	type key struct {
		proto string
		port  int
	}
	seen := map[key]bool{}
	for _, m := range fillerMappings(maxFillers, defaultC2) {
		k := key{m.Proto, m.HostPort}
		if seen[k] || m.HostPort < fillerBase || m.HostPort >= addBase {
			t.Fatalf("filler %s: host port %s %d taken or out of range", m.ID, m.Proto, m.HostPort)
		}
		seen[k] = true
	}
	for _, m := range measuredMappings(defaultC1) {
		if seen[key{m.Proto, m.HostPort}] {
			t.Errorf("measured mapping %s collides with a filler", m.ID)
		}
	}
}

// TestPortmapRules checks the portmap shape: shared chains, a multiport
// jump per 15 ports of a protocol, three rules per port.
func TestPortmapRules(t *testing.T) {
	ip := netip.MustParseAddr("172.17.0.2")
	ms := fillerMappings(17, ip)
	ms = append(ms, fillerMapping(fillerPerProt, ip)) // one udp
	id := cniContainerID("/run/netns/pct-c2-abc")
	got := portmapRules("pcbench-abc", id, ip, ms)
	dn := cniChainName("pcbench-abc", id, "DN-")
	if len(dn) != 28 || !strings.HasPrefix(dn, "CNI-DN-") {
		t.Fatalf("chain name %q: want CNI-DN- and 28 characters", dn)
	}
	if n := strings.Count(got, "-m multiport -p tcp --destination-ports"); n != 2 {
		t.Errorf("%d tcp multiport jumps, want 2 (15 + 2 ports)", n)
	}
	if n := strings.Count(got, "-m multiport -p udp --destination-ports 10000 -j "+dn); n != 1 {
		t.Errorf("%d udp multiport jumps, want 1", n)
	}
	for _, want := range []string{
		"-A " + dn + " -p tcp --dport 10003 -s 172.17.0.0/16 -j CNI-HOSTPORT-SETMARK",
		"-A " + dn + " -p tcp --dport 10003 -s 127.0.0.1 -j CNI-HOSTPORT-SETMARK",
		"-A " + dn + " -p tcp --dport 10003 -j DNAT --to-destination 172.17.0.2:10003",
		`--comment "dnat name: \"pcbench-abc\" id: \"` + id + `\""`,
		"-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("portmap rules lack %q\n%s", want, got)
		}
	}
	if n := strings.Count(got, "-A "+dn+" "); n != 3*len(ms) {
		t.Errorf("%d rules in the pod chain, want %d", n, 3*len(ms))
	}
}

func TestDockerNftables(t *testing.T) {
	ms := append(fillerMappings(1, defaultC2), measuredMappings(defaultC1)[0])
	full := dockerNftRuleset(ms, []netip.Addr{defaultC1, defaultC2})
	for _, want := range []string{
		"table ip docker-bridges {",
		`elements = { "pc0" : jump filter-forward-in__pc0 }`,
		"oifname vmap @filter-forward-in-jumps",
		"iifname vmap @nat-postrouting-out-jumps",
		`iifname != "pc0" tcp dport 8080 counter dnat to 172.17.0.2:80 comment "DNAT"`,
		"ip daddr 172.17.0.2 tcp dport 80 counter accept",
		`counter drop comment "UNPUBLISHED PORT DROP"`,
		`ip daddr 172.17.0.3 iifname != "pc0" counter drop comment "DROP DIRECT ACCESS"`,
		`oifname != "pc0" ip saddr 172.17.0.0/16 counter masquerade comment "MASQUERADE"`,
	} {
		if !strings.Contains(full, want) {
			t.Errorf("ruleset lacks %q", want)
		}
	}
	if strings.Contains(full, " set ") {
		t.Error("Docker 29's shape has no sets")
	}
	if strings.Index(full, "dport 10000 counter accept") > strings.Index(full, "UNPUBLISHED PORT DROP") {
		t.Error("a per-port ACCEPT rule is behind the drop")
	}
	up := dockerNftUpdate(append(ms, addedMapping(0, defaultC2)))
	for _, want := range []string{
		"flush chain ip docker-bridges nat-prerouting-and-output\n",
		"flush chain ip docker-bridges filter-forward-in__pc0\n",
		"tcp dport 61000 counter dnat to 172.17.0.3:61000",
		"tcp dport 8080 counter dnat to 172.17.0.2:80", // rewritten whole
	} {
		if !strings.Contains(up, want) {
			t.Errorf("update lacks %q\n%s", want, up)
		}
	}
	if strings.Contains(up, "raw-PREROUTING") {
		t.Error("the update rewrites a chain it did not touch")
	}
}
