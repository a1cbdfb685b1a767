package nstest

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// UDPProbe is a connected IPv4 UDP socket for ICMP error checks: it sets
// IP_PMTUDISC_DO (so a frag-needed lowers its path MTU) and, with RecvErr,
// IP_RECVERR (so ICMP errors land on its error queue, as traceroute reads
// them).
type UDPProbe struct {
	fd    int
	ns    *NS
	local netip.AddrPort
}

// ProbeOptions configure a UDPProbe.
type ProbeOptions struct {
	Local   netip.AddrPort
	RecvErr bool
}

// NewUDPProbe opens a probe in ns connected to dst.
func NewUDPProbe(ns *NS, dst netip.AddrPort, opts ProbeOptions) (*UDPProbe, error) {
	p := &UDPProbe{ns: ns}
	err := ns.Do(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		p.fd = fd
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_DO); err != nil {
			return fmt.Errorf("IP_MTU_DISCOVER: %w", err)
		}
		if opts.RecvErr {
			if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_RECVERR, 1); err != nil {
				return fmt.Errorf("IP_RECVERR: %w", err)
			}
		}
		if opts.Local.IsValid() || opts.Local.Port() != 0 {
			unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
			la := &unix.SockaddrInet4{Port: int(opts.Local.Port())}
			if opts.Local.Addr().IsValid() {
				la.Addr = opts.Local.Addr().As4()
			}
			if err := unix.Bind(fd, la); err != nil {
				return fmt.Errorf("bind %v: %w", opts.Local, err)
			}
		}
		if err := unix.Connect(fd, &unix.SockaddrInet4{Addr: dst.Addr().As4(), Port: int(dst.Port())}); err != nil {
			return fmt.Errorf("connect %v: %w", dst, err)
		}
		sa, err := unix.Getsockname(fd)
		if err != nil {
			return err
		}
		s4 := sa.(*unix.SockaddrInet4)
		p.local = netip.AddrPortFrom(netip.AddrFrom4(s4.Addr), uint16(s4.Port))
		return nil
	})
	if err != nil {
		if p.fd > 0 {
			unix.Close(p.fd)
		}
		return nil, fmt.Errorf("udp probe to %v in %s: %w", dst, ns.Name, err)
	}
	return p, nil
}

// Local returns the probe's own address.
func (p *UDPProbe) Local() netip.AddrPort { return p.local }

// Send sends one datagram.
func (p *UDPProbe) Send(b []byte) error {
	_, err := unix.Write(p.fd, b)
	return err
}

// PathMTU returns the socket's current path MTU (IP_MTU).
func (p *UDPProbe) PathMTU() (int, error) {
	return unix.GetsockoptInt(p.fd, unix.IPPROTO_IP, unix.IP_MTU)
}

// WaitPathMTU polls until the path MTU is at most want, and returns the
// last value seen.
func (p *UDPProbe) WaitPathMTU(want int, timeout time.Duration) (int, error) {
	deadline := time.Now().Add(timeout)
	for {
		mtu, err := p.PathMTU()
		if err != nil || mtu <= want || time.Now().After(deadline) {
			return mtu, err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Recv waits for a datagram; with ICMP errors pending and no RecvErr it
// returns the error the kernel reports (ECONNREFUSED for port
// unreachable).
func (p *UDPProbe) Recv(timeout time.Duration) ([]byte, error) {
	buf := make([]byte, 65536)
	n, err := recvTimeout(p.fd, buf, timeout, 0)
	if err != nil {
		return nil, err
	}
	return buf[:n], nil
}

// SockError is one entry of a socket's error queue (struct
// sock_extended_err and the offender's address).
type SockError struct {
	Errno    unix.Errno
	Origin   uint8
	Type     uint8
	Code     uint8
	Info     uint32
	Offender netip.Addr
}

func (e SockError) String() string {
	return fmt.Sprintf("errno %v origin %d icmp type %d code %d info %d from %v",
		e.Errno, e.Origin, e.Type, e.Code, e.Info, e.Offender)
}

// ReadError waits up to timeout for an entry on the error queue.
func (p *UDPProbe) ReadError(timeout time.Duration) (SockError, error) {
	deadline := time.Now().Add(timeout)
	pfd := []unix.PollFd{{Fd: int32(p.fd), Events: 0}} // POLLERR is always reported
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return SockError{}, os.ErrDeadlineExceeded
		}
		n, err := unix.Poll(pfd, int(left/time.Millisecond)+1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return SockError{}, err
		}
		if n == 0 {
			continue
		}
		buf, oob := make([]byte, 2048), make([]byte, 512)
		_, oobn, _, _, err := unix.Recvmsg(p.fd, buf, oob, unix.MSG_ERRQUEUE|unix.MSG_DONTWAIT)
		if errors.Is(err, unix.EAGAIN) {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if err != nil {
			return SockError{}, fmt.Errorf("read error queue: %w", err)
		}
		return parseRecvErr(oob[:oobn])
	}
}

func parseRecvErr(oob []byte) (SockError, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return SockError{}, err
	}
	for _, m := range msgs {
		if m.Header.Level != unix.SOL_IP || m.Header.Type != unix.IP_RECVERR {
			continue
		}
		const eeSize = int(unsafe.Sizeof(unix.SockExtendedErr{}))
		if len(m.Data) < eeSize {
			return SockError{}, errors.New("short IP_RECVERR message")
		}
		ee := (*unix.SockExtendedErr)(unsafe.Pointer(&m.Data[0]))
		se := SockError{Errno: unix.Errno(ee.Errno), Origin: ee.Origin, Type: ee.Type, Code: ee.Code, Info: ee.Info}
		// SO_EE_OFFENDER: a sockaddr_in right after the struct.
		if off := m.Data[eeSize:]; len(off) >= 8 && off[0]|off[1] != 0 {
			se.Offender = netip.AddrFrom4([4]byte(off[4:8]))
		}
		return se, nil
	}
	return SockError{}, errors.New("no IP_RECVERR message")
}

// Close closes the socket.
func (p *UDPProbe) Close() error { return unix.Close(p.fd) }
