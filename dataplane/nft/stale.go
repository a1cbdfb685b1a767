package nft

import (
	"github.com/google/nftables"
	"github.com/google/nftables/expr"

	"github.com/portcullis/portcullis/dataplane/model"
)

// The stale-flow guard (B13). NAT is decided when a connection starts, so
// a flow DNATed by a mapping keeps its translation after the mapping is
// removed or changed, for as long as packets keep coming. Deleting its
// conntrack entry (conntrack.go) needs a dump of the whole conntrack table,
// which takes as long as that table is big and so cannot sit on the API
// path. Instead the same transaction that removes a mapping's elements
// stops its flows: every packet of a connection that a published port
// translated (ct status dnat and the published mark) must still find its
// mapping, or it is dropped and counted as "stale". The conntrack clean-up
// then only tidies up.
//
// Two checks, because no single point of the path sees all of a mapping:
//
//   - before DNAT (priority mangle, -150), an original-direction packet
//     still carries the host address and port it was sent to: that key
//     must still be in one of the dnat maps (a removed mapping, or one
//     moved to another host address, is not);
//   - after DNAT (priority filter), the packet carries the endpoint's
//     address and port and ct original proto-dst the host port: that
//     mapping target (proto . host port . endpoint . endpoint port) must
//     still be in a dnat*-targets set (a mapping moved to another endpoint
//     or port is not). Replies are checked by their source.
//
// Cost: established packets of published connections only, one to four
// hash lookups at each check; every other packet fails the first ct test.
// The sets hold one element per mapping (per port for shifted ranges), the
// same as the dnat maps.

// The mapping targets, keyed as the flows are: proto, host port, endpoint
// address, endpoint port. Ranges whose ports are not shifted are one
// interval element (pipapo) with the range in both port fields.
var (
	setTargets4      = inetSet("dnat4-targets", false, tProto, tService, tIP4, tService)
	setTargets4Range = inetSet("dnat4-targets-range", true, tProto, tService, tIP4, tService)
	setTargets6      = inetSet("dnat6-targets", false, tProto, tService, tIP6, tService)
	setTargets6Range = inetSet("dnat6-targets-range", true, tProto, tService, tIP6, tService)
)

// dropStale counts the packets of flows whose mapping is gone.
var dropStale = &counterDef{reason: "stale"}

// Chains of the guard.
const (
	chainStaleHost   = "stale-host"
	chainStaleTarget = "stale-target"
	chainStaleReply  = "stale-target-reply"
	prioMangle       = -150
)

// fCtOrigDport is the destination port the connection was opened to,
// before DNAT.
var fCtOrigDport = field{name: "ct original proto-dst", len: 2, load: func(reg uint32) expr.Any {
	return &expr.Ct{Key: expr.CtKeyPROTODST, Direction: 0, Register: reg}
}}

// targetElems are the dnat*-targets elements of mapping p.
func targetElems(p *model.RPort) []elem {
	var es []elem
	if p.Is4() {
		es = append(es, familyTargets(p, setTargets4, setTargets4Range, vAddr(p.EP.IP))...)
	}
	if p.Is6() {
		es = append(es, familyTargets(p, setTargets6, setTargets6Range, vAddr(p.EP.IP6))...)
	}
	return es
}

func familyTargets(p *model.RPort, exact, rng *setDef, ep value) []elem {
	proto := vProto(p.Proto)
	if p.HostLo != p.HostHi && p.HostLo == p.Lo {
		r := vPortRange(p.HostLo, p.HostHi)
		return []elem{el(rng, proto, r, ep, r)}
	}
	es := make([]elem, 0, int(p.HostHi-p.HostLo)+1)
	for i := 0; i <= int(p.HostHi-p.HostLo); i++ {
		es = append(es, el(exact, proto, vPort(p.HostLo+uint16(i)), ep, vPort(p.Lo+uint16(i))))
	}
	return es
}

// ctDirection matches the direction of the packet in its connection.
func ctDirection(reply bool) term {
	return func(b *builder) {
		dir, text := byte(0), "ct direction original"
		if reply {
			dir, text = 1, "ct direction reply"
		}
		b.add(&expr.Ct{Register: 1, Key: expr.CtKeyDIRECTION}, cmpEq([]byte{dir}))
		b.say(text)
	}
}

// published matches packets of connections a published port translated.
// ICMP errors about such a connection (ct state related) carry no ports to
// check and pass: they follow their connection anyway, which is dropped.
// New is there for datagram flows never answered, whose later packets stay
// "new" though translated.
func published(mark uint32) []term {
	return []term{ctBits(expr.CtKeySTATE, ctStateEstablishedNew, "ct state established,new"),
		ctBits(expr.CtKeySTATUS, ctStatusDNAT, "ct status dnat"), hasMark(ctMark, mark)}
}

// ct state bits: established and new, not related.
const ctStateEstablishedNew = 0x2 | 0x8

// guardJump is `ct state established,new ct status dnat ct mark & M == M
// ct direction D jump chain`.
func guardJump(mark uint32, reply bool, chain string) rule {
	return mkRule(famInet, append(published(mark), ctDirection(reply), jump(chain))...)
}

// staleChains are the guard's chains but the jump into stale-target from
// filter-prerouting (see staleTargetJumps).
func staleChains(mark uint32) []*chainDef {
	mangle := func(hook *nftables.ChainHook, name string) *chainDef {
		return baseChain("mangle-"+name, nftables.ChainTypeFilter, hook, name, prioMangle, "mangle",
			guardJump(mark, false, chainStaleHost))
	}
	return []*chainDef{
		mangle(nftables.ChainHookPrerouting, "prerouting"),
		mangle(nftables.ChainHookOutput, "output"),
		baseChain("filter-output", nftables.ChainTypeFilter, nftables.ChainHookOutput,
			"output", prioFilter, "filter", guardJump(mark, false, chainStaleTarget)),
		regularChain(chainStaleHost, staleHostRules()...),
		regularChain(chainStaleTarget, staleTargetRules(fIPDaddr, fIP6Daddr, fThDport)...),
		regularChain(chainStaleReply, staleTargetRules(fIPSaddr, fIP6Saddr, fThSport)...),
	}
}

// staleTargetJumps go at the head of filter-prerouting: both directions
// of a translated flow pass there, after DNAT.
func staleTargetJumps(mark uint32) []rule {
	return []rule{guardJump(mark, false, chainStaleTarget), guardJump(mark, true, chainStaleReply)}
}

// staleHostRules: the host address and port must still be published, as
// publishedRules would match them.
func staleHostRules() []rule {
	var rules []rule
	for _, p := range dnatLookups {
		var t []term
		if len(p.key) == 2 {
			t = append(t, nfproto(p.d), fibLocal())
		}
		t = append(t, inSet(p.m, p.key...), ret)
		rules = append(rules, mkRule(famInet, t...))
	}
	return append(rules, mkRule(famInet, dropCounted(dropStale)))
}

// staleTargetRules: the endpoint address (addr4 or addr6) and port (port)
// of the packet, with the host port it was sent to, must still be a
// mapping's target.
func staleTargetRules(addr4, addr6, port field) []rule {
	r := func(s *setDef, addr field) rule {
		return mkRule(famInet, inSet(s, fL4proto, fCtOrigDport, addr, port), ret)
	}
	return []rule{
		r(setTargets4, addr4), r(setTargets4Range, addr4),
		r(setTargets6, addr6), r(setTargets6Range, addr6),
		mkRule(famInet, dropCounted(dropStale)),
	}
}
