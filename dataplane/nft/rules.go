package nft

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// A rule is one nft rule in two forms built by the same code: the text that
// `nft list` prints for it, and the expressions sent over netlink. Building
// both from one description is what keeps the rendered ruleset true; the
// root tests compare the text with what the kernel hands back to nft.
type rule struct {
	text  string
	exprs []expr.Any
}

// dep is a protocol dependency that nft adds in front of a field of that
// protocol (and hides again when listing), e.g. `meta nfproto ipv4` before
// `ip daddr` in an inet table. Without it an IPv6 packet would be read at
// IPv4 offsets.
type dep int

const (
	depNone dep = iota
	depIP4
	depIP6
	depARP      // bridge: ether type arp
	depIP6Ether // bridge: ether type ip6, what nft uses for icmpv6
)

// field is a packet or metadata field as nft names it.
type field struct {
	name string // nft syntax, "ip daddr"
	len  uint32 // bytes the load writes into the register
	need dep
	load func(reg uint32) expr.Any
}

func metaField(name string, key expr.MetaKey, n uint32) field {
	return field{name: name, len: n, load: func(reg uint32) expr.Any {
		return &expr.Meta{Key: key, Register: reg}
	}}
}

func payloadField(name string, base expr.PayloadBase, off, n uint32, need dep) field {
	return field{name: name, len: n, need: need, load: func(reg uint32) expr.Any {
		return &expr.Payload{DestRegister: reg, Base: base, Offset: off, Len: n}
	}}
}

// The fields our rules use. Offsets are into the IPv4 (RFC 791), IPv6 (RFC
// 8200), ARP-over-Ethernet (RFC 826) and Ethernet headers.
var (
	fIifname    = metaField("iifname", expr.MetaKeyIIFNAME, unix.IFNAMSIZ)
	fOifname    = metaField("oifname", expr.MetaKeyOIFNAME, unix.IFNAMSIZ)
	fL4proto    = metaField("meta l4proto", expr.MetaKeyL4PROTO, 1)
	fIPSaddr    = payloadField("ip saddr", expr.PayloadBaseNetworkHeader, 12, 4, depIP4)
	fIPDaddr    = payloadField("ip daddr", expr.PayloadBaseNetworkHeader, 16, 4, depIP4)
	fIP6Saddr   = payloadField("ip6 saddr", expr.PayloadBaseNetworkHeader, 8, 16, depIP6)
	fIP6Daddr   = payloadField("ip6 daddr", expr.PayloadBaseNetworkHeader, 24, 16, depIP6)
	fThSport    = payloadField("th sport", expr.PayloadBaseTransportHeader, 0, 2, depNone)
	fThDport    = payloadField("th dport", expr.PayloadBaseTransportHeader, 2, 2, depNone)
	fEtherSaddr = payloadField("ether saddr", expr.PayloadBaseLLHeader, 6, 6, depNone)
	fARPSha     = payloadField("arp saddr ether", expr.PayloadBaseNetworkHeader, 8, 6, depARP)
	fARPSpa     = payloadField("arp saddr ip", expr.PayloadBaseNetworkHeader, 14, 4, depARP)
	fICMP6Type  = payloadField("icmpv6 type", expr.PayloadBaseTransportHeader, 0, 1, depIP6Ether)
	// Neighbour solicitation and advertisement (RFC 4861 4.3, 4.4): the
	// target address, and the first option's type and link-layer address.
	// nft has no names for them, so it lists them as raw payload.
	fNDTarget  = payloadField("@th,64,128", expr.PayloadBaseTransportHeader, 8, 16, depIP6Ether)
	fNDOptType = payloadField("@th,192,8", expr.PayloadBaseTransportHeader, 24, 1, depIP6Ether)
	fNDOptMAC  = payloadField("@th,208,48", expr.PayloadBaseTransportHeader, 26, 6, depIP6Ether)
)

// reg returns the register nft uses for data at byte offset off of a
// concatenation. Registers are 16 bytes wide (NFT_REG_1..4) but are also
// addressable as 4-byte slots (NFT_REG32_00 = 8 ...); every field of a
// concatenation starts on a 4-byte boundary. nft names the 16-byte register
// when the offset is aligned to it, the 4-byte slot otherwise; the kernel
// treats both the same, we copy nft so `nft --debug=netlink` output matches.
func reg(off uint32) uint32 {
	if off%16 == 0 {
		return unix.NFT_REG_1 + off/16
	}
	return unix.NFT_REG32_00 + off/4
}

