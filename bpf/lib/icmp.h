/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* ICMP and ICMPv6 errors about our flows (B5): the error quotes a packet of
 * the flow, so it belongs to the flow and is translated through its inner
 * header (NAT), or let in on its tracked flow (routed IPv6, links).
 */
#ifndef __PC_ICMP_H__
#define __PC_ICMP_H__

#include "ct4.h"
#include "nat6.h"

/* nat_icmp_error4 translates an ICMP error about a tracked flow: the inner
 * header is a packet of the flow going the other way, so the half that
 * applies is keyed by the inner tuple reversed. The inner header gets the
 * reverse translation (addresses, ports or echo id, inner IP checksum), the
 * outer one the forward translation where its addresses are the flow's (a
 * router on the path, sending "TTL exceeded" or "fragmentation needed", keeps
 * its own source). The ICMP checksum covers the inner bytes and is fixed for
 * each of them. Inner TCP/UDP checksums are left alone: the quoted segment is
 * usually truncated and receivers do not check it.
 *
 * Returns PC_OK when translated, PC_NOT_MINE when there is no flow (the
 * caller goes on with the outer header), PC_E_REWRITE when a helper failed.
 */
static __always_inline int nat_icmp_error4(struct __sk_buff *skb, const struct pkt *p, __u8 hook)
{
	__u32 in3 = p->l4_off + 8, in4, csum = p->l4_off + 2;
	struct ct_key it = {}, k, to, nin, oto;
	struct l4_layout l = {};
	__be16 old_ck, new_ck;
	struct ct_entry *e;
	struct l4hdr8 l4;
	struct iphdr in;
	int ports = 0;

	if (p->flags & PKT_F_NONFIRST)
		return PC_NOT_MINE;
	if (bpf_skb_load_bytes(skb, in3, &in, sizeof(in)) < 0)
		return PC_NOT_MINE;
	if (in.version != 4 || in.ihl < 5 || (in.frag_off & bpf_htons(IP_OFFSET)))
		return PC_NOT_MINE;
	in4 = in3 + in.ihl * 4;
	it.saddr = in.saddr;
	it.daddr = in.daddr;
	it.proto = in.protocol;
	if (l4_min_len(in.protocol) && l4_layout(in.protocol, in4, &l) &&
	    bpf_skb_load_bytes(skb, in4, &l4, sizeof(l4)) == 0) {
		l4_ports(in.protocol, &l4, &it.sport, &it.dport);
		ports = 1;
	}
	ct_swap(&k, &it);
	e = ct_lookup(&k, hook);
	if (!e)
		return PC_NOT_MINE;
	to = e->nat;
	ct_swap(&nin, &to);

	old_ck = in.check;
	if (it.saddr != nin.saddr) {
		if (bpf_skb_store_bytes(skb, in3 + 12, &nin.saddr, 4, 0) < 0 ||
		    bpf_l3_csum_replace(skb, in3 + 10, it.saddr, nin.saddr, 4) < 0 ||
		    bpf_l4_csum_replace(skb, csum, it.saddr, nin.saddr, 4) < 0)
			return PC_E_REWRITE;
	}
	if (it.daddr != nin.daddr) {
		if (bpf_skb_store_bytes(skb, in3 + 16, &nin.daddr, 4, 0) < 0 ||
		    bpf_l3_csum_replace(skb, in3 + 10, it.daddr, nin.daddr, 4) < 0 ||
		    bpf_l4_csum_replace(skb, csum, it.daddr, nin.daddr, 4) < 0)
			return PC_E_REWRITE;
	}
	if (ports && it.sport != nin.sport) {
		if (bpf_skb_store_bytes(skb, l.sport_off, &nin.sport, 2, 0) < 0 ||
		    bpf_l4_csum_replace(skb, csum, it.sport, nin.sport, 2) < 0)
			return PC_E_REWRITE;
	}
	if (ports && it.dport != nin.dport) {
		if (bpf_skb_store_bytes(skb, l.dport_off, &nin.dport, 2, 0) < 0 ||
		    bpf_l4_csum_replace(skb, csum, it.dport, nin.dport, 2) < 0)
			return PC_E_REWRITE;
	}
	/* The inner IP checksum changed as well, and the ICMP checksum covers it. */
	if (bpf_skb_load_bytes(skb, in3 + 10, &new_ck, 2) < 0)
		return PC_E_REWRITE;
	if (new_ck != old_ck && bpf_l4_csum_replace(skb, csum, old_ck, new_ck, 2) < 0)
		return PC_E_REWRITE;

	oto = p->t;
	if (p->t.saddr == k.saddr)
		oto.saddr = to.saddr;
	if (p->t.daddr == k.daddr)
		oto.daddr = to.daddr;
	if (nat_rewrite4(skb, p, &p->t, &oto) < 0)
		return PC_E_REWRITE;
	stat_inc(PC_STAT_ICMP_ERRORS_TRANSLATED);
	return PC_OK;
}

/* nat6_port replaces the 2-byte port at off of the packet quoted by an
 * ICMPv6 error, with the ICMPv6 checksum at csum (quoted bytes are payload
 * to it).
 */
static __always_inline int nat6_port(struct __sk_buff *skb, __u32 csum, __u32 off, const __be16 *from, const __be16 *to)
{
	if (bpf_l4_csum_replace(skb, csum, *from, *to, 2) < 0)
		return PC_E_REWRITE;
	return bpf_skb_store_bytes(skb, off, to, 2, 0) < 0 ? PC_E_REWRITE : PC_OK;
}

