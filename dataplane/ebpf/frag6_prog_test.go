package ebpf

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"

	"github.com/portcullis/portcullis/dataplane/model"
)

// frags6 cuts p into IPv6 fragments (RFC 8200 4.5) of at most size bytes
// of fragmentable part each (a multiple of 8), with identification id:
// Ethernet frames, first fragment first. ext, if set, is a destination
// options header put in front of the fragment header.
func frags6(p pkt6, id uint32, size int, ext bool) [][]byte {
	ip := p.ip()
	hdr, payload := append([]byte(nil), ip[:40]...), ip[40:]
	var pre []byte
	if ext {
		pre = []byte{44, 0, 1, 4, 0, 0, 0, 0} // dest opts: next fragment, PadN
		hdr[6] = 60
	} else {
		hdr[6] = 44
	}
	var out [][]byte
	for off := 0; off < len(payload); off += size {
		part := payload[off:min(off+size, len(payload))]
		fh := make([]byte, 8)
		fh[0] = p.next
		fo := uint16(off)
		if off+size < len(payload) {
			fo |= 1 // M
		}
		binary.BigEndian.PutUint16(fh[2:], fo)
		binary.BigEndian.PutUint32(fh[4:], id)
		pkt := append(append(append(append([]byte(nil), hdr...), pre...), fh...), part...)
		binary.BigEndian.PutUint16(pkt[4:], uint16(len(pkt)-40))
		out = append(out, eth(p.dstMAC, p.srcMAC, 0x86dd, pkt))
	}
	return out
}

// reassemble6 puts fragments (as frags6 makes them, in order) back into
// one IPv6 frame, for decode6 to check the translated datagram whole.
func reassemble6(t *testing.T, frames [][]byte, ext bool) *decoded {
	t.Helper()
	skip := 8
	if ext {
		skip = 16
	}
	first := frames[0][14:]
	ip := append([]byte(nil), first[:40]...)
	for i, f := range frames {
		pkt := f[14:]
		if i > 0 && (string(pkt[8:40]) != string(first[8:40])) {
			t.Fatalf("fragment %d addresses %x, first fragment's %x", i, pkt[8:40], first[8:40])
		}
		ip = append(ip, pkt[40+skip:40+int(binary.BigEndian.Uint16(pkt[4:]))]...)
	}
	ip[6] = frames[0][14+40+skip-8]
	binary.BigEndian.PutUint16(ip[4:], uint16(len(ip)-40))
	d, err := decode6(eth(macGW, macGW, 0x86dd, ip))
	if err != nil {
		t.Fatalf("reassembled datagram: %v", err)
	}
	return d
}

// bigUDP6 is a UDP datagram of 4,000 bytes of data.
func bigUDP6(src, dst netip.Addr, sport, dport uint16) pkt6 {
	data := make([]byte, 4000)
	for i := range data {
		data[i] = byte(i)
	}
	return pkt6{srcMAC: macA, dstMAC: macGW, src: src, dst: dst, next: 17, sport: sport, dport: dport, payload: data}
}

// TestFragments6Link (B15, B17b): a parent's fragmented datagram to its
// child's exposed port passes whole, first fragment deciding; to a port the
// child does not expose, or without the link, every fragment is dropped;
// a fragment whose first was not seen is dropped.
func TestFragments6Link(t *testing.T) {
	f := newFixture(t, fixtureOpts{icc: false, masquerade: true})
	f.b.Exposed = []model.RPortProto{{Port: 5353, Proto: 17}}
	f.put(linkEntries(&model.RLink{Parent: f.a, Child: f.b, Alias: "db"}, ifA, ifB))

	for _, ext := range []bool{false, true} {
		t.Run(fmt.Sprintf("dest-opts=%v", ext), func(t *testing.T) {
			g := *f
			g.t = t
			p := bigUDP6(ipA6, ipB6, 40000, 5353)
			p.dstMAC = macB
			for _, fr := range frags6(p, 7, 1448, ext) {
				g.passUnchanged(progEndpointIngress, fr)
			}
			p.dport = 5354
			for _, fr := range frags6(p, 8, 1448, ext) {
				g.dropped(progEndpointIngress, fr, "icc-link-port")
			}
			// The later fragments of a datagram whose first was lost.
			p.dport = 5353
			for _, fr := range frags6(p, 9, 1448, ext)[1:] {
				g.dropped(progEndpointIngress, fr, "fragment")
			}
		})
	}

	// Neighbour discovery never comes in fragments (RFC 6980): the
	// options checked could be in the next one.
	na := pkt6{srcMAC: macA, dstMAC: macGW, src: ipA6, dst: allNodes, next: 58, icmpType: icmp6NeighAdvert,
		payload: append(ipA6.AsSlice(), ndOpt(2, macA)...)}
	f.dropped(progEndpointIngress, frags6(na, 11, 16, false)[0], "spoof-nd")

	// B has no link to A: its fragments to A go nowhere.
	b := f.as(ifB)
	p := bigUDP6(ipB6, ipA6, 5353, 40001)
	p.srcMAC, p.dstMAC = macB, macA
	for _, fr := range frags6(p, 10, 1448, false) {
		b.dropped(progEndpointIngress, fr, "icc")
	}
}

// TestFragments6Published (B6, B17b): a fragmented datagram from outside
// to a published UDP port arrives translated whole: the first fragment
// creates the flow, the later ones follow it; a later fragment for a
// container whose first was not seen is dropped.
func TestFragments6Published(t *testing.T) {
	f := newFixture(t, fixtureOpts{icc: false, masquerade: true})
	f.put(uplinkEntries(ifUplink, []netip.Addr{ipNode, ipNode6}))
	f.port("dns", f.a, ifA, 17, netip.Addr{}, 5300, 5309, 5400)

	for i, ext := range []bool{false, true} {
		t.Run(fmt.Sprintf("dest-opts=%v", ext), func(t *testing.T) {
			g := *f
			g.t = t
			p := bigUDP6(ipExt6, ipNode6, 50000+uint16(i), 5301)
			p.srcMAC, p.dstMAC = macExt, macGW
			in := frags6(p, 20+uint32(i), 1448, ext)
			var out [][]byte
			for _, fr := range in {
				ret, o := g.run(progUplinkIngress, fr)
				if ret != actOK {
					t.Fatalf("fragment: verdict %d, want pass; drops %v", ret, g.drops())
				}
				out = append(out, o)
			}
			want6(t, reassemble6(t, out, ext), ipExt6, 50000+uint16(i), ipA6, 5401)
		})
	}

	// To a container's address: the later fragments of an unknown datagram.
	p := bigUDP6(ipExt6, ipA6, 50002, 5401)
	p.srcMAC, p.dstMAC = macExt, macGW
	for _, fr := range frags6(p, 30, 1448, false)[1:] {
		f.dropped(progUplinkIngress, fr, "fragment")
	}
}
