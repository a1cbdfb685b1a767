package nstest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// UDPDatagram is one datagram a UDPServer received.
type UDPDatagram struct {
	From    netip.AddrPort
	Payload string
}

// UDPServer answers each datagram with "<name> <client addr> <payload>" and
// records what it received.
type UDPServer struct {
	Name string
	Addr netip.AddrPort
	// NS is the namespace the server listens in.
	NS *NS

	conn *net.UDPConn
	mu   sync.Mutex
	recv []UDPDatagram
	wake chan struct{}
	wg   sync.WaitGroup
}

// ListenUDP starts a UDPServer on addr ("[::]:53" is dual-stack) inside ns
// and closes it at cleanup.
func ListenUDP(tb TB, ns *NS, name, addr string) *UDPServer {
	tb.Helper()
	s, err := StartUDPServer(ns, name, addr)
	if err != nil {
		tb.Fatalf("%v", err)
	}
	tb.Cleanup(s.Close)
	return s
}

// StartUDPServer is ListenUDP without a TB; the caller must Close it.
func StartUDPServer(ns *NS, name, addr string) (*UDPServer, error) {
	s := &UDPServer{Name: name, NS: ns, wake: make(chan struct{})}
	err := ns.Do(func() error {
		var lc net.ListenConfig
		pc, err := lc.ListenPacket(context.Background(), "udp", addr)
		if err == nil {
			s.conn = pc.(*net.UDPConn)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("udp listen %s in %s: %w", addr, ns.Name, err)
	}
	s.Addr = s.conn.LocalAddr().(*net.UDPAddr).AddrPort()
	s.wg.Add(1)
	go s.serve()
	return s, nil
}

func (s *UDPServer) serve() {
	defer s.wg.Done()
	buf := make([]byte, 65536)
	for {
		n, from, err := s.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // e.g. ECONNREFUSED from an earlier reply
		}
		seen := unzoned(from)
		d := UDPDatagram{From: seen, Payload: string(buf[:n])}
		s.mu.Lock()
		s.recv = append(s.recv, d)
		close(s.wake)
		s.wake = make(chan struct{})
		s.mu.Unlock()
		s.conn.WriteToUDPAddrPort([]byte(fmt.Sprintf("%s %s %s", s.Name, seen, d.Payload)), from)
	}
}

// Received returns every datagram so far.
func (s *UDPServer) Received() []UDPDatagram {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]UDPDatagram(nil), s.recv...)
}

// Wait waits up to timeout for a datagram carrying payload.
func (s *UDPServer) Wait(payload string, timeout time.Duration) (UDPDatagram, bool) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		for _, d := range s.recv {
			if d.Payload == payload {
				s.mu.Unlock()
				return d, true
			}
		}
		wake := s.wake
		s.mu.Unlock()
		select {
		case <-wake:
		case <-deadline.C:
			return UDPDatagram{}, false
		}
	}
}

// Close stops the server.
func (s *UDPServer) Close() {
	s.conn.Close()
	s.wg.Wait()
}

// UDPResult is what a UDP client observed for one exchange.
type UDPResult struct {
	// Err is nil when the answer came back; it wraps ECONNREFUSED when an
	// ICMP port unreachable came back instead, and os.ErrDeadlineExceeded
	// when nothing did.
	Err    error
	Local  netip.AddrPort
	Server string
	Seen   netip.AddrPort
}

// OK reports whether the exchange worked.
func (r UDPResult) OK() bool { return r.Err == nil }

func (r UDPResult) String() string {
	if r.Err != nil {
		return "failed: " + r.Err.Error()
	}
	return fmt.Sprintf("from %s answered by %s, seen as %s", r.Local, r.Server, r.Seen)
}

// UDPClient is a connected UDP socket in a namespace. It keeps its source
// port across exchanges, like a client that keeps sending.
type UDPClient struct {
	conn *net.UDPConn
	dst  string
	ns   *NS
	seq  int
	// Timeout bounds each Exchange.
	Timeout time.Duration
}

// NewUDPClient opens a UDP socket in ns connected to dst.
func NewUDPClient(ns *NS, dst string, opts DialOptions) (*UDPClient, error) {
	c := &UDPClient{dst: dst, ns: ns, Timeout: opts.timeout()}
	err := ns.Do(func() error {
		d := net.Dialer{LocalAddr: opts.localAddr("udp")}
		if d.LocalAddr != nil {
			d.Control = reuseAddr
		}
		addr, err := numericZone(dst)
		if err != nil {
			return err
		}
		conn, err := d.Dial("udp", addr)
		if err == nil {
			c.conn = conn.(*net.UDPConn)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("udp socket to %s in %s: %w", dst, ns.Name, err)
	}
	return c, nil
}

// Local returns the socket's own address.
func (c *UDPClient) Local() netip.AddrPort {
	return unzoned(c.conn.LocalAddr().(*net.UDPAddr).AddrPort())
}

// Send sends one datagram without waiting for an answer.
func (c *UDPClient) Send(payload string) error {
	_, err := c.conn.Write([]byte(payload))
	return err
}

// Exchange sends payload (made unique per call) and waits for its answer,
// skipping late answers to earlier datagrams.
func (c *UDPClient) Exchange(payload string) UDPResult {
	c.seq++
	tagged := fmt.Sprintf("%s#%d", payload, c.seq)
	r := UDPResult{Local: c.Local()}
	if err := c.Send(tagged); err != nil {
		r.Err = fmt.Errorf("udp send to %s from %s: %w", c.dst, c.ns.Name, err)
		return r
	}
	c.conn.SetReadDeadline(time.Now().Add(c.Timeout))
	buf := make([]byte, 65536)
	for {
		n, err := c.conn.Read(buf)
		if err != nil {
			r.Err = fmt.Errorf("udp answer from %s to %s in %s: %w", c.dst, r.Local, c.ns.Name, err)
			return r
		}
		f := strings.SplitN(string(buf[:n]), " ", 3)
		if len(f) != 3 || f[2] != tagged {
			continue
		}
		seen, err := netip.ParseAddrPort(f[1])
		if err != nil {
			continue
		}
		r.Server, r.Seen = f[0], seen
		return r
	}
}

// Close closes the socket.
func (c *UDPClient) Close() error { return c.conn.Close() }

// ExchangeUDP sends one datagram from ns to dst and waits for the answer.
func ExchangeUDP(ns *NS, dst string, opts DialOptions) UDPResult {
	c, err := NewUDPClient(ns, dst, opts)
	if err != nil {
		return UDPResult{Err: err}
	}
	defer c.Close()
	return c.Exchange("ping")
}

// SendUDP sends one datagram from ns to dst and does not wait: the receiving
// UDPServer's Wait tells whether it arrived.
func SendUDP(ns *NS, dst, payload string, opts DialOptions) error {
	c, err := NewUDPClient(ns, dst, opts)
	if err != nil {
		return err
	}
	defer c.Close()
	return c.Send(payload)
}
