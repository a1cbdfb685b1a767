package ebpf

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"net"
	"net/netip"
)

// A small packet builder and checker for BPF_PROG_TEST_RUN: Ethernet, IPv4
// or IPv6, then TCP, UDP, SCTP or ICMP, with correct checksums. The checker
// recomputes every checksum from scratch, so a rewrite that forgot one (or
// fixed it wrongly) fails.

var (
	macA   = net.HardwareAddr{0x02, 0x42, 0xac, 0x11, 0x00, 0x02}
	macB   = net.HardwareAddr{0x02, 0x42, 0xac, 0x11, 0x00, 0x03}
	macGW  = net.HardwareAddr{0x02, 0x42, 0x00, 0x00, 0x00, 0x01}
	macExt = net.HardwareAddr{0x02, 0x00, 0x00, 0x00, 0x00, 0x99}
)

type pkt4 struct {
	srcMAC, dstMAC net.HardwareAddr
	src, dst       netip.Addr
	proto          uint8
	sport, dport   uint16 // ICMP echo: sport is the id
	tcpFlags       uint8
	icmpType       uint8
	icmpCode       uint8
	id             uint16
	mf             bool
	fragOff        uint16 // in 8-byte units
	ttl            uint8
	noUDPCsum      bool
	sctpNoCRC      bool // leave the CRC32c zero, as a stack relying on offload does
	payload        []byte
	inner          []byte // ICMP error: the quoted packet (IPv4 header onward)
	ihl            int    // override (bad IHL tests)
}

