package ebpf

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"

	"github.com/portcullis/portcullis/dataplane"
	"github.com/portcullis/portcullis/dataplane/model"
	"github.com/portcullis/portcullis/internal/nstest"
)

// trafficTopo: a node namespace with bridge pc0 (172.17.0.1/16) and two
// containers, each in its own namespace, and an external host on the other
// end of the uplink up0 (192.0.2.1 <-> 192.0.2.2). Real packets, real
// checksum offloads, real routing.
type trafficTopo struct {
	node, ext, ca, cb *nstest.NS
	be                *Backend
	opts              Options
	want              *model.Resolved
	a, b              *model.REndpoint
}

func newTrafficTopo(t *testing.T, mode AttachMode, icc, fast bool) *trafficTopo {
	t.Helper()
	requireBPF(t)
	nstest.RequireRoot(t)
	sfx := nstest.RandomSuffix()
	tp := &trafficTopo{
		node: nstest.NewNS(t, "node", sfx),
		ext:  nstest.NewNS(t, "ext", sfx),
		ca:   nstest.NewNS(t, "ca", sfx),
		cb:   nstest.NewNS(t, "cb", sfx),
	}
	tp.node.MustIP(t, "link", "add", "pc0", "type", "bridge")
	tp.node.MustIP(t, "addr", "add", "172.17.0.1/16", "dev", "pc0")
	tp.node.MustIP(t, "link", "set", "pc0", "up")
	for _, c := range []struct {
		ns   *nstest.NS
		veth string
		ip   string
		mac  string
	}{{tp.ca, "veth-a", "172.17.0.2/16", macA.String()}, {tp.cb, "veth-b", "172.17.0.3/16", macB.String()}} {
		tp.node.MustIP(t, "link", "add", c.veth, "type", "veth", "peer", "name", "eth0", "netns", c.ns.Name)
		tp.node.MustIP(t, "link", "set", c.veth, "master", "pc0", "up")
		c.ns.MustIP(t, "link", "set", "eth0", "address", c.mac)
		c.ns.MustIP(t, "addr", "add", c.ip, "dev", "eth0")
		c.ns.MustIP(t, "link", "set", "eth0", "up")
		c.ns.MustIP(t, "route", "add", "default", "via", "172.17.0.1")
	}
	tp.node.MustIP(t, "link", "add", "up0", "type", "veth", "peer", "name", "eth0", "netns", tp.ext.Name)
	tp.node.MustIP(t, "addr", "add", "192.0.2.1/24", "dev", "up0")
	tp.node.MustIP(t, "link", "set", "up0", "up")
	tp.node.MustIP(t, "route", "add", "default", "via", "192.0.2.2")
	tp.ext.MustIP(t, "addr", "add", "192.0.2.2/24", "dev", "eth0")
	tp.ext.MustIP(t, "link", "set", "eth0", "up")
	if err := tp.node.SetSysctl("net.ipv4.ip_forward", "1"); err != nil {
		t.Fatal(err)
	}

	n := &model.RNetwork{Name: "pc0", Bridge: "pc0", Subnet: netip.MustParsePrefix("172.17.0.0/16"), Gateway: ipGW, ICC: icc, Masquerade: true}
	tp.a = &model.REndpoint{ID: "a", Net: n, IP: ipA, MAC: macA, HostIfname: "veth-a", Exposed: []model.RPortProto{{Port: 80, Proto: 6}}}
	tp.b = &model.REndpoint{ID: "b", Net: n, IP: ipB, MAC: macB, HostIfname: "veth-b", Exposed: []model.RPortProto{{Port: 5432, Proto: 6}}}
	tp.want = &model.Resolved{
		Networks:  map[string]*model.RNetwork{"pc0": n},
		Endpoints: map[string]*model.REndpoint{"a": tp.a, "b": tp.b},
		Ports:     map[string]*model.RPort{"web": {ID: "web", EP: tp.a, Proto: 6, HostLo: 8080, HostHi: 8080, Lo: 80}},
		Links:     map[string]*model.RLink{},
	}
	cfg := DefaultConfig()
	cfg.FastPath = fast
	tp.opts = Options{Attach: mode, Config: &cfg, GCInterval: -1, PinDir: testPinDir(t)}
	be, err := New(tp.opts)
	if err != nil {
		t.Fatal(err)
	}
	tp.be = be
	t.Cleanup(func() { tp.node.Do(func() error { return tp.be.Uninstall(context.Background()) }) })
	// Uplinks found from the default route, as in production.
	if err := tp.node.Do(func() error { return be.Apply(context.Background(), tp.want, nil, true) }); err != nil {
		t.Fatal(err)
	}
	return tp
}

