package nstest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// RawConn receives every IPv4 packet of one protocol that reaches a
// namespace (a raw socket sees a copy before the protocol handler, and even
// when the kernel has no handler, as for SCTP here).
type RawConn struct {
	fd int
	ns *NS
}

// ListenRaw opens a raw IPv4 socket for proto in ns. Close it when done.
func ListenRaw(ns *NS, proto int) (*RawConn, error) {
	var fd int
	err := ns.Do(func() error {
		var err error
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("raw socket proto %d in %s: %w", proto, ns.Name, err)
	}
	return &RawConn{fd: fd, ns: ns}, nil
}

// MustListenRaw is ListenRaw that fails the test on error and closes at
// cleanup.
func MustListenRaw(tb TB, ns *NS, proto int) *RawConn {
	tb.Helper()
	r, err := ListenRaw(ns, proto)
	if err != nil {
		tb.Fatalf("%v", err)
	}
	tb.Cleanup(func() { r.Close() })
	return r
}

// Next returns the first packet for which match returns true (nil matches
// anything), or os.ErrDeadlineExceeded after timeout.
func (r *RawConn) Next(timeout time.Duration, match func(IPv4Packet) bool) (IPv4Packet, error) {
	deadline := time.Now().Add(timeout)
	buf := make([]byte, 65536)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return IPv4Packet{}, os.ErrDeadlineExceeded
		}
		n, err := recvTimeout(r.fd, buf, left, 0)
		if err != nil {
			return IPv4Packet{}, err
		}
		p, err := ParseIPv4(append([]byte(nil), buf[:n]...))
		if err != nil {
			continue
		}
		if match == nil || match(p) {
			return p, nil
		}
	}
}

// Close closes the socket.
func (r *RawConn) Close() error { return unix.Close(r.fd) }

// recvTimeout waits up to timeout for fd to be readable, then reads.
func recvTimeout(fd int, buf []byte, timeout time.Duration, flags int) (int, error) {
	ms := int(timeout / time.Millisecond)
	if ms < 1 {
		ms = 1
	}
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(pfd, ms)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return 0, err
		}
		if n == 0 {
			return 0, os.ErrDeadlineExceeded
		}
		break
	}
	n, _, err := unix.Recvfrom(fd, buf, flags|unix.MSG_DONTWAIT)
	if errors.Is(err, unix.EAGAIN) {
		return recvTimeout(fd, buf, time.Millisecond, flags)
	}
	return n, err
}

// SendIPv4 sends a complete IPv4 packet (header included, as built by IPv4)
// from ns; the kernel routes it by its destination.
func SendIPv4(ns *NS, pkt []byte) error {
	p, err := ParseIPv4(pkt)
	if err != nil {
		return err
	}
	return ns.Do(func() error {
		// IPPROTO_RAW implies IP_HDRINCL: the packet goes out as given.
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
		if err != nil {
			return fmt.Errorf("raw socket in %s: %w", ns.Name, err)
		}
		defer unix.Close(fd)
		if err := unix.Sendto(fd, pkt, 0, &unix.SockaddrInet4{Addr: p.Dst.As4()}); err != nil {
			return fmt.Errorf("send %v from %s: %w", p, ns.Name, err)
		}
		return nil
	})
}

// SendICMPv4 sends an ICMP message (built by ICMPv4Error) from ns to dst;
// the kernel adds the IP header with the routed source address.
func SendICMPv4(ns *NS, dst netip.Addr, msg []byte) error { return sendICMP(ns, dst, msg) }

// SendICMPv6 sends an ICMPv6 message (built by ICMPv6Error) from ns to dst;
// the kernel adds the IPv6 header and computes the ICMPv6 checksum.
func SendICMPv6(ns *NS, dst netip.Addr, msg []byte) error { return sendICMP(ns, dst, msg) }

