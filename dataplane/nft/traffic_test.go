package nft

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/portcullis/portcullis/dataplane/model"
)

// Quick timeouts: everything is local, a working path answers in
// milliseconds, and every expected failure costs one timeout.
const (
	okTimeout   = 2 * time.Second
	failTimeout = time.Second
)

// topo is a node with bridge pcbr0 (172.18.0.1/16) and two containers c1
// (.2) and c2 (.3) on veths, and an external host on the uplink (node
// 192.0.2.1/24, ext 192.0.2.2/24). Every interface is created inside these
// namespaces; the node runs the backend.
type topo struct {
	t              *testing.T
	node, ext      string
	nodeH, extH    netns.NsHandle
	c1, c2         string
	c1H, c2H       netns.NsHandle
	b              *Backend
	want           *model.Resolved
	nodeIP, extIP  string
	c1IP, c2IP     string
	bridgeGateway4 string
}

func newTopo(t *testing.T) *topo { return newTopoIn(t, ModeFull) }

// newTopoIn is newTopo with the backend in mode m.
func newTopoIn(t *testing.T, m Mode) *topo {
	needRoot(t)
	tp := &topo{t: t, nodeIP: "192.0.2.1", extIP: "192.0.2.2", c1IP: "172.18.0.2",
		c2IP: "172.18.0.3", bridgeGateway4: "172.18.0.1"}
	tp.node, tp.nodeH = newNS(t, "node")
	tp.ext, tp.extH = newNS(t, "ext")
	tp.c1, tp.c1H = newNS(t, "c1")
	tp.c2, tp.c2H = newNS(t, "c2")
	n, x := tp.node, tp.ext
	sh(t, "ip", "-n", n, "link", "add", "up0", "type", "veth", "peer", "name", "eth0", "netns", x)
	sh(t, "ip", "-n", n, "addr", "add", tp.nodeIP+"/24", "dev", "up0")
	sh(t, "ip", "-n", n, "link", "set", "up0", "up")
	sh(t, "ip", "-n", x, "addr", "add", tp.extIP+"/24", "dev", "eth0")
	sh(t, "ip", "-n", x, "link", "set", "eth0", "up")
	sh(t, "ip", "-n", n, "link", "add", "pcbr0", "type", "bridge")
	sh(t, "ip", "-n", n, "addr", "add", tp.bridgeGateway4+"/16", "dev", "pcbr0")
	sh(t, "ip", "-n", n, "link", "set", "pcbr0", "up")
	inNSExec(t, n, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	tp.plug(tp.c1, "pcv1", tp.c1IP, "02:42:ac:12:00:02")
	tp.plug(tp.c2, "pcv2", tp.c2IP, "02:42:ac:12:00:03")

	tp.b = newBackendIn(t, tp.nodeH, m)
	tp.want = model.NewResolved()
	tp.do(model.Op{Kind: "network", Network: &model.Network{Name: "net0", Bridge: "pcbr0",
		Subnet: "172.18.0.0/16"}})
	tp.do(model.Op{Kind: "endpoint", Endpoint: &model.Endpoint{ID: "c1", Network: "net0",
		IP: tp.c1IP, HostIfname: "pcv1", MAC: "02:42:ac:12:00:02",
		Exposed: []model.PortProto{{Port: 80, Proto: "tcp"}}}})
	tp.do(model.Op{Kind: "endpoint", Endpoint: &model.Endpoint{ID: "c2", Network: "net0",
		IP: tp.c2IP, HostIfname: "pcv2", MAC: "02:42:ac:12:00:03"}})
	return tp
}

// plug connects container namespace ns to the bridge through veth host.
func (tp *topo) plug(ns, host, ip, mac string) {
	t, n := tp.t, tp.node
	sh(t, "ip", "-n", n, "link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", ns)
	sh(t, "ip", "-n", n, "link", "set", host, "master", "pcbr0", "up")
	// As Docker without userland proxy does: with br_netfilter on, a
	// container reaching its own published port is DNATed and bridged
	// back out of the port it came from, which needs hairpin mode.
	sh(t, "ip", "-n", n, "link", "set", host, "type", "bridge_slave", "hairpin", "on")
	sh(t, "ip", "-n", ns, "link", "set", "eth0", "address", mac)
	sh(t, "ip", "-n", ns, "addr", "add", ip+"/16", "dev", "eth0")
	sh(t, "ip", "-n", ns, "link", "set", "eth0", "up")
	sh(t, "ip", "-n", ns, "route", "add", "default", "via", tp.bridgeGateway4)
}

// do changes the desired state and applies the change incrementally (the
// first change is a full sync: the backend has never synced).
func (tp *topo) do(op model.Op) {
	tp.t.Helper()
	d, err := tp.want.Do(op)
	if err != nil {
		tp.t.Fatalf("%s: %v", op.Kind, err)
	}
	if err := tp.b.Apply(tp.t.Context(), tp.want, d, false); err != nil {
		tp.t.Fatalf("apply %s: %v", op.Kind, err)
	}
}

// serve runs a TCP server in namespace h that answers every connection
// with the client's address as it sees it, and closes.
func serve(t *testing.T, h netns.NsHandle, addr string) {
	t.Helper()
	var ln net.Listener
	err := inNS(h, func() (err error) {
		lc := net.ListenConfig{Control: reusePort}
		ln, err = lc.Listen(context.Background(), "tcp", addr)
		return err
	})
	if err != nil {
		t.Fatalf("listen %s: %v", addr, err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
			_, _ = io.WriteString(c, host+"\n")
			c.Close()
		}
	}()
}

// reusePort lets a client bind the port a test server listens on, to
// send from a container's exposed port.
func reusePort(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	})
	return errors.Join(err, serr)
}

