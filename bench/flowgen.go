package bench

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/portcullis/portcullis/internal/nstest"
)

// The flow generator opens NAT flows without sockets: each container sends
// crafted IPv4 packets through a raw socket (IPPROTO_RAW, so the kernel
// routes them and fills in the IP checksum), one per flow, from the source
// port the flow's index gives. UDP flows are one datagram, TCP flows one
// SYN: either is a new masqueraded flow (a pc_flows4 pair) on the node. The
// destinations are addresses the external host routes nowhere: it does
// not forward, so it drops them without an answer, and a SYN stays
// half-open (60 s on the node, the SYN timeout) instead of being reset.
const (
	flowDsts      = 8    // destination addresses, 198.51.100.1 and up
	flowDstPorts  = 4    // destination ports per address, from flowDstPort
	flowDstPort   = 5000 // first destination port
	flowSportBase = 1024 // first source port: inside the SNAT range, so kept
)

// flowDstNet is TEST-NET-2, where the flows go (routed to the external
// host by the node's default route).
var flowDstNet = netip.MustParseAddr("198.51.100.0")

// flowSrc is a container the generator sends from.
type flowSrc struct {
	ns   *nstest.NS
	addr netip.Addr
}

// flowTuple is flow i of a set sent from n containers: UDP and TCP
// alternate, then the destinations (address and port) take turns, then
// the containers, then the source ports. So every container opens flows
// of both kinds to every destination, and each destination sees each
// source port from each container once: no two flows of the set share a
// translated tuple, and SNAT keeps every source port.
func flowTuple(i, n int) (src int, proto uint8, dst netip.AddrPort, sport uint16) {
	proto = unix.IPPROTO_UDP
	if i%2 == 1 {
		proto = unix.IPPROTO_TCP
	}
	j := i / 2
	d := j % (flowDsts * flowDstPorts)
	k := j / (flowDsts * flowDstPorts)
	a := flowDstNet.As4()
	a[3] = byte(1 + d/flowDstPorts)
	dst = netip.AddrPortFrom(netip.AddrFrom4(a), uint16(flowDstPort+d%flowDstPorts))
	return k % n, proto, dst, uint16(flowSportBase + k/n)
}

// maxGenFlows is the most flows flowTuple numbers before source ports run
// out.
func maxGenFlows(containers int) int {
	return 2 * flowDsts * flowDstPorts * containers * (65535 - flowSportBase + 1)
}

// sendFlows sends one packet of each flow in [from, to), each container
// from a thread of its own, and returns how long it took and how many
// packets could not be sent (the raw socket's errors, by message).
func sendFlows(srcs []flowSrc, from, to int) (time.Duration, map[string]int) {
	start := time.Now()
	errs := make([]map[string]int, len(srcs))
	var wg sync.WaitGroup
	for c := range srcs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[c] = map[string]int{}
			err := srcs[c].ns.Do(func() error { return sendFrom(srcs[c].addr, c, len(srcs), from, to, errs[c]) })
			if err != nil {
				errs[c][err.Error()]++
			}
		}()
	}
	wg.Wait()
	all := map[string]int{}
	for _, m := range errs {
		for k, v := range m {
			all[k] += v
		}
	}
	return time.Since(start), all
}

// sendFrom runs on a thread in container c's namespace and sends its flows
// of [from, to).
func sendFrom(src netip.Addr, c, n, from, to int, errs map[string]int) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
	if err != nil {
		return fmt.Errorf("raw socket: %w", err)
	}
	defer unix.Close(fd)
	buf := make([]byte, 40)
	for i := from; i < to; i++ {
		sc, proto, dst, sport := flowTuple(i, n)
		if sc != c {
			continue
		}
		pkt := flowPacket(buf, src, dst, proto, sport, uint32(i))
		if err := unix.Sendto(fd, pkt, 0, &unix.SockaddrInet4{Addr: dst.Addr().As4()}); err != nil {
			errs["send: "+err.Error()]++
			if err == unix.ENOBUFS || err == unix.EAGAIN {
				time.Sleep(100 * time.Microsecond)
			}
		}
	}
	return nil
}

// flowPacket writes the flow's packet into buf: an IPv4 header (checksum
// and id left to the kernel) and a UDP datagram of no payload or a TCP SYN
// with sequence number seq, L4 checksum computed.
func flowPacket(buf []byte, src netip.Addr, dst netip.AddrPort, proto uint8, sport uint16, seq uint32) []byte {
	l4 := 8
	if proto == unix.IPPROTO_TCP {
		l4 = 20
	}
	pkt := buf[:20+l4]
	clear(pkt)
	pkt[0] = 0x45
	binary.BigEndian.PutUint16(pkt[2:], uint16(len(pkt)))
	binary.BigEndian.PutUint16(pkt[6:], 0x4000) // DF
	pkt[8] = 64
	pkt[9] = proto
	s, d := src.As4(), dst.Addr().As4()
	copy(pkt[12:16], s[:])
	copy(pkt[16:20], d[:])
	h := pkt[20:]
	binary.BigEndian.PutUint16(h[0:], sport)
	binary.BigEndian.PutUint16(h[2:], dst.Port())
	csumAt := 6
	if proto == unix.IPPROTO_UDP {
		binary.BigEndian.PutUint16(h[4:], uint16(l4))
	} else {
		binary.BigEndian.PutUint32(h[4:], seq)
		h[12] = 5 << 4 // data offset
		h[13] = 0x02   // SYN
		binary.BigEndian.PutUint16(h[14:], 64240)
		csumAt = 16
	}
	sum := checksumAdd(0, pkt[12:20]) + uint32(proto) + uint32(l4)
	c := ^fold(checksumAdd(sum, h))
	if c == 0 && proto == unix.IPPROTO_UDP {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(h[csumAt:], c)
	return pkt
}

func checksumAdd(sum uint32, b []byte) uint32 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	return sum
}

func fold(sum uint32) uint16 {
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return uint16(sum)
}