func (tp *trafficTopo) apply(t *testing.T, d *model.Delta) {
	t.Helper()
	if err := tp.node.Do(func() error { return tp.be.Apply(context.Background(), tp.want, d, false) }); err != nil {
		t.Fatal(err)
	}
	tp.be.WaitFlushed() // the flows of what d removed are forgotten off the API path
}

// requireNoDrops fails on drop reasons a case did not expect.
func requireNoDrops(t *testing.T, be *Backend, allowed ...string) {
	t.Helper()
	drops, err := be.Drops(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range drops {
		ok := false
		for _, a := range allowed {
			ok = ok || d.Reason == a
		}
		if !ok && d.Packets > 0 {
			t.Errorf("unexpected drops: %+v", d)
		}
	}
}

var short = nstest.DialOptions{Timeout: 700 * time.Millisecond}

// ping sends one ICMP echo request from ns and waits for its reply.
func ping(ns *nstest.NS, dst string, id int) error {
	var c *icmp.PacketConn
	if err := ns.Do(func() (err error) {
		c, err = icmp.ListenPacket("ip4:icmp", "0.0.0.0")
		return err
	}); err != nil {
		return err
	}
	defer c.Close()
	msg := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: id, Seq: 1, Data: []byte("portcullis")}}
	b, err := msg.Marshal(nil)
	if err != nil {
		return err
	}
	if _, err := c.WriteTo(b, &net.IPAddr{IP: net.ParseIP(dst)}); err != nil {
		return err
	}
	c.SetReadDeadline(time.Now().Add(time.Second))
	buf := make([]byte, 1500)
	for {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			return err
		}
		m, err := icmp.ParseMessage(1, buf[:n])
		if err != nil || m.Type != ipv4.ICMPTypeEchoReply {
			continue
		}
		if e, ok := m.Body.(*icmp.Echo); ok && e.ID == id && from.String() == dst {
			return nil
		}
	}
}

// bulk streams 8 MB each way over one TCP connection from ns to dst:
// full-sized GSO packets, which take other branches than a one-byte echo
// (the fast path's MTU check above all).
func bulk(t *testing.T, ns *nstest.NS, dst string) {
	t.Helper()
	if _, err := nstest.StreamTCP(ns, dst, 8<<20, 10*time.Second); err != nil {
		t.Fatalf("bulk from %s to %s: %v", ns, dst, err)
	}
}

// Checksum offload settings of the traffic topology's veths. Left alone,
// a local sender leaves its TCP and UDP checksums to the device
// (CHECKSUM_PARTIAL), veths pass that on and receivers trust it: a wrong
// translation of the checksum field goes unseen. The two settings below
// make every translated packet's checksum be computed or checked.
type csumSetting int

const (
	csumDefault csumSetting = iota
	// csumPartial: senders leave checksums to the device, the devices that
	// carry translated packets onwards (up0, the host veths) compute them
	// in software from the field the programs left, and the receivers
	// check them: a wrong update of a partial checksum loses the packet.
	csumPartial
	// csumFull: nothing is offloaded, every packet carries its full
	// checksum through the programs, and every receiver checks it.
	csumFull
)

func (tp *trafficTopo) setChecksums(t *testing.T, s csumSetting) {
	t.Helper()
	if s == csumDefault {
		return
	}
	// Senders (and receivers) never offload reception; only with
	// csumPartial do they leave transmit checksums to the device, and
	// do the node's devices, which carry translated packets on, receive
	// with offload (partial checksums stay partial across them anyway).
	partial := s == csumPartial
	for _, ns := range []*nstest.NS{tp.ca, tp.cb, tp.ext} {
		if err := ns.SetChecksumOffload("eth0", partial, false); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"up0", "veth-a", "veth-b"} {
		if err := tp.node.SetChecksumOffload(name, false, partial); err != nil {
			t.Fatal(err)
		}
	}
}