func pad4(n uint32) uint32 { return (n + 3) &^ 3 }

// builder accumulates one rule.
type builder struct {
	fam   nftables.TableFamily
	words []string
	exprs []expr.Any
	have  map[dep]bool
}

// term adds words and expressions to a rule.
type term func(b *builder)

func mkRule(fam nftables.TableFamily, terms ...term) rule {
	b := &builder{fam: fam, have: map[dep]bool{}}
	for _, t := range terms {
		t(b)
	}
	return rule{text: strings.Join(b.words, " "), exprs: b.exprs}
}

func (b *builder) add(e ...expr.Any) { b.exprs = append(b.exprs, e...) }
func (b *builder) say(w ...string)   { b.words = append(b.words, w...) }

// require emits the dependency of d once per rule, as nft does.
func (b *builder) require(d dep) {
	if d == depNone || b.have[d] {
		return
	}
	b.have[d] = true
	if b.fam == nftables.TableFamilyINet {
		// meta nfproto is the hook's family: 1 byte.
		v := byte(unix.NFPROTO_IPV4)
		if d == depIP6 {
			v = unix.NFPROTO_IPV6
		}
		b.add(&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1}, cmpEq([]byte{v}))
		return
	}
	switch d { // bridge family
	case depIP4, depIP6:
		// nft uses meta protocol (skb->protocol, network byte order) for ip/ip6.
		et := uint16(unix.ETH_P_IP)
		if d == depIP6 {
			et = unix.ETH_P_IPV6
		}
		b.add(&expr.Meta{Key: expr.MetaKeyPROTOCOL, Register: 1}, cmpEq(be16(et)))
	case depARP:
		b.add(loadEtherType(), cmpEq(be16(unix.ETH_P_ARP)))
	case depIP6Ether:
		b.add(loadEtherType(), cmpEq(be16(unix.ETH_P_IPV6)),
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1}, cmpEq([]byte{unix.IPPROTO_ICMPV6}))
	}
}

func loadEtherType() expr.Any {
	return &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseLLHeader, Offset: 12, Len: 2}
}

func cmpEq(data []byte) expr.Any { return &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: data} }

func be16(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }

// loadConcat loads fields back to back from register 1 and returns the text
// `a . b . c`. Dependencies come first: they use register 1 too, and
// emitting one between two fields would overwrite the first.
func (b *builder) loadConcat(fields []field) string {
	for _, f := range fields {
		b.require(f.need)
	}
	names := make([]string, len(fields))
	var off uint32
	for i, f := range fields {
		names[i] = f.name
		b.add(f.load(reg(off)))
		off += pad4(f.len)
	}
	return strings.Join(names, " . ")
}

// ifname matches an interface name exactly: `iifname != "lo"`. The kernel
// loads IFNAMSIZ bytes, so the name is compared zero-padded to 16.
func ifname(f field, op expr.CmpOp, name string) term {
	return func(b *builder) {
		data := make([]byte, unix.IFNAMSIZ)
		copy(data, name)
		b.add(f.load(1), &expr.Cmp{Op: op, Register: 1, Data: data})
		b.say(f.name, opText(op)+`"`+name+`"`)
	}
}

func opText(op expr.CmpOp) string {
	if op == expr.CmpOpNeq {
		return "!= "
	}
	return ""
}

// inPrefix matches an address field against a prefix. Like nft, a prefix
// on a byte boundary loads only its bytes; otherwise the whole address is
// loaded and masked.
func inPrefix(f field, p netip.Prefix) term {
	return func(b *builder) {
		b.require(f.need)
		addr := p.Masked().Addr().AsSlice()
		bits := p.Bits()
		if bits%8 == 0 {
			n := uint32(bits / 8)
			b.add(payloadPrefix(f, n), cmpEq(addr[:n]))
		} else {
			mask := netipMask(len(addr), bits)
			b.add(f.load(1), &expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: f.len,
				Mask: mask, Xor: make([]byte, len(addr))}, cmpEq(addr))
		}
		b.say(f.name, p.Masked().String())
	}
}

