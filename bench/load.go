package bench

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/portcullis/portcullis/internal/nstest"
)

// echoServer answers every byte with itself until the client closes. It is
// the measured service of the connection benchmarks: a connection-rate
// client sends one byte, reads it back and closes; a request/response
// client keeps one connection and ping-pongs.
type echoServer struct {
	ln    net.Listener
	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// startEcho listens on port in ns and stops at tb's cleanup.
func startEcho(tb *scope, ns *nstest.NS, port int) *echoServer {
	s := &echoServer{conns: map[net.Conn]struct{}{}}
	err := ns.Do(func() error {
		var err error
		s.ln, err = net.Listen("tcp4", fmt.Sprintf(":%d", port))
		return err
	})
	if err != nil {
		tb.Fatalf("echo server in %s: %v", ns.Name, err)
	}
	s.wg.Add(1)
	go s.serve()
	tb.Cleanup(s.Close)
	return s
}

func (s *echoServer) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			time.Sleep(time.Millisecond) // EMFILE and the like: back off, go on
			continue
		}
		s.mu.Lock()
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go s.handle(c)
	}
}

func (s *echoServer) handle(c net.Conn) {
	defer s.wg.Done()
	buf := make([]byte, 512)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	c.Close()
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// Close stops accepting and closes the open connections.
func (s *echoServer) Close() {
	s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// ioTimeout bounds every connect, read and write of the load clients, so a
// dataplane that drops packets costs errors, never a hung client.
const ioTimeout = time.Second

// maxSamples bounds the latencies one client keeps.
const maxSamples = 1 << 18

// loadResult is what a set of clients measured.
type loadResult struct {
	Count   int             // completed exchanges
	Elapsed time.Duration   // wall time of the measured phase
	Lat     []time.Duration // one per exchange, up to maxSamples per client
	Errors  map[string]int  // by error, e.g. "connect: connection timed out"
}

func (r *loadResult) merge(o loadResult) {
	r.Count += o.Count
	r.Lat = append(r.Lat, o.Lat...)
	for k, v := range o.Errors {
		if r.Errors == nil {
			r.Errors = map[string]int{}
		}
		r.Errors[k] += v
	}
}

func (r loadResult) errorCount() int {
	n := 0
	for _, v := range r.Errors {
		n += v
	}
	return n
}

// percentiles sorts the latencies and returns the given percentiles
// (0..100) by nearest rank.
func (r loadResult) percentiles(ps ...float64) []time.Duration {
	out := make([]time.Duration, len(ps))
	if len(r.Lat) == 0 {
		return out
	}
	sort.Slice(r.Lat, func(i, j int) bool { return r.Lat[i] < r.Lat[j] })
	for i, p := range ps {
		out[i] = r.Lat[rankIndex(len(r.Lat), p)]
	}
	return out
}

// connRate runs clients parallel loops, each from its own source address
// in ns, of: connect to dst, send one byte, read it back, close. It runs for
// d and returns what completed; every loop is bounded by d and every call
// by ioTimeout.
func connRate(ns *nstest.NS, dst netip.AddrPort, clients int, d time.Duration) loadResult {
	loops := make([]connPair, clients)
	for i := range loops {
		loops[i] = connPair{clientAddr(i), dst}
	}
	return connLoops(ns, loops, d)
}

// connPair is one connection loop's source address and destination.
type connPair struct {
	src netip.Addr
	dst netip.AddrPort
}

// connLoops runs one connection loop (connLoop) per pair in ns, all at
// once, for d.
func connLoops(ns *nstest.NS, loops []connPair, d time.Duration) loadResult {
	results := make([]loadResult, len(loops))
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(d)
	for i, l := range loops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := ns.Do(func() error {
				results[i] = connLoop(l.src, l.dst, deadline)
				return nil
			})
			if err != nil {
				results[i].Errors = map[string]int{err.Error(): 1}
			}
		}()
	}
	wg.Wait()
	var all loadResult
	for _, r := range results {
		all.merge(r)
	}
	all.Elapsed = time.Since(start)
	return all
}

