package nstest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// DefaultTimeout bounds each traffic helper when the caller gives none.
const DefaultTimeout = 2 * time.Second

// DialOptions are shared by the TCP and UDP clients.
type DialOptions struct {
	// Timeout bounds the whole exchange (connect, hello, echo).
	Timeout time.Duration
	// Local binds the client's source: address, port or both (zero parts
	// are left to the kernel).
	Local netip.AddrPort
}

// numericZone rewrites an interface-name zone ("[fe80::1%eth0]:80") to the
// interface's index in the current namespace. Go's net package caches
// zone names process-wide, so a name resolved in one namespace would be
// used with its index in another; an index is always taken as given. Call
// it inside NS.Do.
func numericZone(dst string) (string, error) {
	ap, err := netip.ParseAddrPort(dst)
	if err != nil || ap.Addr().Zone() == "" {
		return dst, nil
	}
	if _, err := strconv.Atoi(ap.Addr().Zone()); err == nil {
		return dst, nil
	}
	ifi, err := net.InterfaceByName(ap.Addr().Zone())
	if err != nil {
		return "", fmt.Errorf("zone of %s: %w", dst, err)
	}
	return netip.AddrPortFrom(ap.Addr().WithZone(strconv.Itoa(ifi.Index)), ap.Port()).String(), nil
}

// unzoned drops the zone: an interface name or index means nothing outside
// the namespace that saw it.
func unzoned(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap().WithZone(""), ap.Port())
}

// Port is a local address of just a port, for DialOptions.Local.
func Port(p uint16) netip.AddrPort { return netip.AddrPortFrom(netip.Addr{}, p) }

func (o DialOptions) timeout() time.Duration {
	if o.Timeout <= 0 {
		return DefaultTimeout
	}
	return o.Timeout
}

func (o DialOptions) localAddr(network string) net.Addr {
	if !o.Local.Addr().IsValid() && o.Local.Port() == 0 {
		return nil
	}
	var ip net.IP
	if o.Local.Addr().IsValid() {
		ip = o.Local.Addr().AsSlice()
	}
	if network == "udp" {
		return &net.UDPAddr{IP: ip, Port: int(o.Local.Port())}
	}
	return &net.TCPAddr{IP: ip, Port: int(o.Local.Port())}
}

// reuseAddr lets a client bind a source port that a closed connection still
// holds in TIME_WAIT, so cases may dial twice from the same port.
func reuseAddr(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
	})
	if err != nil {
		return err
	}
	return serr
}

// TCPServer accepts connections in a namespace. For each one it records the
// client address it saw, writes the hello line "<name> <client addr>\n",
// then echoes every byte until the client closes.
type TCPServer struct {
	Name string
	Addr netip.AddrPort
	// NS is the namespace the server listens in.
	NS *NS

	ln    net.Listener
	mu    sync.Mutex
	peers []netip.AddrPort
	conns map[net.Conn]struct{}
	done  chan struct{}
	wg    sync.WaitGroup
}

// ListenTCP starts a TCPServer on addr ("[::]:80" is dual-stack, ":80"
// too) inside ns and closes it at cleanup.
func ListenTCP(tb TB, ns *NS, name, addr string) *TCPServer {
	tb.Helper()
	s, err := StartTCPServer(ns, name, addr)
	if err != nil {
		tb.Fatalf("%v", err)
	}
	tb.Cleanup(s.Close)
	return s
}

// StartTCPServer is ListenTCP without a TB; the caller must Close it.
func StartTCPServer(ns *NS, name, addr string) (*TCPServer, error) {
	s := &TCPServer{Name: name, NS: ns, conns: map[net.Conn]struct{}{}, done: make(chan struct{})}
	err := ns.Do(func() error {
		var lc net.ListenConfig
		ln, err := lc.Listen(context.Background(), "tcp", addr)
		s.ln = ln
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("tcp listen %s in %s: %w", addr, ns.Name, err)
	}
	s.Addr = s.ln.Addr().(*net.TCPAddr).AddrPort()
	s.wg.Add(1)
	go s.serve()
	return s, nil
}

func (s *TCPServer) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		peer := unzoned(c.RemoteAddr().(*net.TCPAddr).AddrPort())
		s.mu.Lock()
		s.peers = append(s.peers, peer)
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go s.handle(c, peer)
	}
}

func (s *TCPServer) handle(c net.Conn, peer netip.AddrPort) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		c.Close()
	}()
	if _, err := fmt.Fprintf(c, "%s %s\n", s.Name, peer); err != nil {
		return
	}
	io.Copy(c, c)
}

// Peers returns the client addresses seen so far, in accept order.
func (s *TCPServer) Peers() []netip.AddrPort {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]netip.AddrPort(nil), s.peers...)
}

