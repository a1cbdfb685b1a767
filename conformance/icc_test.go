package conformance

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/dataplane/model"
	"github.com/portcullis/portcullis/internal/nstest"
)

// B14: icc=true: containers on one network reach each other on any port,
// over IPv4 and IPv6, and see each other's real addresses.
func testICCOn(t *testing.T) {
	e := newEnv(t)
	checkICCOn(t, setupICCOn(e))
}

type iccOn struct {
	e      *env
	c1, c2 *ctr
}

func setupICCOn(e *env) iccOn {
	e.network(pc0(true))
	s := iccOn{e: e, c1: e.container("c1", "pc0", 2), c2: e.container("c2", "pc0", 3)}
	for _, c := range []*ctr{s.c1, s.c2} {
		servers(e.t, c.NS, c.ID, 1234)
		nstest.ListenTCP(e.t, c.NS, c.ID, "[::]:5555")
	}
	return s
}

func checkICCOn(t *testing.T, s iccOn) {
	for _, p := range [][2]*ctr{{s.c1, s.c2}, {s.c2, s.c1}} {
		a, b := p[0], p[1]
		for _, port := range []int{1234, 5555} {
			r := reachTCP(t, a.NS, b.at(port), b.ID)
			seenAs(t, fmt.Sprintf("tcp %s -> %s", a.ID, b.ID), r.Seen, a.IP)
		}
		u := reachUDP(t, a.NS, b.at(1234), b.ID)
		seenAs(t, fmt.Sprintf("udp %s -> %s", a.ID, b.ID), u.Seen, a.IP)
		reachPing(t, a.NS, b.IP.String())
		r := reachTCP(t, a.NS, b.at6(1234), b.ID)
		seenAs(t, fmt.Sprintf("tcp6 %s -> %s", a.ID, b.ID), r.Seen, a.IP6)
		reachPing(t, a.NS, b.IP6.String())
	}
}

// B15: icc=false: containers on one network cannot talk, for any protocol
// and address family (IPv6 link-local included), except linked pairs:
// parent to the child's exposed ports, with replies, and nothing else.
func testICCOffAndLinks(t *testing.T) {
	e := newEnv(t)
	checkICCOff(t, setupICCOff(e))
}

// iccOff has db (exposes 5432/tcp) and web on an icc=false network, with
// TCP and UDP servers on 5432 in db and on 80 in web, TCP on 5433 in db,
// and TCP and UDP servers outside for the controls.
type iccOff struct {
	e             *env
	db, web       *ctr
	dbTCP, db5433 *nstest.TCPServer
	webTCP        *nstest.TCPServer
	dbUDP, webUDP *nstest.UDPServer
}

func setupICCOff(e *env) iccOff {
	n := pc0(true)
	n.ICC = boolp(false)
	e.network(n)
	s := iccOff{e: e}
	s.db = e.container("db", "pc0", 2, func(ep *model.Endpoint) {
		ep.Exposed = []model.PortProto{{Port: 5432, Proto: "tcp"}}
	})
	s.web = e.container("web", "pc0", 3)
	s.dbTCP, s.dbUDP = servers(e.t, s.db.NS, "db", 5432)
	s.db5433 = nstest.ListenTCP(e.t, s.db.NS, "db", "[::]:5433")
	s.webTCP, s.webUDP = servers(e.t, s.web.NS, "web", 80)
	servers(e.t, e.ext(), "ext", 7000)
	return s
}

// reachOutside is the positive control of the ICC checks: c still reaches
// the outside over TCP, UDP and ICMP, and its gateway over IPv6.
func reachOutside(t *testing.T, c *ctr) {
	t.Helper()
	reachTCP(t, c.NS, "192.0.2.2:7000", "ext")
	reachUDP(t, c.NS, "192.0.2.2:7000", "ext")
	reachPing(t, c.NS, "192.0.2.2")
	reachPing(t, c.NS, "2001:db8:17::1")
}