// connLoop runs on a thread inside the client namespace. It uses blocking
// system calls, not Go's poller, so the client costs as little CPU as it
// can and the dataplane's cost shows.
func connLoop(src netip.Addr, dst netip.AddrPort, deadline time.Time) loadResult {
	r := loadResult{Lat: make([]time.Duration, 0, 1<<14)}
	sa := &unix.SockaddrInet4{Port: int(dst.Port()), Addr: dst.Addr().As4()}
	local := &unix.SockaddrInet4{Addr: src.As4()}
	buf := []byte{'x'}
	for time.Now().Before(deadline) {
		t0 := time.Now()
		if err := exchangeOnce(local, sa, buf); err != nil {
			if r.Errors == nil {
				r.Errors = map[string]int{}
			}
			r.Errors[err.Error()]++
			time.Sleep(time.Millisecond) // no hot loop on a broken path
			continue
		}
		r.Count++
		if len(r.Lat) < maxSamples {
			r.Lat = append(r.Lat, time.Since(t0))
		}
	}
	return r
}

// exchangeOnce is one connection: connect, one byte each way, close. The
// client closes first, so TIME_WAIT stays on the client side, where
// tcp_tw_reuse lets the port go again.
func exchangeOnce(local, dst *unix.SockaddrInet4, buf []byte) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	if err := setTimeouts(fd); err != nil {
		return err
	}
	// Pick the source port at connect time, per destination, instead of
	// at bind time: the whole port range is then available to each
	// source address.
	unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
	if err := unix.Bind(fd, local); err != nil {
		return fmt.Errorf("bind: %w", err)
	}
	if err := unix.Connect(fd, dst); err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	return pingPong(fd, buf)
}

func setTimeouts(fd int) error {
	tv := unix.NsecToTimeval(ioTimeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv); err != nil {
		return fmt.Errorf("SO_SNDTIMEO: %w", err)
	}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return fmt.Errorf("SO_RCVTIMEO: %w", err)
	}
	return nil
}

func pingPong(fd int, buf []byte) error {
	if _, err := unix.Write(fd, buf); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	n, err := unix.Read(fd, buf)
	switch {
	case err != nil:
		return fmt.Errorf("read: %w", err)
	case n != len(buf):
		return errors.New("read: connection closed early")
	}
	return nil
}

// requestResponse keeps one connection from ns to dst and ping-pongs one
// byte for d: the latency of the established path, one flow on one core.
func requestResponse(ns *nstest.NS, dst netip.AddrPort, d time.Duration) loadResult {
	var r loadResult
	start := time.Now()
	err := ns.Do(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if err := setTimeouts(fd); err != nil {
			return err
		}
		unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
		if err := unix.Connect(fd, &unix.SockaddrInet4{Port: int(dst.Port()), Addr: dst.Addr().As4()}); err != nil {
			return fmt.Errorf("connect: %w", err)
		}
		r.Lat = make([]time.Duration, 0, 1<<16)
		buf := []byte{'x'}
		deadline := start.Add(d)
		for time.Now().Before(deadline) && r.Count < 50*maxSamples {
			t0 := time.Now()
			if err := pingPong(fd, buf); err != nil {
				return err
			}
			r.Count++
			if len(r.Lat) < maxSamples {
				r.Lat = append(r.Lat, time.Since(t0))
			}
		}
		return nil
	})
	if err != nil {
		r.Errors = map[string]int{err.Error(): 1}
	}
	r.Elapsed = time.Since(start)
	return r
}

// probe checks that dst answers an exchange from ns, retrying for up to
// timeout: agents plug containers asynchronously and ARP takes a moment.
func probe(ns *nstest.NS, dst netip.AddrPort, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		last = ns.Do(func() error {
			return exchangeOnce(&unix.SockaddrInet4{Addr: clientAddr(0).As4()},
				&unix.SockaddrInet4{Port: int(dst.Port()), Addr: dst.Addr().As4()}, []byte{'p'})
		})
		if last == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%v from %s does not answer: %w", dst, ns.Name, last)
}
