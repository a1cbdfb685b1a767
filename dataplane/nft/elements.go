package nft

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"golang.org/x/sys/unix"

	"github.com/portcullis/portcullis/dataplane/model"
)

// value is one typed part of a set key or map data: its nft text and its
// bytes as the kernel stores them. end is set for ranges: the last value
// (inclusive) of a port range or of a prefix.
type value struct {
	text string
	b    []byte
	end  []byte
}

func vIfname(name string) value {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return value{text: `"` + name + `"`, b: b}
}

func vAddr(a netip.Addr) value { return value{text: a.String(), b: a.AsSlice()} }

func vPrefix(p netip.Prefix) value {
	p = p.Masked()
	first := p.Addr().AsSlice()
	last := bytes.Clone(first)
	for i := p.Bits(); i < len(last)*8; i++ {
		last[i/8] |= 0x80 >> (i % 8)
	}
	return value{text: p.String(), b: first, end: last}
}

func vProto(p uint8) value { return value{text: model.ProtoName(p), b: []byte{p}} }

func vPort(p uint16) value {
	return value{text: fmt.Sprint(p), b: binary.BigEndian.AppendUint16(nil, p)}
}

func vPortRange(lo, hi uint16) value {
	return value{text: fmt.Sprintf("%d-%d", lo, hi),
		b: binary.BigEndian.AppendUint16(nil, lo), end: binary.BigEndian.AppendUint16(nil, hi)}
}

func vEther(mac net.HardwareAddr) value { return value{text: mac.String(), b: []byte(mac)} }

// vMark is host-endian, as nft's mark type.
func vMark(m uint32) value {
	return value{text: fmt.Sprintf("0x%08x", m), b: binaryutil.NativeEndian.PutUint32(m)}
}

// elem is one element of a set or map.
type elem struct {
	set  *setDef
	key  []value
	data []value
}

func el(s *setDef, key ...value) elem { return elem{set: s, key: key} }

func (e elem) to(data ...value) elem { e.data = data; return e }

// id identifies the element's key within our tables; two elements with the
// same id are the same kernel object.
func (e elem) id() string { return famName(e.set.fam) + " " + e.set.name + " " + joinText(e.key) }

func (e elem) String() string {
	if e.data == nil {
		return joinText(e.key)
	}
	return joinText(e.key) + " : " + joinText(e.data)
}

func (e elem) sameData(o elem) bool { return joinText(e.data) == joinText(o.data) }

func joinText(vs []value) string {
	t := make([]string, len(vs))
	for i, v := range vs {
		t[i] = v.text
	}
	return strings.Join(t, " . ")
}

// concatBytes lays values out as the kernel expects a concatenation: each
// part starts on a 4-byte boundary (register slot), zero padded. A single
// value is not padded.
func concatBytes(vs []value, end bool) []byte {
	if len(vs) == 1 {
		return pick(vs[0], end)
	}
	var out []byte
	for _, v := range vs {
		b := pick(v, end)
		out = append(out, b...)
		out = append(out, make([]byte, int(pad4(uint32(len(b))))-len(b))...)
	}
	return out
}

func pick(v value, end bool) []byte {
	if end && v.end != nil {
		return v.end
	}
	return v.b
}

// kernelElems returns the netlink form of e. A concatenated interval key
// (pipapo) is one element with a key and an inclusive key end. A plain
// interval key (rbtree) is a start element and an end element flagged
// INTERVAL_END whose key is one past the last value; when the range runs to
// the top of the address space there is no end element.
func (e elem) kernelElems() []nftables.SetElement {
	s := e.set
	k := nftables.SetElement{Key: concatBytes(e.key, false)}
	if e.data != nil {
		k.Val = concatBytes(e.data, false)
	}
	switch {
	case !s.interval:
		return []nftables.SetElement{k}
	case s.concat():
		k.KeyEnd = concatBytes(e.key, true)
		return []nftables.SetElement{k}
	}
	next, ok := increment(concatBytes(e.key, true))
	if !ok {
		return []nftables.SetElement{k}
	}
	return []nftables.SetElement{k, {Key: next, IntervalEnd: true}}
}

// increment adds one to a big-endian number; ok is false on overflow.
func increment(b []byte) ([]byte, bool) {
	out := bytes.Clone(b)
	for i := len(out) - 1; i >= 0; i-- {
		out[i]++
		if out[i] != 0 {
			return out, true
		}
	}
	return out, false
}