func TestTraffic(t *testing.T) {
	for _, tc := range []struct {
		name string
		mode AttachMode
		fast bool
		csum csumSetting
	}{
		{"tcx", AttachTCX, false, csumDefault}, {"tc", AttachTC, false, csumDefault}, {"tcx-fast-path", AttachTCX, true, csumDefault},
		{"tcx-csum-partial", AttachTCX, false, csumPartial}, {"tcx-fast-path-csum-partial", AttachTCX, true, csumPartial},
		{"tcx-csum-full", AttachTCX, false, csumFull},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.mode == AttachTCX {
				requireTCX(t)
			}
			tp := newTrafficTopo(t, tc.mode, false, tc.fast)
			tp.setChecksums(t, tc.csum)
			extTCP := nstest.ListenTCP(t, tp.ext, "ext", ":7001")
			nstest.ListenUDP(t, tp.ext, "ext", ":7000")
			nstest.ListenTCP(t, tp.ca, "a", ":80")
			nstest.ListenTCP(t, tp.cb, "b", ":5432")
			nstest.ListenTCP(t, tp.cb, "b22", ":22")

			t.Run("B1-masquerade", func(t *testing.T) {
				r := nstest.DialTCP(tp.ca, "192.0.2.2:7001", short)
				if !r.OK() || r.Seen.Addr() != ipNode {
					t.Fatalf("tcp: %v (seen %v)", r, r.Seen)
				}
				u := nstest.ExchangeUDP(tp.cb, "192.0.2.2:7000", short)
				if !u.OK() || u.Seen.Addr() != ipNode {
					t.Fatalf("udp: %v", u)
				}
				if err := ping(tp.ca, "192.0.2.2", 0x4242); err != nil {
					t.Fatalf("ping: %v", err)
				}
				if p := extTCP.Peers(); len(p) == 0 || p[0].Addr() != ipNode {
					t.Fatalf("external server saw %v", p)
				}
				bulk(t, tp.ca, "192.0.2.2:7001")
			})
			t.Run("B4-same-source-port", func(t *testing.T) {
				opts := short
				opts.Local = nstest.Port(5000)
				ua := nstest.ExchangeUDP(tp.ca, "192.0.2.2:7000", opts)
				ub := nstest.ExchangeUDP(tp.cb, "192.0.2.2:7000", opts)
				if !ua.OK() || !ub.OK() || ua.Seen == ub.Seen {
					t.Fatalf("a %v, b %v", ua, ub)
				}
			})
			t.Run("B6-published", func(t *testing.T) {
				r := nstest.DialTCP(tp.ext, "192.0.2.1:8080", short)
				if !r.OK() || r.Server != "a" || r.Seen.Addr() != netip.MustParseAddr("192.0.2.2") {
					t.Fatalf("%v (server %q, seen %v)", r, r.Server, r.Seen)
				}
				bulk(t, tp.ext, "192.0.2.1:8080")
			})
			t.Run("B9-hairpin", func(t *testing.T) {
				for _, ns := range []*nstest.NS{tp.cb, tp.ca} {
					if r := nstest.DialTCP(ns, "192.0.2.1:8080", short); !r.OK() || r.Server != "a" {
						t.Fatalf("from %s: %v", ns, r)
					}
				}
				bulk(t, tp.ca, "192.0.2.1:8080")
			})
			t.Run("B21-restart", func(t *testing.T) {
				in, r := nstest.ConnectTCP(tp.ext, "192.0.2.1:8080", short)
				if !r.OK() {
					t.Fatalf("published: %v", r)
				}
				defer in.Close()
				out, r := nstest.ConnectTCP(tp.ca, "192.0.2.2:7001", short)
				if !r.OK() {
					t.Fatalf("masqueraded: %v", r)
				}
				defer out.Close()
				// The agent goes away (its descriptors closed, pins kept) and
				// a new one takes over from the pins.
				tp.be.Close()
				be2, err := New(tp.opts)
				if err != nil {
					t.Fatal(err)
				}
				tp.be = be2
				if err := tp.node.Do(func() error { return be2.Apply(context.Background(), tp.want, nil, true) }); err != nil {
					t.Fatal(err)
				}
				if err := in.Echo(); err != nil {
					t.Fatalf("published connection after restart: %v", err)
				}
				if err := out.Echo(); err != nil {
					t.Fatalf("masqueraded connection after restart: %v", err)
				}
			})
			t.Run("B12-unpublished", func(t *testing.T) {
				tp.ext.MustIP(t, "route", "add", "172.17.0.0/16", "via", "192.0.2.1")
				if r := nstest.DialTCP(tp.ext, "172.17.0.2:80", short); r.OK() {
					t.Fatalf("reached the container directly: %v", r)
				}
			})
			t.Run("B15-icc-links", func(t *testing.T) {
				if r := nstest.DialTCP(tp.ca, "172.17.0.3:5432", short); r.OK() {
					t.Fatalf("icc=false but a reached b: %v", r)
				}
				l := &model.RLink{Parent: tp.a, Child: tp.b, Alias: "db"}
				tp.want.Links["a/db"] = l
				tp.apply(t, &model.Delta{Links: []model.LinkChange{{New: l}}})
				if r := nstest.DialTCP(tp.ca, "172.17.0.3:5432", short); !r.OK() || r.Seen.Addr() != ipA {
					t.Fatalf("linked: %v", r)
				}
				if r := nstest.DialTCP(tp.ca, "172.17.0.3:22", short); r.OK() {
					t.Fatalf("linked, unexposed port: %v", r)
				}
				if r := nstest.DialTCP(tp.cb, "172.17.0.2:80", short); r.OK() {
					t.Fatalf("child opened a connection to its parent: %v", r)
				}
				// Unlinking ends the flows the link carried, open ones too.
				held, r := nstest.ConnectTCP(tp.ca, "172.17.0.3:5432", short)
				if !r.OK() {
					t.Fatalf("linked, held connection: %v", r)
				}
				defer held.Close()
				delete(tp.want.Links, "a/db")
				tp.apply(t, &model.Delta{Links: []model.LinkChange{{Old: l}}})
				ct, err := readCT(tp.be.dp.maps[mapFlows4])
				if err != nil {
					t.Fatal(err)
				}
				for _, p := range ct {
					if p.v.Flags&ctLink != 0 {
						t.Fatalf("link flow left after unlink: %+v", p)
					}
				}
				if err := held.Echo(); err == nil {
					t.Fatal("a connection of the removed link still works")
				}
			})
			t.Run("B13-unpublish", func(t *testing.T) {
				p := tp.want.Ports["web"]
				delete(tp.want.Ports, "web")
				tp.apply(t, &model.Delta{Ports: []model.PortChange{{Old: p}}})
				if r := nstest.DialTCP(tp.ext, "192.0.2.1:8080", short); r.OK() {
					t.Fatalf("unpublished port still answers: %v", r)
				}
				ct, err := readCT(tp.be.dp.maps[mapFlows4])
				if err != nil {
					t.Fatal(err)
				}
				for _, p := range ct {
					if p.v.Flags&ctDNAT != 0 && p.v.Flags&ctHairpin == 0 {
						t.Fatalf("conntrack of the removed mapping left: %+v", p)
					}
				}
			})
			requireNoDrops(t, tp.be, "icc", "icc-link-port", "inbound")
			ev, err := readStats(tp.be.dp.maps[mapStats])
			if err != nil {
				t.Fatal(err)
			}
			if tc.fast && ev["fast_path"] == 0 {
				t.Errorf("fast path never taken: %v", ev)
			}
			t.Logf("events: %v", ev)
			flows, err := tp.be.Flows(context.Background(), dataplane.FlowFilter{})
			if err != nil || len(flows) == 0 {
				t.Errorf("flows: %d, %v", len(flows), err)
			}
			if t.Failed() {
				st := tp.be.Status()
				t.Logf("status: %s", strings.ReplaceAll(fmt.Sprint(st), " ", "\n "))
			}
		})
	}
}