// l4 builds the transport header and payload with its checksum.
func (p pkt4) l4() []byte {
	var h []byte
	switch p.proto {
	case 6:
		h = make([]byte, 20)
		binary.BigEndian.PutUint16(h[0:], p.sport)
		binary.BigEndian.PutUint16(h[2:], p.dport)
		binary.BigEndian.PutUint32(h[4:], 1000)
		h[12] = 5 << 4
		h[13] = p.tcpFlags
		binary.BigEndian.PutUint16(h[14:], 65535)
	case 17:
		h = make([]byte, 8)
		binary.BigEndian.PutUint16(h[0:], p.sport)
		binary.BigEndian.PutUint16(h[2:], p.dport)
		binary.BigEndian.PutUint16(h[4:], uint16(8+len(p.payload)))
	case 132:
		h = make([]byte, 12)
		binary.BigEndian.PutUint16(h[0:], p.sport)
		binary.BigEndian.PutUint16(h[2:], p.dport)
	case 1:
		h = make([]byte, 8)
		h[0], h[1] = p.icmpType, p.icmpCode
		if p.icmpType == 8 || p.icmpType == 0 {
			binary.BigEndian.PutUint16(h[4:], p.sport)
			binary.BigEndian.PutUint16(h[6:], 1)
		}
	default:
		h = nil
	}
	seg := append(h, p.payload...)
	if p.inner != nil {
		seg = append(seg, p.inner...)
	}
	switch p.proto {
	case 6:
		binary.BigEndian.PutUint16(seg[16:], csumFold(csumAdd(pseudo4(p.src, p.dst, 6, len(seg)), seg)))
	case 17:
		if !p.noUDPCsum {
			c := csumFold(csumAdd(pseudo4(p.src, p.dst, 17, len(seg)), seg))
			if c == 0 {
				c = 0xffff
			}
			binary.BigEndian.PutUint16(seg[6:], c)
		}
	case 132:
		if !p.sctpNoCRC {
			binary.LittleEndian.PutUint32(seg[8:], sctpCRC(seg))
		}
	case 1:
		binary.BigEndian.PutUint16(seg[2:], csumFold(csumAdd(0, seg)))
	}
	return seg
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// sctpCRC computes an SCTP packet's CRC32c as if its checksum field were
// zero (RFC 9260, appendix A).
func sctpCRC(seg []byte) uint32 {
	c := append([]byte(nil), seg...)
	binary.LittleEndian.PutUint32(c[8:], 0)
	return crc32.Checksum(c, castagnoli)
}

// checkSCTP verifies the CRC32c of an SCTP packet, unless it is zero (left
// to offload).
func checkSCTP(seg []byte) (uint32, error) {
	if len(seg) < 12 {
		return 0, fmt.Errorf("sctp packet of %d bytes", len(seg))
	}
	got := binary.LittleEndian.Uint32(seg[8:])
	if got != 0 && got != sctpCRC(seg) {
		return got, fmt.Errorf("bad SCTP CRC32c %#08x, want %#08x", got, sctpCRC(seg))
	}
	return got, nil
}

// ip returns the IPv4 packet (no Ethernet header).
func (p pkt4) ip() []byte {
	body := p.l4()
	if p.fragOff != 0 {
		body = p.payload // a later fragment carries only data
	}
	ihl := 5
	if p.ihl != 0 {
		ihl = p.ihl
	}
	h := make([]byte, 20)
	h[0] = 4<<4 | byte(ihl)
	binary.BigEndian.PutUint16(h[2:], uint16(20+len(body)))
	binary.BigEndian.PutUint16(h[4:], p.id)
	fo := p.fragOff
	if p.mf {
		fo |= 0x2000
	}
	binary.BigEndian.PutUint16(h[6:], fo)
	h[8] = 64
	if p.ttl != 0 {
		h[8] = p.ttl
	}
	h[9] = p.proto
	s, d := p.src.As4(), p.dst.As4()
	copy(h[12:], s[:])
	copy(h[16:], d[:])
	binary.BigEndian.PutUint16(h[10:], csumFold(csumAdd(0, h)))
	return append(h, body...)
}

func (p pkt4) frame() []byte {
	return eth(p.dstMAC, p.srcMAC, 0x0800, p.ip())
}

func eth(dst, src net.HardwareAddr, proto uint16, payload []byte) []byte {
	f := make([]byte, 14, 14+len(payload))
	if dst == nil {
		dst = macGW
	}
	if src == nil {
		src = macExt
	}
	copy(f[0:], dst)
	copy(f[6:], src)
	binary.BigEndian.PutUint16(f[12:], proto)
	return append(f, payload...)
}

func arpFrame(src net.HardwareAddr, sha net.HardwareAddr, sip, tip netip.Addr) []byte {
	a := make([]byte, 28)
	binary.BigEndian.PutUint16(a[0:], 1)
	binary.BigEndian.PutUint16(a[2:], 0x0800)
	a[4], a[5] = 6, 4
	binary.BigEndian.PutUint16(a[6:], 1)
	copy(a[8:], sha)
	s, t := sip.As4(), tip.As4()
	copy(a[14:], s[:])
	copy(a[24:], t[:])
	return eth(net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, src, 0x0806, a)
}

// pkt6 is an IPv6 packet with a UDP, TCP, SCTP or ICMPv6 header, with
// correct checksums.
type pkt6 struct {
	srcMAC, dstMAC net.HardwareAddr
	src, dst       netip.Addr
	next           uint8
	sport, dport   uint16 // ICMPv6 echo: sport is the id
	icmpType       uint8
	tcpFlags       uint8
	payload        []byte // ICMPv6 errors: the quoted packet
}

func pseudo6(src, dst netip.Addr, next uint8, l4len int) uint32 {
	s, d := src.As16(), dst.As16()
	sum := csumAdd(0, s[:])
	sum = csumAdd(sum, d[:])
	return sum + uint32(l4len>>16) + uint32(l4len&0xffff) + uint32(next)
}

func (p pkt6) frame() []byte {
	return eth(p.dstMAC, p.srcMAC, 0x86dd, p.ip())
}

// ip returns the IPv6 packet.
func (p pkt6) ip() []byte {
	var l4 []byte
	switch p.next {
	case 6:
		l4 = make([]byte, 20)
		l4[12] = 5 << 4
	case 17:
		l4 = make([]byte, 8)
		binary.BigEndian.PutUint16(l4[4:], uint16(8+len(p.payload)))
	case 132:
		l4 = make([]byte, 12)
	case 58:
		l4 = make([]byte, 8)
		l4[0] = p.icmpType
		if p.icmpType == 128 || p.icmpType == 129 {
			binary.BigEndian.PutUint16(l4[4:], p.sport)
		}
	}
	if p.next == 6 {
		l4[13] = p.tcpFlags
	}
	l4 = append(l4, p.payload...)
	if p.next == 6 || p.next == 17 || p.next == 132 {
		binary.BigEndian.PutUint16(l4[0:], p.sport)
		binary.BigEndian.PutUint16(l4[2:], p.dport)
	}
	switch p.next {
	case 6:
		binary.BigEndian.PutUint16(l4[16:], csumFold(csumAdd(pseudo6(p.src, p.dst, 6, len(l4)), l4)))
	case 17:
		binary.BigEndian.PutUint16(l4[6:], csumFold(csumAdd(pseudo6(p.src, p.dst, 17, len(l4)), l4)))
	case 58:
		binary.BigEndian.PutUint16(l4[2:], csumFold(csumAdd(pseudo6(p.src, p.dst, 58, len(l4)), l4)))
	case 132:
		binary.LittleEndian.PutUint32(l4[8:], sctpCRC(l4))
	}
	h := make([]byte, 40)
	h[0] = 6 << 4
	binary.BigEndian.PutUint16(h[4:], uint16(len(l4)))
	h[6] = p.next
	h[7] = 64
	s, d := p.src.As16(), p.dst.As16()
	copy(h[8:], s[:])
	copy(h[24:], d[:])
	return append(h, l4...)
}

// decoded is what the checker read back from a frame.
type decoded struct {
	src, dst     netip.Addr
	proto        uint8
	sport, dport uint16 // ICMP echo: the id in sport
	icmpType     uint8
	udpCsum      uint16
	sctpCRC      uint32
	inner        *decoded // ICMP errors
	ttl          uint8
}

// decode4 parses an Ethernet+IPv4 frame and verifies every checksum it
// carries (IP, TCP/UDP with pseudo header, ICMP; for ICMP errors the inner
// IP header too).
func decode4(frame []byte) (*decoded, error) {
	if len(frame) < 34 {
		return nil, fmt.Errorf("frame of %d bytes", len(frame))
	}
	return decodeIP4(frame[14:], true)
}

func decodeIP4(ip []byte, full bool) (*decoded, error) {
	ihl := int(ip[0]&0xf) * 4
	if full && csumFold(csumAdd(0, ip[:ihl])) != 0 {
		return nil, fmt.Errorf("bad IPv4 header checksum %#04x", binary.BigEndian.Uint16(ip[10:]))
	}
	if !full && csumFold(csumAdd(0, ip[:ihl])) != 0 {
		return nil, fmt.Errorf("bad inner IPv4 header checksum %#04x", binary.BigEndian.Uint16(ip[10:]))
	}
	d := &decoded{
		src:   netip.AddrFrom4([4]byte(ip[12:16])),
		dst:   netip.AddrFrom4([4]byte(ip[16:20])),
		proto: ip[9],
		ttl:   ip[8],
	}
	tot := int(binary.BigEndian.Uint16(ip[2:]))
	if full {
		ip = ip[:tot]
	}
	seg := ip[ihl:]
	if binary.BigEndian.Uint16(ip[6:])&0x1fff != 0 {
		return d, nil // later fragment: nothing more to check
	}
	frag := binary.BigEndian.Uint16(ip[6:])&0x2000 != 0
	switch d.proto {
	case 6, 17, 132:
		d.sport = binary.BigEndian.Uint16(seg[0:])
		d.dport = binary.BigEndian.Uint16(seg[2:])
		if !full || frag {
			return d, nil
		}
		if d.proto == 132 {
			var err error
			d.sctpCRC, err = checkSCTP(seg)
			return d, err
		}
		if d.proto == 17 {
			d.udpCsum = binary.BigEndian.Uint16(seg[6:])
			if d.udpCsum == 0 {
				return d, nil
			}
		}
		if d.proto != 132 && csumFold(csumAdd(pseudo4(d.src, d.dst, d.proto, len(seg)), seg)) != 0 {
			return nil, fmt.Errorf("bad %d checksum", d.proto)
		}
	case 1:
		d.icmpType = seg[0]
		if seg[0] == 8 || seg[0] == 0 {
			d.sport = binary.BigEndian.Uint16(seg[4:])
		}
		if !full {
			return d, nil
		}
		if !frag && csumFold(csumAdd(0, seg)) != 0 {
			return nil, fmt.Errorf("bad ICMP checksum")
		}
		if seg[0] == 3 || seg[0] == 11 || seg[0] == 12 {
			in, err := decodeIP4(seg[8:], false)
			if err != nil {
				return nil, err
			}
			d.inner = in
		}
	}
	return d, nil
}

// decode6 parses an Ethernet+IPv6 frame (no extension headers) and verifies
// its TCP, UDP, ICMPv6 checksum or SCTP CRC32c.
func decode6(frame []byte) (*decoded, error) {
	if len(frame) < 14+40 {
		return nil, fmt.Errorf("frame of %d bytes", len(frame))
	}
	ip := frame[14:]
	if ip[0]>>4 != 6 {
		return nil, fmt.Errorf("not IPv6")
	}
	d := &decoded{
		src:   netip.AddrFrom16([16]byte(ip[8:24])),
		dst:   netip.AddrFrom16([16]byte(ip[24:40])),
		proto: ip[6],
		ttl:   ip[7],
	}
	seg := ip[40 : 40+int(binary.BigEndian.Uint16(ip[4:]))]
	switch d.proto {
	case 6, 17, 58:
		if d.proto != 58 {
			d.sport = binary.BigEndian.Uint16(seg[0:])
			d.dport = binary.BigEndian.Uint16(seg[2:])
		} else {
			d.icmpType = seg[0]
			if d.icmpType == 128 || d.icmpType == 129 {
				d.sport = binary.BigEndian.Uint16(seg[4:]) // the echo id
			}
			if d.icmpType < 128 && len(seg) >= 8+40+4 { // an error: the quoted packet
				q := seg[8:]
				d.inner = &decoded{
					src:   netip.AddrFrom16([16]byte(q[8:24])),
					dst:   netip.AddrFrom16([16]byte(q[24:40])),
					proto: q[6],
					sport: binary.BigEndian.Uint16(q[40:]),
					dport: binary.BigEndian.Uint16(q[42:]),
				}
				if q[6] == 58 && len(q) >= 48 { // a quoted echo: its type and id
					d.inner.icmpType, d.inner.sport, d.inner.dport = q[40], binary.BigEndian.Uint16(q[44:]), 0
				}
			}
		}
		if csumFold(csumAdd(pseudo6(d.src, d.dst, d.proto, len(seg)), seg)) != 0 {
			return nil, fmt.Errorf("bad %d checksum over IPv6", d.proto)
		}
	case 132:
		d.sport = binary.BigEndian.Uint16(seg[0:])
		d.dport = binary.BigEndian.Uint16(seg[2:])
		var err error
		if d.sctpCRC, err = checkSCTP(seg); err != nil {
			return nil, err
		}
	}
	return d, nil
}