// payloadPrefix loads the first n bytes of an address field.
func payloadPrefix(f field, n uint32) expr.Any {
	p := f.load(1).(*expr.Payload)
	p.Len = n
	return p
}

func netipMask(size, bits int) []byte {
	m := make([]byte, size)
	for i := 0; i < bits; i++ {
		m[i/8] |= 0x80 >> (i % 8)
	}
	return m
}

// isAddr matches an address field exactly: `ip6 saddr ::`.
func isAddr(f field, a netip.Addr) term {
	return func(b *builder) {
		b.require(f.need)
		b.add(f.load(1), cmpEq(a.AsSlice()))
		b.say(f.name, a.String())
	}
}

// inSet looks the concatenation of fields up in s: `a . b @s`.
func inSet(s *setDef, fields ...field) term { return lookup(s, false, fields) }

// notInSet is the inverted lookup: `a . b != @s`.
func notInSet(s *setDef, fields ...field) term { return lookup(s, true, fields) }

func lookup(s *setDef, invert bool, fields []field) term {
	return func(b *builder) {
		key := b.loadConcat(fields)
		b.add(&expr.Lookup{SourceRegister: 1, SetName: s.name, Invert: invert})
		op := "@"
		if invert {
			op = "!= @"
		}
		b.say(key, op+s.name)
	}
}

// ctBits matches a bit of ct state or ct status: `ct state established,related`.
// Both keys are host-endian 32-bit words in the register.
func ctBits(key expr.CtKey, mask uint32, text string) term {
	return func(b *builder) {
		b.add(&expr.Ct{Register: 1, Key: key},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
				Mask: binaryutil.NativeEndian.PutUint32(mask), Xor: make([]byte, 4)},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)})
		b.say(text)
	}
}

// fibLocal matches packets addressed to any local address of the namespace
// (iptables' addrtype --dst-type LOCAL). The route type is host-endian.
func fibLocal() term { return fibAddrLocal(false) }

// fibSaddrLocal matches packets from a local address of the namespace,
// 127.0.0.0/8 included (--src-type LOCAL). Without an interface flag the
// kernel allows it in every hook, postrouting too.
func fibSaddrLocal() term { return fibAddrLocal(true) }

func fibAddrLocal(saddr bool) term {
	return func(b *builder) {
		b.add(&expr.Fib{Register: 1, FlagDADDR: !saddr, FlagSADDR: saddr, ResultADDRTYPE: true},
			cmpEq(binaryutil.NativeEndian.PutUint32(unix.RTN_LOCAL)))
		if saddr {
			b.say("fib saddr type local")
		} else {
			b.say("fib daddr type local")
		}
	}
}

// nfproto matches the hook family explicitly: `meta nfproto ipv6`.
func nfproto(d dep) term {
	return func(b *builder) {
		b.require(d)
		name := "ipv4"
		if d == depIP6 {
			name = "ipv6"
		}
		b.say("meta nfproto", name)
	}
}

// etherType matches the Ethernet type in a bridge table: `ether type arp`.
func etherARP() term {
	return func(b *builder) {
		b.require(depARP)
		b.say("ether type arp")
	}
}

// icmp6Type matches an ICMPv6 type: `icmpv6 type nd-neighbor-solicit`.
func icmp6Type(t byte, name string) term {
	return func(b *builder) {
		b.require(fICMP6Type.need)
		b.add(fICMP6Type.load(1), cmpEq([]byte{t}))
		b.say(fICMP6Type.name, name)
	}
}

// isByte matches a one-byte field: `@th,192,8 0x1`.
func isByte(f field, v byte) term {
	return func(b *builder) {
		b.require(f.need)
		b.add(f.load(1), cmpEq([]byte{v}))
		b.say(f.name, fmt.Sprintf("%#x", v))
	}
}

// tcpSyn matches a TCP segment that opens a connection: SYN without ACK.
func tcpSyn() term {
	return func(b *builder) {
		const syn, ack = 0x02, 0x10
		b.add(&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1}, cmpEq([]byte{unix.IPPROTO_TCP}),
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 1, Mask: []byte{syn | ack}, Xor: []byte{0}},
			cmpEq([]byte{syn}))
		b.say("tcp flags syn / syn,ack")
	}
}