func checkICCOff(t *testing.T, s iccOff) {
	db, web := s.db, s.web
	t.Run("isolated", func(t *testing.T) {
		for _, p := range []struct {
			a, b *ctr
			port int
			tcp  *nstest.TCPServer
			udp  *nstest.UDPServer
		}{{web, db, 5432, s.dbTCP, s.dbUDP}, {db, web, 80, s.webTCP, s.webUDP}} {
			reachOutside(t, p.a)
			blockedTCP(t, p.a.NS, p.b.at(p.port), p.tcp)
			blockedUDP(t, p.a.NS, p.b.at(p.port), p.udp)
			blockedPing(t, p.a.NS, p.b.IP.String(), p.b.NS)
			blockedTCP(t, p.a.NS, p.b.at6(p.port), p.tcp)
			blockedUDP(t, p.a.NS, p.b.at6(p.port), p.udp)
			blockedPing(t, p.a.NS, p.b.IP6.String(), p.b.NS)
			ll, err := p.b.NS.LinkLocal("eth0")
			if err != nil {
				t.Error(err)
				continue
			}
			dst := ll.WithZone("eth0")
			blockedTCP(t, p.a.NS, fmt.Sprintf("[%s]:%d", dst, p.port), p.tcp)
			blockedUDP(t, p.a.NS, fmt.Sprintf("[%s]:%d", dst, p.port), p.udp)
			blockedPing(t, p.a.NS, dst.String(), p.b.NS)
		}
	})

	t.Run("link", func(t *testing.T) {
		s.e.link(t, "web", "db", "db")
		reachOutside(t, web)
		reachTCP(t, web.NS, db.at(5432), "db")
		blockedTCP(t, web.NS, db.at(5433), s.db5433)
		blockedUDP(t, web.NS, db.at(5432), s.dbUDP)
		// The child may only answer: no new connection to the parent,
		// not even from its exposed port (Docker's rule matches on the
		// source port alone; ours must be stateful). The server on 5432
		// stops first so the client may bind that port.
		reachOutside(t, db)
		blockedTCP(t, db.NS, web.at(80), s.webTCP)
		s.dbTCP.Close()
		blockedTCP(t, db.NS, web.at(80), s.webTCP, fromPort(5432))
	})

	t.Run("unlink", func(t *testing.T) {
		// db's exposed port gets a listener again (the link case closed
		// it): without one, db's own stack would refuse, whatever the
		// policy. The link still in force lets web reach it: the control.
		s.dbTCP.Close()
		srv := nstest.ListenTCP(t, db.NS, "db", "[::]:5432")
		reachTCP(t, web.NS, db.at(5432), "db")
		if err := s.e.api.DeleteLink(s.e.ctx, "web", "db"); err != nil {
			t.Fatalf("DELETE link web/db: %v", err)
		}
		reachOutside(t, web)
		blockedTCP(t, web.NS, db.at(5432), srv)
	})
}

// B16: ICC does not depend on br_netfilter: with bridge-nf-call-iptables
// and bridge-nf-call-ip6tables off in the node, B14, B15 and B17 hold.
func testNoBrNetfilter(t *testing.T) {
	skipped := 0
	countSkip := func(t *testing.T) {
		if t.Skipped() {
			skipped++
		}
	}
	// Each part sets its case up, turns br_netfilter off, then checks.
	parts := []struct {
		name  string
		setup func(e *env) func(t *testing.T)
	}{
		{"icc_on", func(e *env) func(*testing.T) { s := setupICCOn(e); return func(t *testing.T) { checkICCOn(t, s) } }},
		{"icc_off_links", func(e *env) func(*testing.T) { s := setupICCOff(e); return func(t *testing.T) { checkICCOff(t, s) } }},
		{"anti_spoofing", func(e *env) func(*testing.T) { s := setupSpoof(e); return func(t *testing.T) { checkSpoof(t, s) } }},
	}
	for _, p := range parts {
		t.Run(p.name, func(t *testing.T) {
			defer countSkip(t)
			e := newEnv(t)
			check := p.setup(e)
			disableBrNetfilter(t, e)
			check(t)
			checkBrNetfilterOff(t, e)
		})
	}
	if skipped == len(parts) {
		t.Skip("every part skipped")
	}
}