// Close stops the server and closes its connections.
func (s *TCPServer) Close() {
	s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// TCPResult is what a TCP client observed.
type TCPResult struct {
	// Err is nil when the connection was set up and one byte came back.
	Err error
	// Local and Remote are the client socket's own addresses.
	Local, Remote netip.AddrPort
	// Server is the name of the TCPServer that answered, and Seen the
	// client address it reported: after NAT, what the server really saw.
	Server string
	Seen   netip.AddrPort
}

// OK reports whether the exchange worked.
func (r TCPResult) OK() bool { return r.Err == nil }

func (r TCPResult) String() string {
	if r.Err != nil {
		return "failed: " + r.Err.Error()
	}
	return fmt.Sprintf("%s -> %s answered by %s, seen as %s", r.Local, r.Remote, r.Server, r.Seen)
}

// TCPConn is an open client connection to a TCPServer.
type TCPConn struct {
	c       net.Conn
	timeout time.Duration
	TCPResult
}

// ConnectTCP connects from ns to dst ("192.0.2.1:8080",
// "[fe80::1%eth0]:80") and reads the server's hello. On success the
// connection stays open for Echo; the caller closes it.
func ConnectTCP(ns *NS, dst string, opts DialOptions) (*TCPConn, TCPResult) {
	to := opts.timeout()
	deadline := time.Now().Add(to)
	var c net.Conn
	err := ns.Do(func() error {
		d := net.Dialer{Deadline: deadline, LocalAddr: opts.localAddr("tcp")}
		if d.LocalAddr != nil {
			d.Control = reuseAddr
		}
		addr, err := numericZone(dst)
		if err != nil {
			return err
		}
		c, err = d.Dial("tcp", addr)
		return err
	})
	if err != nil {
		return nil, TCPResult{Err: fmt.Errorf("connect %s from %s: %w", dst, ns.Name, err)}
	}
	r := TCPResult{
		Local:  unzoned(c.LocalAddr().(*net.TCPAddr).AddrPort()),
		Remote: unzoned(c.RemoteAddr().(*net.TCPAddr).AddrPort()),
	}
	c.SetDeadline(deadline)
	line, err := bufio.NewReader(io.LimitReader(c, 256)).ReadString('\n')
	if err != nil {
		c.Close()
		r.Err = fmt.Errorf("read hello from %s in %s: %w", dst, ns.Name, err)
		return nil, r
	}
	name, seen, ok := strings.Cut(strings.TrimSpace(line), " ")
	if r.Seen, err = netip.ParseAddrPort(seen); !ok || err != nil {
		c.Close()
		r.Err = fmt.Errorf("bad hello %q from %s", line, dst)
		return nil, r
	}
	r.Server = name
	tc := &TCPConn{c: c, timeout: to, TCPResult: r}
	if err := tc.Echo(); err != nil {
		c.Close()
		tc.Err = err
		return nil, tc.TCPResult
	}
	return tc, tc.TCPResult
}

// DialTCP connects, checks that a byte echoes back, and closes: the result
// says whether the path works and who saw whom.
func DialTCP(ns *NS, dst string, opts DialOptions) TCPResult {
	c, r := ConnectTCP(ns, dst, opts)
	if c != nil {
		c.Close()
	}
	return r
}

// Echo sends one byte and waits for it to come back.
func (c *TCPConn) Echo() error {
	c.c.SetDeadline(time.Now().Add(c.timeout))
	if _, err := c.c.Write([]byte{'x'}); err != nil {
		return fmt.Errorf("echo write %s -> %s: %w", c.Local, c.Remote, err)
	}
	b := make([]byte, 1)
	if _, err := io.ReadFull(c.c, b); err != nil {
		return fmt.Errorf("echo read %s -> %s: %w", c.Local, c.Remote, err)
	}
	if b[0] != 'x' {
		return errors.New("echo: wrong byte back")
	}
	return nil
}

// Stream sends n bytes of a counting pattern and reads them back as the
// server echoes them, both directions at once, within the connection's
// timeout: the full-sized segments of a bulk transfer (GSO/TSO skbs of up to
// 64 KB on veth) take paths that a one-byte echo never does. The error says
// how far each direction got.
func (c *TCPConn) Stream(n int) error {
	c.c.SetDeadline(time.Now().Add(c.timeout))
	werr := make(chan error, 1)
	go func() {
		buf := make([]byte, 64<<10)
		for sent := 0; sent < n; {
			k := min(len(buf), n-sent)
			for i := range buf[:k] {
				buf[i] = byte(sent + i)
			}
			if _, err := c.c.Write(buf[:k]); err != nil {
				werr <- fmt.Errorf("wrote %d of %d bytes: %w", sent, n, err)
				return
			}
			sent += k
		}
		werr <- nil
	}()
	buf := make([]byte, 64<<10)
	got := 0
	for got < n {
		k, err := c.c.Read(buf[:min(len(buf), n-got)])
		for i := range buf[:k] {
			if buf[i] != byte(got+i) {
				return fmt.Errorf("stream %s -> %s: byte %d came back as %#x, want %#x", c.Local, c.Remote, got+i, buf[i], byte(got+i))
			}
		}
		got += k
		if err != nil {
			return fmt.Errorf("stream %s -> %s: %d of %d bytes came back (%v); sending: %v", c.Local, c.Remote, got, n, err, <-werr)
		}
	}
	return <-werr
}

// Close closes the connection.
func (c *TCPConn) Close() error { return c.c.Close() }

// StreamTCP connects from ns to dst (a TCPServer), streams n bytes each
// way (Stream) within timeout, and closes. The result is the connection's;
// the error is the connection's or the stream's.
func StreamTCP(ns *NS, dst string, n int, timeout time.Duration) (TCPResult, error) {
	c, r := ConnectTCP(ns, dst, DialOptions{Timeout: timeout})
	if !r.OK() {
		return r, r.Err
	}
	defer c.Close()
	return r, c.Stream(n)
}