// dial connects from namespace h (from laddr, "ip" or "ip:port", if set) to
// raddr and returns what the server saw as the client's address.
func dial(h netns.NsHandle, laddr, raddr string, timeout time.Duration) (string, error) {
	var seen string
	err := inNS(h, func() error {
		d := net.Dialer{Timeout: timeout, Control: reusePort}
		if ap, err := netip.ParseAddrPort(laddr); err == nil {
			d.LocalAddr = net.TCPAddrFromAddrPort(ap)
		} else if laddr != "" {
			d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(laddr)}
		}
		c, err := d.Dial("tcp", raddr)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(timeout))
		b, err := io.ReadAll(c)
		seen = strings.TrimSpace(string(b))
		return err
	})
	return seen, err
}

// reaches asserts that a connection works and the server sees wantSeen.
func reaches(t *testing.T, h netns.NsHandle, laddr, raddr, wantSeen string) {
	t.Helper()
	seen, err := dial(h, laddr, raddr, okTimeout)
	if err != nil {
		t.Errorf("connect to %s: %v", raddr, err)
		return
	}
	if wantSeen != "" && seen != wantSeen {
		t.Errorf("connect to %s: server saw client %s, want %s", raddr, seen, wantSeen)
	}
}

// blocked asserts that a connection does not get through.
func blocked(t *testing.T, h netns.NsHandle, laddr, raddr string) {
	t.Helper()
	if seen, err := dial(h, laddr, raddr, failTimeout); err == nil {
		t.Errorf("connect to %s from %q got through (server saw %s)", raddr, laddr, seen)
	}
}