var brNetfilterKeys = []string{"net.bridge.bridge-nf-call-iptables", "net.bridge.bridge-nf-call-ip6tables"}

// disableBrNetfilter turns bridge netfilter calls off in the node
// namespace only, after the agent set everything up.
func disableBrNetfilter(t *testing.T, e *env) {
	t.Helper()
	for _, k := range brNetfilterKeys {
		if _, err := e.node().Sysctl(k); err != nil {
			t.Skipf("no br_netfilter in this kernel (%v): nothing to turn off", err)
		}
		if err := e.node().SetSysctl(k, "0"); err != nil {
			t.Fatal(err)
		}
	}
}

// checkBrNetfilterOff fails when the agent turned the calls back on: then
// the checks above did not run without br_netfilter.
func checkBrNetfilterOff(t *testing.T, e *env) {
	t.Helper()
	for _, k := range brNetfilterKeys {
		if v, err := e.node().Sysctl(k); err != nil || v != "0" {
			t.Errorf("%s is %q in the node after the checks (%v): the agent turned it back on", k, v, err)
		}
	}
}

// B17: packets from an endpoint whose source IP or MAC is not its own are
// dropped, towards another container and towards the outside.
func testAntiSpoofing(t *testing.T) {
	e := newEnv(t)
	checkSpoof(t, setupSpoof(e))
}

// spoof has a target c1, an attacker c2 and a bystander c3 whose address
// c2 steals, on an icc=true network, plus a UDP server outside.
type spoof struct {
	e          *env
	c1, c2, c3 *ctr
	target     *nstest.UDPServer
	outside    *nstest.UDPServer
}

func setupSpoof(e *env) spoof {
	e.network(pc0(false))
	s := spoof{e: e, c1: e.container("c1", "pc0", 2), c2: e.container("c2", "pc0", 3), c3: e.container("c3", "pc0", 4)}
	s.target = nstest.ListenUDP(e.t, s.c1.NS, "c1", "[::]:9999")
	s.outside = nstest.ListenUDP(e.t, e.ext(), "ext", "[::]:9999")
	return s
}

func checkSpoof(t *testing.T, s spoof) {
	c2 := s.c2
	// send sends three datagrams (a lost one is not a drop) and reports
	// whether the server got any.
	send := func(srv *nstest.UDPServer, dst, tag string, opts nstest.DialOptions) bool {
		for range 3 {
			if err := nstest.SendUDP(c2.NS, dst, tag, opts); err != nil {
				t.Errorf("send %s from c2: %v", tag, err)
			}
		}
		_, ok := srv.Wait(tag, probeTimeout)
		return ok
	}
	targets := []struct {
		srv *nstest.UDPServer
		dst string
	}{{s.target, s.c1.at(9999)}, {s.outside, "192.0.2.2:9999"}}

	control := func(when string) {
		for _, tg := range targets {
			if !send(tg.srv, tg.dst, unique("control"), nstest.DialOptions{}) {
				t.Errorf("control %s: c2's own traffic to %s did not arrive", when, tg.dst)
			}
		}
	}
	control("before spoofing")

	for _, ip := range []string{"172.17.0.99", s.c3.IP.String()} {
		c2.NS.MustIP(t, "addr", "add", ip+"/32", "dev", "eth0")
		for _, tg := range targets {
			if send(tg.srv, tg.dst, unique("spoof-ip"), from(ip+":0")) {
				t.Errorf("c2 sending as %s reached %s", ip, tg.dst)
			}
		}
		c2.NS.MustIP(t, "addr", "del", ip+"/32", "dev", "eth0")
	}
	control("after IP spoofing")

	c2.NS.MustIP(t, "link", "set", "eth0", "address", "02:42:ac:11:00:63")
	for _, tg := range targets {
		if send(tg.srv, tg.dst, unique("spoof-mac"), nstest.DialOptions{}) {
			t.Errorf("c2 sending from MAC 02:42:ac:11:00:63 reached %s", tg.dst)
		}
	}
}