func verdict(k expr.VerdictKind, text string) term {
	return func(b *builder) {
		b.add(&expr.Verdict{Kind: k})
		b.say(text)
	}
}

// There is no bare drop: every drop counts its reason (dropCounted).
var (
	accept = verdict(expr.VerdictAccept, "accept")
	ret    = verdict(expr.VerdictReturn, "return")
)

// dropCounted counts the packet in the named counter c, then drops it:
// `counter name "drop-icc" drop`.
func dropCounted(c *counterDef) term {
	return func(b *builder) {
		b.add(&expr.Objref{Type: unix.NFT_OBJECT_COUNTER, Name: c.name()},
			&expr.Verdict{Kind: expr.VerdictDrop})
		b.say(`counter name "`+c.name()+`"`, "drop")
	}
}

// markKey is a 32-bit mark that rules read and write through register 1:
// the packet's (meta mark) or its connection's (ct mark). Both are
// host-endian in the register.
type markKey struct {
	name  string
	load  func() expr.Any
	store func() expr.Any
}

var (
	metaMark = markKey{"meta mark",
		func() expr.Any { return &expr.Meta{Key: expr.MetaKeyMARK, Register: 1} },
		func() expr.Any { return &expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: 1} }}
	ctMark = markKey{"ct mark",
		func() expr.Any { return &expr.Ct{Key: expr.CtKeyMARK, Register: 1} },
		func() expr.Any { return &expr.Ct{Key: expr.CtKeyMARK, SourceRegister: true, Register: 1} }}
)

func markText(m uint32) string { return fmt.Sprintf("0x%08x", m) }

// hasMark matches when all bits of m are set: `ct mark & 0x00200000 == 0x00200000`.
func hasMark(k markKey, m uint32) term {
	return func(b *builder) {
		v := binaryutil.NativeEndian.PutUint32(m)
		b.add(k.load(), &expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: v, Xor: make([]byte, 4)},
			cmpEq(v))
		b.say(k.name, "&", markText(m), "==", markText(m))
	}
}

// orMark sets the bits of m and keeps the others, which may belong to
// other software: `meta mark set meta mark | 0x00200000`. nft expresses
// the OR as (mark & ^m) ^ m.
func orMark(k markKey, m uint32) term {
	return func(b *builder) {
		b.add(k.load(), &expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(^m), Xor: binaryutil.NativeEndian.PutUint32(m)},
			k.store())
		b.say(k.name, "set", k.name, "|", markText(m))
	}
}

func jump(chain string) term {
	return func(b *builder) {
		b.add(&expr.Verdict{Kind: expr.VerdictJump, Chain: chain})
		b.say("jump", chain)
	}
}

func masquerade() term {
	return func(b *builder) {
		b.add(&expr.Masq{})
		b.say("masquerade")
	}
}

// natMap translates to the value found in map m under the concatenation of
// fields: `dnat ip to ip daddr . meta l4proto . th dport map @dnat4`.
// The lookup writes the map's data from register 1 on: the address first,
// then, when the data is `addr . inet_service`, the port in the next 4-byte
// slot after the address (reg 9 for IPv4, reg 2 for IPv6), which is where
// the nat expression is told to read the port.
func natMap(typ expr.NATType, d dep, m *setDef, fields ...field) term {
	return func(b *builder) {
		key := b.loadConcat(fields)
		b.add(&expr.Lookup{SourceRegister: 1, DestRegister: 1, IsDestRegSet: true, SetName: m.name})
		fam, famName := uint32(unix.NFPROTO_IPV4), "ip"
		if d == depIP6 {
			fam, famName = unix.NFPROTO_IPV6, "ip6"
		}
		nat := &expr.NAT{Type: typ, Family: fam, RegAddrMin: 1}
		if len(m.data) == 2 {
			nat.RegProtoMin = reg(pad4(m.data[0].Bytes))
		}
		b.add(nat)
		kind := "dnat"
		if typ == expr.NATTypeSourceNAT {
			kind = "snat"
		}
		b.say(kind, famName, "to", key, "map", "@"+m.name)
	}
}
