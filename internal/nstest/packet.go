package nstest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"net"
	"net/netip"
)

// Protocol numbers for crafted packets.
const (
	ProtoICMP   = 1
	ProtoTCP    = 6
	ProtoUDP    = 17
	ProtoICMPv6 = 58
	ProtoSCTP   = 132
)

// ICMPv4 types and codes used for crafted errors.
const (
	ICMPEchoReply        = 0
	ICMPDestUnreachable  = 3
	ICMPEchoRequest      = 8
	ICMPTimeExceeded     = 11
	ICMPCodePortUnreach  = 3
	ICMPCodeFragNeeded   = 4
	ICMPCodeTTLInTransit = 0
)

// IPv4Packet is a parsed IPv4 packet (as a raw socket returns it).
type IPv4Packet struct {
	Src, Dst netip.Addr
	Proto    uint8
	TTL      uint8
	ID       uint16
	Header   []byte
	Payload  []byte
	Raw      []byte
}

// ParseIPv4 parses an IPv4 packet starting at its header.
func ParseIPv4(b []byte) (IPv4Packet, error) {
	if len(b) < 20 || b[0]>>4 != 4 {
		return IPv4Packet{}, errors.New("not an IPv4 packet")
	}
	ihl := int(b[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(b[2:4]))
	if ihl < 20 || len(b) < ihl || total < ihl {
		return IPv4Packet{}, errors.New("truncated IPv4 packet")
	}
	if total < len(b) {
		b = b[:total]
	}
	return IPv4Packet{
		Src:     netip.AddrFrom4([4]byte(b[12:16])),
		Dst:     netip.AddrFrom4([4]byte(b[16:20])),
		Proto:   b[9],
		TTL:     b[8],
		ID:      binary.BigEndian.Uint16(b[4:6]),
		Header:  b[:ihl],
		Payload: b[ihl:],
		Raw:     b,
	}, nil
}

// Ports returns the source and destination ports of a TCP, UDP or SCTP
// packet (the first four bytes of each header).
func (p IPv4Packet) Ports() (src, dst uint16) {
	if len(p.Payload) < 4 {
		return 0, 0
	}
	return binary.BigEndian.Uint16(p.Payload[0:2]), binary.BigEndian.Uint16(p.Payload[2:4])
}

// Quote returns what an ICMP error quotes of this packet: its IP header and
// the first 8 bytes of its payload.
func (p IPv4Packet) Quote() []byte {
	n := len(p.Header) + 8
	if n > len(p.Raw) {
		n = len(p.Raw)
	}
	return append([]byte(nil), p.Raw[:n]...)
}

func (p IPv4Packet) String() string {
	s, d := p.Ports()
	return fmt.Sprintf("proto %d %s:%d -> %s:%d ttl %d", p.Proto, p.Src, s, p.Dst, d, p.TTL)
}

// Checksum is the Internet checksum (RFC 1071) of b.
func Checksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// IPv4 builds an IPv4 packet (20-byte header, DF clear) around payload.
func IPv4(src, dst netip.Addr, proto, ttl uint8, id uint16, payload []byte) []byte {
	b := make([]byte, 20+len(payload))
	b[0] = 0x45
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	binary.BigEndian.PutUint16(b[4:], id)
	b[8] = ttl
	b[9] = proto
	s, d := src.As4(), dst.As4()
	copy(b[12:16], s[:])
	copy(b[16:20], d[:])
	binary.BigEndian.PutUint16(b[10:], Checksum(b[:20]))
	copy(b[20:], payload)
	return b
}

// pseudoSum is the checksum of an L4 segment with the IPv4 pseudo header.
func pseudoSum(src, dst netip.Addr, proto uint8, seg []byte) uint16 {
	ph := make([]byte, 12+len(seg))
	s, d := src.As4(), dst.As4()
	copy(ph[0:4], s[:])
	copy(ph[4:8], d[:])
	ph[9] = proto
	binary.BigEndian.PutUint16(ph[10:], uint16(len(seg)))
	copy(ph[12:], seg)
	return Checksum(ph)
}

// TCPSyn builds a TCP SYN segment with a correct checksum.
func TCPSyn(src, dst netip.Addr, sport, dport uint16, seq uint32) []byte {
	b := make([]byte, 20)
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint32(b[4:], seq)
	b[12] = 5 << 4
	b[13] = 0x02 // SYN
	binary.BigEndian.PutUint16(b[14:], 64240)
	binary.BigEndian.PutUint16(b[16:], pseudoSum(src, dst, ProtoTCP, b))
	return b
}

// UDP builds a UDP datagram with a correct checksum.
func UDP(src, dst netip.Addr, sport, dport uint16, payload []byte) []byte {
	b := make([]byte, 8+len(payload))
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint16(b[4:], uint16(len(b)))
	copy(b[8:], payload)
	c := pseudoSum(src, dst, ProtoUDP, b)
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(b[6:], c)
	return b
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// SCTPInit builds an SCTP packet holding one INIT chunk (verification tag
// 0, as RFC 9260 requires for INIT), with its CRC32c. Conntrack accepts an
// INIT as the start of a new association, so NAT applies to it.
func SCTPInit(sport, dport uint16, initTag uint32) []byte {
	b := make([]byte, 12+20)
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	c := b[12:]
	c[0] = 1 // INIT
	binary.BigEndian.PutUint16(c[2:], 20)
	binary.BigEndian.PutUint32(c[4:], initTag)
	binary.BigEndian.PutUint32(c[8:], 65536) // a_rwnd
	binary.BigEndian.PutUint16(c[12:], 1)    // outbound streams
	binary.BigEndian.PutUint16(c[14:], 1)    // inbound streams
	binary.BigEndian.PutUint32(c[16:], initTag)
	binary.LittleEndian.PutUint32(b[8:], crc32.Checksum(b, castagnoli))
	return b
}

// SCTPChecksumOK reports whether an SCTP packet's CRC32c is right (after
// NAT rewrote its ports, it must have been recomputed).
func SCTPChecksumOK(b []byte) bool {
	if len(b) < 12 {
		return false
	}
	c := append([]byte(nil), b...)
	want := binary.LittleEndian.Uint32(c[8:])
	binary.LittleEndian.PutUint32(c[8:], 0)
	return crc32.Checksum(c, castagnoli) == want
}

// ICMPv4Error builds an ICMP error message of type and code quoting a
// packet (see IPv4Packet.Quote). For frag-needed, mtu is the next-hop MTU.
func ICMPv4Error(typ, code uint8, mtu uint16, quoted []byte) []byte {
	b := make([]byte, 8+len(quoted))
	b[0], b[1] = typ, code
	if typ == ICMPDestUnreachable && code == ICMPCodeFragNeeded {
		binary.BigEndian.PutUint16(b[6:], mtu)
	}
	copy(b[8:], quoted)
	binary.BigEndian.PutUint16(b[2:], Checksum(b))
	return b
}

// ICMPv6PacketTooBig is the ICMPv6 type of "packet too big" (RFC 4443).
const ICMPv6PacketTooBig = 2

// ICMPv6Error builds an ICMPv6 error message of type and code quoting a
// packet; for packet too big, mtu is the next-hop MTU. The checksum is left
// zero: the kernel fills it in on a raw ICMPv6 socket (SendICMPv6).
func ICMPv6Error(typ, code uint8, mtu uint32, quoted []byte) []byte {
	b := make([]byte, 8+len(quoted))
	b[0], b[1] = typ, code
	if typ == ICMPv6PacketTooBig {
		binary.BigEndian.PutUint32(b[4:], mtu)
	}
	copy(b[8:], quoted)
	return b
}

// IPv6UDP builds an IPv6 packet carrying a UDP datagram (checksum left
// zero: enough to be quoted by an ICMPv6 error).
func IPv6UDP(src, dst netip.Addr, sport, dport uint16, payload []byte) []byte {
	b := make([]byte, 40+8+len(payload))
	b[0] = 6 << 4
	binary.BigEndian.PutUint16(b[4:], uint16(8+len(payload)))
	b[6], b[7] = ProtoUDP, 64
	s, d := src.As16(), dst.As16()
	copy(b[8:], s[:])
	copy(b[24:], d[:])
	binary.BigEndian.PutUint16(b[40:], sport)
	binary.BigEndian.PutUint16(b[42:], dport)
	binary.BigEndian.PutUint16(b[44:], uint16(8+len(payload)))
	copy(b[48:], payload)
	return b
}

// Ethernet builds an Ethernet II frame.
func Ethernet(dst, src net.HardwareAddr, ethType uint16, payload []byte) []byte {
	b := make([]byte, 14+len(payload))
	copy(b[0:6], dst)
	copy(b[6:12], src)
	binary.BigEndian.PutUint16(b[12:], ethType)
	copy(b[14:], payload)
	return b
}
