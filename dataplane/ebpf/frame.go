package ebpf

import (
	"encoding/binary"
	"net"
	"net/netip"
)

// A minimal frame builder for the packet paths of BenchPaths: Ethernet,
// IPv4 and TCP with correct checksums. The tests' builder (packet_test.go)
// covers every protocol and shares the checksum helpers.

func csumAdd(sum uint32, b []byte) uint32 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	return sum
}

func csumFold(sum uint32) uint16 {
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

func pseudo4(src, dst netip.Addr, proto uint8, l4len int) uint32 {
	s, d := src.As4(), dst.As4()
	sum := csumAdd(0, s[:])
	sum = csumAdd(sum, d[:])
	return sum + uint32(proto) + uint32(l4len)
}

// TCP flags.
const (
	tcpSYN = 0x02
	tcpACK = 0x10
)

// tcpFrame builds an Ethernet frame carrying an IPv4 TCP segment with the
// given flags and payload length.
func tcpFrame(srcMAC, dstMAC net.HardwareAddr, src, dst netip.AddrPort, flags uint8, payload int) []byte {
	seg := make([]byte, 20+payload)
	binary.BigEndian.PutUint16(seg[0:], src.Port())
	binary.BigEndian.PutUint16(seg[2:], dst.Port())
	binary.BigEndian.PutUint32(seg[4:], 1000)
	binary.BigEndian.PutUint32(seg[8:], 2000)
	seg[12] = 5 << 4
	seg[13] = flags
	binary.BigEndian.PutUint16(seg[14:], 65535)
	binary.BigEndian.PutUint16(seg[16:], csumFold(csumAdd(pseudo4(src.Addr(), dst.Addr(), 6, len(seg)), seg)))

	ip := make([]byte, 20, 20+len(seg))
	ip[0] = 4<<4 | 5
	binary.BigEndian.PutUint16(ip[2:], uint16(20+len(seg)))
	ip[8] = 64
	ip[9] = 6
	s, d := src.Addr().As4(), dst.Addr().As4()
	copy(ip[12:], s[:])
	copy(ip[16:], d[:])
	binary.BigEndian.PutUint16(ip[10:], csumFold(csumAdd(0, ip)))

	f := make([]byte, 14, 14+len(ip)+len(seg))
	copy(f[0:], dstMAC)
	copy(f[6:], srcMAC)
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	return append(append(f, ip...), seg...)
}