/* nat6_icmp_error translates an ICMPv6 error about a published-port or
 * masqueraded flow (the quoted packet TCP, UDP, SCTP or an echo), as
 * nat_icmp_error4 does for IPv4: "packet too big" above all, without
 * which path MTU discovery over IPv6 (where routers never fragment) fails
 * for published ports. The quoted packet belongs to the flow going the
 * other way, so the half keyed by its tuple reversed applies: the quoted
 * tuple gets the reverse translation, the outer addresses the forward one
 * where they are the flow's (a router on the path keeps its own). On the
 * uplink (HOOK_UPLINK_INGRESS) that turns an error for the node's address
 * into one for the container; on the container side (HOOK_EP_INGRESS) a
 * container's error about a client's packet leaves with the node's
 * address. Quoted TCP/UDP checksums are left alone, as for IPv4. The
 * translation is read from the map entry in place: the endpoint program's
 * stack has no room for copies. Returns PC_OK when translated, PC_NOT_MINE
 * when there is no such flow, PC_E_REWRITE when a helper failed.
 */
static __always_inline int nat6_icmp_error(struct __sk_buff *skb, const struct pkt *p, __u8 hook)
{
	__u32 in3 = p->l4_off + 8, in4 = in3 + sizeof(struct ipv6hdr), csum = p->l4_off + 2;
	struct ct6_key k = {};
	struct l4_layout l = {};
	struct ct6_entry *e;
	struct ipv6hdr in;
	struct l4hdr8 l4;
	__be16 sport, dport;

	if (bpf_skb_load_bytes(skb, in3, &in, sizeof(in)) < 0 || in.version != 6)
		return PC_NOT_MINE;
	if (in.nexthdr != IPPROTO_TCP && in.nexthdr != IPPROTO_UDP && in.nexthdr != IPPROTO_SCTP &&
	    in.nexthdr != IPPROTO_ICMPV6)
		return PC_NOT_MINE;
	if (!l4_layout6(in.nexthdr, in4, &l) || bpf_skb_load_bytes(skb, in4, &l4, sizeof(l4)) < 0)
		return PC_NOT_MINE;
	l4_ports(in.nexthdr, &l4, &sport, &dport);
	/* A quoted echo: its id plays the ports (an error never quotes an error). */
	if (in.nexthdr == IPPROTO_ICMPV6) {
		if (l4.icmp.type == ICMPV6_ECHO_REQUEST)
			sport = l4.icmp.id;
		else if (l4.icmp.type == ICMPV6_ECHO_REPLY)
			dport = l4.icmp.id;
		else
			return PC_NOT_MINE;
	}
	__builtin_memcpy(k.saddr, in.daddr, 16);
	__builtin_memcpy(k.daddr, in.saddr, 16);
	k.sport = dport;
	k.dport = sport;
	k.proto = in.nexthdr;
	e = nat6_lookup(&k, hook);
	if (!e)
		return PC_NOT_MINE;

	/* The quoted packet as the flow's other end sent it: e->nat reversed. */
	if (!addr6_equal(in.saddr, e->nat.daddr) && nat6_addr(skb, csum, 0, in3 + 8, in.saddr, e->nat.daddr) < 0)
		return PC_E_REWRITE;
	if (!addr6_equal(in.daddr, e->nat.saddr) && nat6_addr(skb, csum, 0, in3 + 24, in.daddr, e->nat.saddr) < 0)
		return PC_E_REWRITE;
	if (sport != e->nat.dport && nat6_port(skb, csum, l.sport_off, &sport, &e->nat.dport) < 0)
		return PC_E_REWRITE;
	if (dport != e->nat.sport && nat6_port(skb, csum, l.dport_off, &dport, &e->nat.sport) < 0)
		return PC_E_REWRITE;
	/* The outer addresses that are the flow's, through the pseudo header. */
	if (addr6_equal(p->saddr6, k.saddr) && !addr6_equal(k.saddr, e->nat.saddr) &&
	    nat6_addr(skb, csum, BPF_F_PSEUDO_HDR, p->l3_off + 8, p->saddr6, e->nat.saddr) < 0)
		return PC_E_REWRITE;
	if (addr6_equal(p->daddr6, k.daddr) && !addr6_equal(k.daddr, e->nat.daddr) &&
	    nat6_addr(skb, csum, BPF_F_PSEUDO_HDR, p->l3_off + 24, p->daddr6, e->nat.daddr) < 0)
		return PC_E_REWRITE;
	stat_inc(PC_STAT_ICMP_ERRORS_TRANSLATED);
	return PC_OK;
}

/* ct6_in_error: an ICMPv6 error about a tracked flow (packet too big for
 * path MTU discovery, above all) quotes the container's packet; the flow's
 * key is that packet's reply tuple.
 */
static __always_inline int ct6_in_error(struct __sk_buff *skb, const struct pkt *p, __u8 flags)
{
	__u32 in3 = p->l4_off + 8;
	struct ipv6hdr in;
	struct l4hdr8 l4;
	struct ct6_key k = {};

	if (bpf_skb_load_bytes(skb, in3, &in, sizeof(in)) < 0 || in.version != 6)
		return 0;
	__builtin_memcpy(k.saddr, in.daddr, 16);
	__builtin_memcpy(k.daddr, in.saddr, 16);
	k.proto = in.nexthdr;
	if (bpf_skb_load_bytes(skb, in3 + sizeof(in), &l4, sizeof(l4)) < 0)
		return 0;
	switch (in.nexthdr) {
	case IPPROTO_TCP:
	case IPPROTO_UDP:
	case IPPROTO_SCTP:
		k.sport = l4.dport;
		k.dport = l4.sport;
		break;
	case IPPROTO_ICMPV6:
		if (l4.icmp.type == ICMPV6_ECHO_REQUEST)
			k.dport = l4.icmp.id;
		break;
	}
	return ct6_in(&k, p, 0, flags);
}

#endif /* __PC_ICMP_H__ */
