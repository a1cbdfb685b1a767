package nft

import (
	"encoding/binary"
	"hash/crc32"
	"net/netip"
	"testing"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/portcullis/portcullis/dataplane/model"
)

// TestTrafficSCTP (B6 for sctp): the kernel has SCTP conntrack and NAT but
// no SCTP sockets, so a crafted INIT is sent over a raw socket and the
// container reads what arrives over another: translated address and port,
// the client's source kept.
func TestTrafficSCTP(t *testing.T) {
	t.Parallel()
	tp := newTopo(t)
	tp.do(model.Op{Kind: "port", Port: &model.PortMapping{ID: "c1-sctp", Endpoint: "c1",
		Proto: "sctp", HostPort: 9000, Port: 7000}})
	rx := rawSCTP(t, tp.c1H)
	tx := rawSCTP(t, tp.extH)
	dst := unix.SockaddrInet4{Addr: netip.MustParseAddr(tp.nodeIP).As4()}
	if err := unix.Sendto(tx, sctpInit(40000, 9000), 0, &dst); err != nil {
		t.Fatalf("send sctp INIT: %v", err)
	}
	buf := make([]byte, 1500)
	for {
		n, _, err := unix.Recvfrom(rx, buf, 0)
		if err != nil {
			t.Fatalf("no sctp packet reached the container: %v", err)
		}
		ihl := int(buf[0]&0x0f) * 4
		if n < ihl+4 || binary.BigEndian.Uint16(buf[ihl:]) != 40000 {
			continue // not ours (the kernel's own traffic)
		}
		src, _ := netip.AddrFromSlice(buf[12:16])
		if dport := binary.BigEndian.Uint16(buf[ihl+2:]); dport != 7000 || src.String() != tp.extIP {
			t.Errorf("container got sctp from %s to port %d, want from %s to 7000", src, dport, tp.extIP)
		}
		return
	}
}

// rawSCTP opens a raw IPv4 socket for protocol 132 in namespace h.
func rawSCTP(t *testing.T, h netns.NsHandle) int {
	t.Helper()
	var fd int
	err := inNS(h, func() (err error) {
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_SCTP)
		return err
	})
	if err != nil {
		t.Fatalf("raw sctp socket: %v", err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	tv := unix.NsecToTimeval(okTimeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}
	return fd
}

// sctpInit builds an SCTP packet with one INIT chunk (RFC 9260), valid
// enough for conntrack: verification tag 0, a non-zero initiate tag, and
// the CRC32c checksum, which conntrack verifies.
func sctpInit(sport, dport uint16) []byte {
	p := make([]byte, 12+20)
	binary.BigEndian.PutUint16(p[0:], sport)
	binary.BigEndian.PutUint16(p[2:], dport)
	c := p[12:]
	c[0] = 1                                   // INIT
	binary.BigEndian.PutUint16(c[2:], 20)      // chunk length
	binary.BigEndian.PutUint32(c[4:], 0x1234)  // initiate tag
	binary.BigEndian.PutUint32(c[8:], 65536)   // a_rwnd
	binary.BigEndian.PutUint16(c[12:], 1)      // outbound streams
	binary.BigEndian.PutUint16(c[14:], 1)      // inbound streams
	binary.BigEndian.PutUint32(c[16:], 0x5678) // initial TSN
	sum := crc32.Checksum(p, crc32.MakeTable(crc32.Castagnoli))
	binary.LittleEndian.PutUint32(p[8:], sum) // stored as the CRC's byte order
	return p
}