func sendICMP(ns *NS, dst netip.Addr, msg []byte) error {
	return ns.Do(func() error {
		fam, proto := unix.AF_INET, unix.IPPROTO_ICMP
		if dst.Is6() {
			fam, proto = unix.AF_INET6, unix.IPPROTO_ICMPV6
		}
		fd, err := unix.Socket(fam, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
		if err != nil {
			return fmt.Errorf("icmp socket in %s: %w", ns.Name, err)
		}
		defer unix.Close(fd)
		sa, err := sockaddr(dst, 0)
		if err != nil {
			return err
		}
		if err := unix.Sendto(fd, msg, 0, sa); err != nil {
			return fmt.Errorf("send icmp type %d to %s from %s: %w", msg[0], dst, ns.Name, err)
		}
		return nil
	})
}

// Ping sends one ICMP (or ICMPv6) echo request from ns to dst ("192.0.2.2",
// "2001:db8:1::2", "fe80::1%eth0") and waits up to timeout for the reply
// from dst. It uses raw sockets: no ping binary, no ping_group_range.
func Ping(ns *NS, dst string, timeout time.Duration) error {
	addr, err := netip.ParseAddr(dst)
	if err != nil {
		return err
	}
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	var fd int
	var sa unix.Sockaddr
	err = ns.Do(func() error {
		family, proto := unix.AF_INET, unix.IPPROTO_ICMP
		if addr.Is6() {
			family, proto = unix.AF_INET6, unix.IPPROTO_ICMPV6
		}
		fd, err = unix.Socket(family, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
		if err != nil {
			return err
		}
		sa, err = sockaddr(addr, 0)
		return err
	})
	if err != nil {
		return fmt.Errorf("ping %s from %s: %w", dst, ns.Name, err)
	}
	defer unix.Close(fd)
	id := uint16(os.Getpid()) ^ uint16(time.Now().UnixNano())
	req := make([]byte, 16)
	req[0] = ICMPEchoRequest
	if addr.Is6() {
		req[0] = 128 // the kernel fills the ICMPv6 checksum
	}
	binary.BigEndian.PutUint16(req[4:], id)
	binary.BigEndian.PutUint16(req[6:], 1)
	copy(req[8:], "nstest..")
	if addr.Is4() {
		binary.BigEndian.PutUint16(req[2:], Checksum(req))
	}
	if err := unix.Sendto(fd, req, 0, sa); err != nil {
		return fmt.Errorf("ping %s from %s: %w", dst, ns.Name, err)
	}
	deadline := time.Now().Add(timeout)
	buf := make([]byte, 65536)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return fmt.Errorf("ping %s from %s: no reply in %v: %w", dst, ns.Name, timeout, os.ErrDeadlineExceeded)
		}
		n, err := recvTimeout(fd, buf, left, 0)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			continue
		}
		if err != nil {
			return fmt.Errorf("ping %s from %s: %w", dst, ns.Name, err)
		}
		msg, from := buf[:n], netip.Addr{}
		if addr.Is4() {
			p, err := ParseIPv4(msg)
			if err != nil {
				continue
			}
			msg, from = p.Payload, p.Src
		}
		want := uint8(ICMPEchoReply)
		if addr.Is6() {
			want = 129
		}
		if len(msg) < 8 || msg[0] != want || binary.BigEndian.Uint16(msg[4:]) != id {
			continue
		}
		if addr.Is4() && from != addr {
			return fmt.Errorf("ping %s from %s: reply came from %s", dst, ns.Name, from)
		}
		return nil
	}
}

// sockaddr converts an address (with an interface-name zone for
// link-local IPv6) to a unix.Sockaddr; call it inside the namespace that
// owns the interface.
func sockaddr(a netip.Addr, port int) (unix.Sockaddr, error) {
	if a.Is4() {
		return &unix.SockaddrInet4{Addr: a.As4(), Port: port}, nil
	}
	sa := &unix.SockaddrInet6{Addr: a.As16(), Port: port}
	if z := a.Zone(); z != "" {
		ifi, err := net.InterfaceByName(z)
		if err != nil {
			return nil, err
		}
		sa.ZoneId = uint32(ifi.Index)
	}
	return sa, nil
}

// SendFrame sends an Ethernet frame out of ifname in ns through an AF_PACKET
// socket, for what the IP stack would refuse to send (e.g. a packet to
// 127.0.0.1 addressed to another host's MAC).
func SendFrame(ns *NS, ifname string, frame []byte) error {
	return ns.Do(func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return fmt.Errorf("send frame in %s: %w", ns.Name, err)
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("packet socket in %s: %w", ns.Name, err)
		}
		defer unix.Close(fd)
		sa := &unix.SockaddrLinklayer{
			Protocol: htons(binary.BigEndian.Uint16(frame[12:14])),
			Ifindex:  ifi.Index,
			Halen:    6,
		}
		copy(sa.Addr[:], frame[0:6])
		if err := unix.Sendto(fd, frame, 0, sa); err != nil {
			return fmt.Errorf("send frame on %s in %s: %w", ifname, ns.Name, err)
		}
		return nil
	})
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// EthIPv4 is the EtherType of IPv4.
const EthIPv4 = 0x0800