func TestTrafficEgressAndPublished(t *testing.T) {
	t.Parallel()
	tp := newTopo(t)
	serve(t, tp.extH, ":9000")
	serve(t, tp.c1H, ":80")
	serve(t, tp.c1H, ":81")
	ext9000 := net.JoinHostPort(tp.extIP, "9000")

	t.Run("B1 masquerade", func(t *testing.T) {
		reaches(t, tp.c1H, "", ext9000, tp.nodeIP)
	})
	t.Run("B3 masquerade off keeps the container address", func(t *testing.T) {
		tp.do(model.Op{Kind: "network", Network: &model.Network{Name: "net0", Bridge: "pcbr0",
			Subnet: "172.18.0.0/16", Masquerade: boolp(false)}})
		defer tp.do(model.Op{Kind: "network", Network: &model.Network{Name: "net0", Bridge: "pcbr0",
			Subnet: "172.18.0.0/16"}})
		sh(t, "ip", "-n", tp.ext, "route", "add", "172.18.0.0/16", "via", tp.nodeIP)
		defer sh(t, "ip", "-n", tp.ext, "route", "del", "172.18.0.0/16", "via", tp.nodeIP)
		reaches(t, tp.c1H, "", ext9000, tp.c1IP)
	})
	t.Run("B2 snat per endpoint", func(t *testing.T) {
		sh(t, "ip", "-n", tp.node, "addr", "add", "192.0.2.10/24", "dev", "up0")
		tp.do(model.Op{Kind: "endpoint", Endpoint: &model.Endpoint{ID: "c1", Network: "net0",
			IP: tp.c1IP, HostIfname: "pcv1", MAC: "02:42:ac:12:00:02", SNATIP: "192.0.2.10",
			Exposed: []model.PortProto{{Port: 80, Proto: "tcp"}}}})
		reaches(t, tp.c1H, "", ext9000, "192.0.2.10")
		reaches(t, tp.c2H, "", ext9000, tp.nodeIP)
	})

	tp.do(model.Op{Kind: "port", Port: &model.PortMapping{ID: "c1-http", Endpoint: "c1",
		Proto: "tcp", HostPort: 8080, Port: 80}})
	node8080 := net.JoinHostPort(tp.nodeIP, "8080")
	t.Run("B6 published port keeps the client address", func(t *testing.T) {
		reaches(t, tp.extH, "", node8080, tp.extIP)
	})
	t.Run("B12 container address not reachable from outside", func(t *testing.T) {
		sh(t, "ip", "-n", tp.ext, "route", "add", "172.18.0.0/16", "via", tp.nodeIP)
		defer sh(t, "ip", "-n", tp.ext, "route", "del", "172.18.0.0/16", "via", tp.nodeIP)
		blocked(t, tp.extH, "", net.JoinHostPort(tp.c1IP, "80"))
		blocked(t, tp.extH, "", net.JoinHostPort(tp.c1IP, "81"))
	})
	for _, brnf := range []string{"1", "0"} {
		t.Run("B9 hairpin bridge-nf-call-iptables="+brnf, func(t *testing.T) {
			inNSExec(t, tp.node, "sysctl", "-qw", "net.bridge.bridge-nf-call-iptables="+brnf)
			reaches(t, tp.c2H, "", node8080, tp.bridgeGateway4)
			reaches(t, tp.c1H, "", node8080, tp.bridgeGateway4)
		})
	}
	t.Run("B10 from the node", func(t *testing.T) {
		reaches(t, tp.nodeH, "", "127.0.0.1:8080", "")
		reaches(t, tp.nodeH, "", node8080, tp.nodeIP)
	})
	t.Run("B11 127.0.0.1 mapping not reachable from outside", func(t *testing.T) {
		tp.do(model.Op{Kind: "port", Port: &model.PortMapping{ID: "c1-local", Endpoint: "c1",
			Proto: "tcp", HostIP: "127.0.0.1", HostPort: 8081, Port: 80}})
		tp.do(model.Op{Kind: "port", Port: &model.PortMapping{ID: "c1-local-udp", Endpoint: "c1",
			Proto: "udp", HostIP: "127.0.0.1", HostPort: 8081, Port: 53}})
		reaches(t, tp.nodeH, "", "127.0.0.1:8081", "")
		got := udpServe(t, tp.c1H, ":53")
		c := loopbackFromExt(t, tp)
		send(c, "blocked")
		notReceived(t, got, "blocked")
		rawDropIsOurs(t, tp, TableName, c, got)
	})
	t.Run("B21 restart keeps established flows", func(t *testing.T) {
		tp.do(model.Op{Kind: "port", Port: &model.PortMapping{ID: "c1-echo", Endpoint: "c1",
			Proto: "tcp", HostPort: 8082, Port: 82}})
		echo(t, tp.c1H, ":82")
		var c net.Conn
		err := inNS(tp.extH, func() (err error) {
			c, err = net.DialTimeout("tcp", net.JoinHostPort(tp.nodeIP, "8082"), okTimeout)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		roundTrip(t, c, "before")
		restarted := newBackend(t, tp.nodeH) // a new agent process: full sync
		if err := restarted.Apply(t.Context(), tp.want, nil, true); err != nil {
			t.Fatal(err)
		}
		tp.b = restarted
		roundTrip(t, c, "after")
		reaches(t, tp.extH, "", node8080, tp.extIP)
	})
	t.Run("B13 removed mapping stops at once", func(t *testing.T) {
		tp.do(model.Op{Kind: "port", Delete: true, Key: "c1-http"})
		blocked(t, tp.extH, "", node8080)
	})
}

func TestTrafficICC(t *testing.T) {
	t.Parallel()
	tp := newTopo(t)
	serve(t, tp.c1H, ":80")
	serve(t, tp.c1H, ":81")
	serve(t, tp.c2H, ":80")
	c1http, c1other := net.JoinHostPort(tp.c1IP, "80"), net.JoinHostPort(tp.c1IP, "81")
	c2http := net.JoinHostPort(tp.c2IP, "80")

	for _, brnf := range []string{"1", "0"} {
		// B16: the same checks with bridged frames passed to the IP hooks
		// (a new namespace starts with 1) and without.
		inNSExec(t, tp.node, "sysctl", "-qw", "net.bridge.bridge-nf-call-iptables="+brnf,
			"net.bridge.bridge-nf-call-ip6tables="+brnf)
		t.Run("bridge-nf-call-iptables="+brnf, func(t *testing.T) {
			t.Run("B14 icc=true", func(t *testing.T) {
				tp.setICC(true)
				reaches(t, tp.c2H, "", c1other, tp.c2IP)
			})
			t.Run("B15 icc=false", func(t *testing.T) {
				tp.setICC(false)
				blocked(t, tp.c2H, "", c1http)
				blocked(t, tp.c1H, "", c2http)
			})
			t.Run("B15 link allows only the exposed port", func(t *testing.T) {
				tp.do(model.Op{Kind: "link", Link: &model.Link{Parent: "c2", Alias: "web", Child: "c1"}})
				defer tp.do(model.Op{Kind: "link", Delete: true, Key: "c2/web"})
				reaches(t, tp.c2H, "", c1http, tp.c2IP)
				blocked(t, tp.c2H, "", c1other)
				blocked(t, tp.c1H, "", c2http)            // the child may only answer,
				blocked(t, tp.c1H, tp.c1IP+":80", c2http) // even from its exposed port
			})
			t.Run("B9 neighbour's published port with icc=false", func(t *testing.T) {
				tp.setICC(false)
				tp.do(model.Op{Kind: "port", Port: &model.PortMapping{ID: "c1-http", Endpoint: "c1",
					Proto: "tcp", HostPort: 8080, Port: 80}})
				defer tp.do(model.Op{Kind: "port", Delete: true, Key: "c1-http"})
				node8080 := net.JoinHostPort(tp.nodeIP, "8080")
				reaches(t, tp.c2H, "", node8080, tp.bridgeGateway4)
				reaches(t, tp.c1H, "", node8080, tp.bridgeGateway4) // its own
				blocked(t, tp.c2H, "", c1http)
				blocked(t, tp.c2H, tp.c2IP+":8080", c1http)
				if brnf == "0" {
					return // routed, not bridged: the ICC filter never sees it
				}
				// Control: without the published mark on its packets the
				// translated connection is bridged into the ICC drop, so
				// the mark is what lets it through above.
				inNSExec(t, tp.node, "nft", "flush", "chain", "inet", TableName, "filter-prerouting")
				blocked(t, tp.c2H, "", node8080)
				if err := tp.b.Apply(t.Context(), tp.want, nil, true); err != nil {
					t.Fatal(err)
				}
				reaches(t, tp.c2H, "", node8080, tp.bridgeGateway4)
			})
			t.Run("B17 spoofed source dropped", func(t *testing.T) {
				tp.setICC(true)
				sh(t, "ip", "-n", tp.c2, "addr", "add", "172.18.0.99/16", "dev", "eth0")
				defer sh(t, "ip", "-n", tp.c2, "addr", "del", "172.18.0.99/16", "dev", "eth0")
				blocked(t, tp.c2H, "172.18.0.99", c1http)
				reaches(t, tp.c2H, tp.c2IP, c1http, tp.c2IP)
			})
		})
	}
}

func (tp *topo) setICC(icc bool) {
	tp.t.Helper()
	tp.do(model.Op{Kind: "network", Network: &model.Network{Name: "net0", Bridge: "pcbr0",
		Subnet: "172.18.0.0/16", ICC: boolp(icc)}})
}

// udpServe records the datagrams received in namespace h on addr.
func udpServe(t *testing.T, h netns.NsHandle, addr string) <-chan string {
	t.Helper()
	var pc net.PacketConn
	err := inNS(h, func() (err error) {
		pc, err = net.ListenPacket("udp", addr)
		return err
	})
	if err != nil {
		t.Fatalf("listen udp %s: %v", addr, err)
	}
	t.Cleanup(func() { pc.Close() })
	got := make(chan string, 64)
	go func() {
		buf := make([]byte, 1500)
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			got <- string(buf[:n])
		}
	}()
	return got
}

// udpDial returns a UDP socket of namespace h, bound to laddr (fixing the
// source port, so every datagram belongs to one conntrack entry) and
// connected to raddr.
func udpDial(t *testing.T, h netns.NsHandle, laddr, raddr string) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	err := inNS(h, func() error {
		la, _ := net.ResolveUDPAddr("udp", laddr)
		ra, _ := net.ResolveUDPAddr("udp", raddr)
		var err error
		c, err = net.DialUDP("udp", la, ra)
		return err
	})
	if err != nil {
		t.Fatalf("udp %s -> %s: %v", laddr, raddr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// send writes msg, twice: an ICMP error from an earlier datagram makes the
// first write of a connected UDP socket fail with ECONNREFUSED.
func send(c *net.UDPConn, msg string) {
	_, _ = c.Write([]byte(msg))
	_, _ = c.Write([]byte(msg))
}

func received(t *testing.T, got <-chan string, msg string) {
	t.Helper()
	deadline := time.After(okTimeout)
	for {
		select {
		case m := <-got:
			if m == msg {
				return
			}
		case <-deadline:
			t.Errorf("datagram %q not received", msg)
			return
		}
	}
}

func notReceived(t *testing.T, got <-chan string, msg string) {
	t.Helper()
	deadline := time.After(failTimeout)
	for {
		select {
		case m := <-got:
			if m == msg {
				t.Errorf("datagram %q got through", msg)
				return
			}
		case <-deadline:
			return
		}
	}
}

// TestTrafficStaleConntrack (B13, moby #8795): a UDP client that kept
// sending while the port was not published reaches the container as soon as
// it is, and stops reaching it as soon as the mapping is removed, although
// its datagrams all belong to one conntrack entry.
func TestTrafficStaleConntrack(t *testing.T) {
	t.Parallel()
	tp := newTopo(t)
	got := udpServe(t, tp.c1H, ":53")
	c := udpDial(t, tp.extH, tp.extIP+":40053", tp.nodeIP+":5353")
	send(c, "unpublished") // the node answers port unreachable; conntrack keeps the flow untranslated
	time.Sleep(100 * time.Millisecond)

	tp.do(model.Op{Kind: "port", Port: &model.PortMapping{ID: "c1-dns", Endpoint: "c1",
		Proto: "udp", HostPort: 5353, Port: 53}})
	tp.b.WaitConntrack() // the clean-up runs off the API path
	send(c, "published")
	received(t, got, "published")

	tp.do(model.Op{Kind: "port", Delete: true, Key: "c1-dns"})
	tp.b.WaitConntrack()
	send(c, "removed")
	notReceived(t, got, "removed")
	if n := tp.b.Status()["conntrack_deleted"].(uint64); n < 2 {
		t.Errorf("conntrack_deleted = %d, want at least 2", n)
	}

	// TCP: a refused attempt leaves an entry for its tuple, yet the same
	// client port reaches the container once the port is published, with
	// no clean-up queued (the kernel re-opens a closed entry on SYN).
	serve(t, tp.c1H, ":80")
	from := net.JoinHostPort(tp.extIP, "40080")
	to := net.JoinHostPort(tp.nodeIP, "8088")
	blocked(t, tp.extH, from, to)
	passes := tp.b.Status()["conntrack_cleanups"].(uint64)
	tp.do(model.Op{Kind: "port", Port: &model.PortMapping{ID: "c1-web", Endpoint: "c1",
		Proto: "tcp", HostPort: 8088, Port: 80}})
	if n := tp.b.Status()["conntrack_cleanups"].(uint64); n != passes {
		t.Errorf("a new TCP mapping queued a conntrack clean-up (%d -> %d)", passes, n)
	}
	reaches(t, tp.extH, from, to, tp.extIP)
}

// echo runs a TCP echo server in namespace h.
func echo(t *testing.T, h netns.NsHandle, addr string) {
	t.Helper()
	var ln net.Listener
	if err := inNS(h, func() (err error) { ln, err = net.Listen("tcp", addr); return err }); err != nil {
		t.Fatalf("listen %s: %v", addr, err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
}

func roundTrip(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(okTimeout))
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatalf("write %q: %v", msg, err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != msg {
		t.Fatalf("echo of %q: got %q, %v", msg, buf, err)
	}
}

// loopbackFromExt makes the external host route 127.0.0.1 to the node (only
// its own tables change) and returns a UDP socket sending to 127.0.0.1:8081.
func loopbackFromExt(t *testing.T, tp *topo) *net.UDPConn {
	t.Helper()
	sh(t, "ip", "-n", tp.ext, "route", "del", "local", "127.0.0.1", "dev", "lo", "table", "local")
	sh(t, "ip", "-n", tp.ext, "route", "del", "local", "127.0.0.0/8", "dev", "lo", "table", "local")
	sh(t, "ip", "-n", tp.ext, "route", "add", "127.0.0.1/32", "via", tp.nodeIP)
	return udpDial(t, tp.extH, tp.extIP+":0", "127.0.0.1:8081")
}

// rawDropIsOurs is the control of the loopback cases: without the raw drop
// of table the same datagram gets through (route_localnet=1 lets the node
// accept it), so the drop seen before is ours and not an accident of the
// setup; a full sync puts the drop back.
func rawDropIsOurs(t *testing.T, tp *topo, table string, c *net.UDPConn, got <-chan string) {
	t.Helper()
	inNSExec(t, tp.node, "nft", "flush", "chain", "inet", table, "raw-prerouting")
	send(c, "control")
	received(t, got, "control")
	if err := tp.b.Apply(t.Context(), tp.want, nil, true); err != nil {
		t.Fatal(err)
	}
	send(c, "again")
	notReceived(t, got, "again")
}
