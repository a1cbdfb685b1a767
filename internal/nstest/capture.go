package nstest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"
)

// Protocols a Capture can watch, one per family pair.
const (
	CaptureTCP  = ProtoTCP
	CaptureUDP  = ProtoUDP
	CaptureICMP = ProtoICMP // ICMP over IPv4, ICMPv6 over IPv6
)

// ICMPv6 echo types (ICMPv6 numbers them apart from ICMPv4).
const (
	ICMPv6EchoRequest = 128
	ICMPv6EchoReply   = 129
)

// Capture records every packet of one protocol that reaches a namespace's
// IP stack, over IPv4 and IPv6 (link-local included). It is the evidence a
// blocked check needs in the target: raw sockets get their copy after the
// namespace's own input hooks and before the protocol handler, so a packet
// shows here whether or not a socket would have accepted it, and even when
// its answer is lost on the way back.
type Capture struct {
	ns    *NS
	proto int
	fd4   int
	fd6   int
}

// Arrival is one packet a Capture saw.
type Arrival struct {
	Src   netip.Addr
	Proto int
	// Payload starts at the transport (or ICMP) header.
	Payload []byte
}

// Ports returns the source and destination ports of a TCP or UDP arrival.
func (a Arrival) Ports() (src, dst uint16) {
	if len(a.Payload) < 4 {
		return 0, 0
	}
	return binary.BigEndian.Uint16(a.Payload[0:2]), binary.BigEndian.Uint16(a.Payload[2:4])
}

// IsSYN reports whether a TCP arrival opens a connection (SYN without ACK).
func (a Arrival) IsSYN() bool {
	return a.Proto == ProtoTCP && len(a.Payload) >= 14 && a.Payload[13]&0x12 == 0x02
}

// UDPData returns the data of a UDP arrival.
func (a Arrival) UDPData() []byte {
	if a.Proto != ProtoUDP || len(a.Payload) < 8 {
		return nil
	}
	return a.Payload[8:]
}

// IsEchoRequest reports whether an ICMP or ICMPv6 arrival is an echo
// request.
func (a Arrival) IsEchoRequest() bool {
	if len(a.Payload) == 0 {
		return false
	}
	if a.Src.Is4() {
		return a.Proto == ProtoICMP && a.Payload[0] == ICMPEchoRequest
	}
	return a.Proto == ProtoICMPv6 && a.Payload[0] == ICMPv6EchoRequest
}

func (a Arrival) String() string {
	switch a.Proto {
	case ProtoTCP, ProtoUDP:
		s, d := a.Ports()
		return fmt.Sprintf("proto %d from %s port %d to port %d", a.Proto, a.Src, s, d)
	}
	typ := -1
	if len(a.Payload) > 0 {
		typ = int(a.Payload[0])
	}
	return fmt.Sprintf("proto %d type %d from %s", a.Proto, typ, a.Src)
}

// StartCapture opens the raw sockets of a Capture for proto (CaptureTCP,
// CaptureUDP or CaptureICMP) in ns. Close it when done.
func StartCapture(ns *NS, proto int) (*Capture, error) {
	proto6 := proto
	if proto == CaptureICMP {
		proto6 = ProtoICMPv6
	}
	c := &Capture{ns: ns, proto: proto, fd4: -1, fd6: -1}
	err := ns.Do(func() error {
		var err error
		if c.fd4, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto); err != nil {
			return err
		}
		c.fd6, err = unix.Socket(unix.AF_INET6, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto6)
		return err
	})
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("capture proto %d in %s: %w", proto, ns.Name, err)
	}
	return c, nil
}

// MustCapture is StartCapture that fails the test on error and closes at
// cleanup.
func MustCapture(tb TB, ns *NS, proto int) *Capture {
	tb.Helper()
	c, err := StartCapture(ns, proto)
	if err != nil {
		tb.Fatalf("%v", err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// Arrivals returns every packet that reached the namespace since the
// Capture started (or since the last call), and those that arrive within
// grace: a packet still in flight when the client gave up counts too.
func (c *Capture) Arrivals(grace time.Duration) ([]Arrival, error) {
	var out []Arrival
	buf := make([]byte, 65536)
	pfd := []unix.PollFd{{Fd: int32(c.fd4), Events: unix.POLLIN}, {Fd: int32(c.fd6), Events: unix.POLLIN}}
	deadline := time.Now().Add(grace)
	for {
		// Past the deadline, poll without waiting: what is queued is read.
		ms := max(int(time.Until(deadline)/time.Millisecond), 0)
		n, err := unix.Poll(pfd, ms)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return out, fmt.Errorf("capture proto %d in %s: %w", c.proto, c.ns.Name, err)
		}
		if n == 0 {
			if ms == 0 {
				return out, nil
			}
			continue
		}
		for _, p := range pfd {
			if p.Revents == 0 {
				continue
			}
			k, from, err := unix.Recvfrom(int(p.Fd), buf, unix.MSG_DONTWAIT)
			if errors.Is(err, unix.EAGAIN) {
				continue
			}
			if err != nil {
				return out, fmt.Errorf("capture proto %d in %s: %w", c.proto, c.ns.Name, err)
			}
			if a, ok := c.arrival(int(p.Fd), buf[:k], from); ok {
				out = append(out, a)
			}
		}
	}
}

// arrival parses what one raw socket returned: IPv4 raw sockets include the
// IP header, IPv6 ones start at the payload and give the source apart.
func (c *Capture) arrival(fd int, b []byte, from unix.Sockaddr) (Arrival, bool) {
	if fd == c.fd4 {
		p, err := ParseIPv4(append([]byte(nil), b...))
		if err != nil {
			return Arrival{}, false
		}
		return Arrival{Src: p.Src, Proto: int(p.Proto), Payload: p.Payload}, true
	}
	sa, ok := from.(*unix.SockaddrInet6)
	if !ok {
		return Arrival{}, false
	}
	proto := c.proto
	if proto == CaptureICMP {
		proto = ProtoICMPv6
	}
	return Arrival{Src: netip.AddrFrom16(sa.Addr), Proto: proto, Payload: append([]byte(nil), b...)}, true
}

// Close closes the raw sockets.
func (c *Capture) Close() error {
	var errs []error
	for _, fd := range []int{c.fd4, c.fd6} {
		if fd >= 0 {
			errs = append(errs, unix.Close(fd))
		}
	}
	c.fd4, c.fd6 = -1, -1
	return errors.Join(errs...)
}