// B18: networks are isolated; a container reaches another network only
// through published ports on node addresses.
func testNetworkIsolation(t *testing.T) {
	e := newEnv(t)
	e.network(pc0(false))
	e.network(pc1(false))
	c1 := e.container("c1", "pc0", 2)
	c3 := e.container("c3", "pc1", 2)
	t1, u1 := servers(t, c1.NS, "c1", 80)
	t3, u3 := servers(t, c3.NS, "c3", 80)
	e.publish(tcpPort("c1", "c1", 8080, 80))
	e.publish(tcpPort("c3", "c3", 8081, 80))
	e.publish(udpPort("c1-udp", "c1", 8080, 80))
	e.publish(udpPort("c3-udp", "c3", 8081, 80))

	for _, p := range []struct {
		a, b     *ctr
		hostPort int
		tcp      *nstest.TCPServer
		udp      *nstest.UDPServer
	}{{c1, c3, 8081, t3, u3}, {c3, c1, 8080, t1, u1}} {
		// Control: a reaches b through b's published ports, and the
		// outside by ICMP.
		reachTCP(t, p.a.NS, hostAt(nstest.NodeAddr, p.hostPort), p.b.ID)
		reachUDP(t, p.a.NS, hostAt(nstest.NodeAddr, p.hostPort), p.b.ID)
		reachPing(t, p.a.NS, "192.0.2.2")
		blockedTCP(t, p.a.NS, p.b.at(80), p.tcp)
		blockedUDP(t, p.a.NS, p.b.at(80), p.udp)
		blockedPing(t, p.a.NS, p.b.IP.String(), p.b.NS)
	}
}

// B19: a link's answer carries the environment variables and the hosts
// line Docker gives the parent (behaviour.md, section 1), exactly.
func testLinkEnv(t *testing.T) {
	e := newEnv(t)
	e.network(pc0(false))
	e.container("ep-db", "pc0", 5, func(ep *model.Endpoint) {
		ep.Name, ep.Hostname = "pg", "a1b2c3d4e5f6"
		ep.Exposed = []model.PortProto{{Port: 5432, Proto: "tcp"}}
		ep.Env = []string{"POSTGRES_DB=app", "HOME=/root", "PATH=/usr/bin", "OPTS=a=b"}
	})
	e.container("ep-web", "pc0", 6, func(ep *model.Endpoint) { ep.Name = "web" })

	for _, alias := range []string{"db", "pg-main"} {
		p := strings.ToUpper(strings.ReplaceAll(alias, "-", "_"))
		want := []string{
			p + "_NAME=/web/" + alias,
			p + "_PORT=tcp://172.17.0.5:5432",
			p + "_PORT_5432_TCP=tcp://172.17.0.5:5432",
			p + "_PORT_5432_TCP_ADDR=172.17.0.5",
			p + "_PORT_5432_TCP_PORT=5432",
			p + "_PORT_5432_TCP_PROTO=tcp",
			p + "_ENV_POSTGRES_DB=app",
			p + "_ENV_OPTS=a=b",
		}
		slices.Sort(want)
		wantHosts := "172.17.0.5 " + alias + " a1b2c3d4e5f6 pg"

		put := e.link(t, "ep-web", alias, "ep-db")
		got, err := e.api.GetLink(e.ctx, "ep-web", alias)
		if err != nil {
			t.Fatalf("GET link ep-web/%s: %v", alias, err)
		}
		for _, l := range []struct {
			how string
			l   model.Link
		}{{"PUT", put}, {"GET", got}} {
			env := slices.Sorted(slices.Values(l.l.Env))
			if !slices.Equal(env, want) {
				t.Errorf("%s link %s: env\n  got  %q\n  want %q", l.how, alias, env, want)
			}
			if l.l.Hosts != wantHosts {
				t.Errorf("%s link %s: hosts line %q, want %q", l.how, alias, l.l.Hosts, wantHosts)
			}
		}
	}
}
