/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Rewriting a packet's tuple, IPv4 and IPv6, with every checksum that
 * covers it. Two strategies for TCP and UDP over IPv4: computed here and
 * written with the headers in one store (PC_CFG_CSUM_DIRECT), or
 * bpf_l4_csum_replace per changed field (older kernels, HelperChecksums);
 * see bpf/README.md, "Checksums". Every function returns PC_OK or
 * PC_E_REWRITE (a helper failed).
 */
#ifndef __PC_REWRITE_H__
#define __PC_REWRITE_H__

#include "csum.h"

/* ip_rewrite_addrs writes the IPv4 addresses of to, with the header
 * checksum, in one store: checksum, source and destination are the
 * contiguous bytes 10 to 19 of the header. With ports set it writes the
 * TCP or UDP ports of to as well, bytes 20 to 23 when the header has no
 * options. (bpf_l3_csum_replace and a store per field cost a helper call
 * each, about 15 ns on a mitigated CPU.) The header's bytes sum the same
 * before and after, so a CHECKSUM_COMPLETE skb->csum stays right; the L4
 * checksum is the caller's.
 */
static __always_inline int ip_rewrite_addrs(struct __sk_buff *skb, __u32 ip, const struct ct_key *to, const int ports)
{
	/* enum ip4_word, as on the wire */
	__u16 w[W_PORTS_END] __attribute__((aligned(8)));
	const __u32 len = 2 * (ports ? W_PORTS_END : W_ADDRS_END);

	if (pkt_load(skb, ip + IP4_WORDS_OFF, w, len) < 0)
		return PC_E_REWRITE;
	ip4_words_set(w, to, ports);
	return bpf_skb_store_bytes(skb, ip + IP4_WORDS_OFF, w, len, 0) < 0 ? PC_E_REWRITE : PC_OK;
}

/* tcpudp_rewrite4 writes the addresses and ports of to into a TCP or UDP
 * packet whose IP header has no options, with both checksums, in one
 * store: the words of enum ip4_word up to end, which covers, for TCP, the
 * sequence and acknowledgement numbers, offset and flags and window on the
 * way to its checksum (cks, the checksum's word). The L4 checksum is
 * updated as bpf_l4_csum_replace would: a partial one (the pseudo header's
 * sum, CHECKSUM_PARTIAL) takes the change of the addresses only, the
 * device summing the ports with the rest; a full one takes the addresses
 * and the ports, a UDP checksum of zero (none) stays zero and a computed
 * zero is sent as 0xffff. BPF_F_RECOMPUTE_CSUM keeps a CHECKSUM_COMPLETE
 * skb->csum right: it is a sum of the packet's bytes, and the changes here
 * do not cancel out (the pseudo header is not in the packet).
 */
static __always_inline int tcpudp_rewrite4(struct __sk_buff *skb, __u32 ip, const struct ct_key *to,
					   const __u32 end, const __u32 cks, const int udp)
{
	__u16 w[W_TCP_END] __attribute__((aligned(8)));
	__u32 olds, oldd, oldp, newp = ports_word(to->sport, to->dport);
	__u32 partial = skb_csum_partial(skb);
	/* All ones for a partial checksum: it is a plain sum, which the
	 * update for a complemented one handles when complemented before and
	 * after. Its ports do not change (newp is oldp then).
	 */
	__u16 inv = 0xffff * partial, ck;

	if (pkt_load(skb, ip + IP4_WORDS_OFF, w, 2 * end) < 0)
		return PC_E_REWRITE;
	olds = (__u32)w[W_SADDR_LO] | (__u32)w[W_SADDR_HI] << 16;
	oldd = (__u32)w[W_DADDR_LO] | (__u32)w[W_DADDR_HI] << 16;
	oldp = (__u32)w[W_SPORT] | (__u32)w[W_DPORT] << 16;
	ck = w[cks];
	if (!(udp && ck == 0)) {
		ck ^= inv;
		ck = csum_update32(csum_update32(ck, olds, to->saddr), oldd, to->daddr);
		ck = csum_update32(ck, oldp, newp ^ ((newp ^ oldp) * partial)) ^ inv;
		if (udp && ck == 0)
			ck = 0xffff;
	}
	w[cks] = ck;
	ip4_words_set(w, to, 1);
	return bpf_skb_store_bytes(skb, ip + IP4_WORDS_OFF, w, 2 * end, BPF_F_RECOMPUTE_CSUM) < 0 ? PC_E_REWRITE
												   : PC_OK;
}

/* nat_rewrite4 turns the packet's tuple from into to: addresses with the IP
 * checksum and (pseudo header) the L4 checksum, ports when the L4 header is in
 * this packet, with SCTP's CRC32c. Non-first fragments only get their
 * addresses changed; the datagram's L4 checksum was fixed in the first
 * fragment, and the pseudo header delta does not depend on where the payload
 * is. TCP and UDP behind a header without options go through
 * tcpudp_rewrite4 when the programs can read the skb's checksum state
 * (PC_CFG_CSUM_DIRECT); everything else, and everything on older kernels,
 * through bpf_l4_csum_replace, which knows how to update the checksum for
 * each kind of skb checksum (CHECKSUM_PARTIAL from veth, above all).
 */
static __always_inline int nat_rewrite4(struct __sk_buff *skb, const struct pkt *p, const struct ct_key *from,
					const struct ct_key *to)
{
	struct l4_layout l = {};
	int l4 = (p->flags & PKT_F_L4) && l4_layout(from->proto, p->l4_off, &l);
	int addrs = from->saddr != to->saddr || from->daddr != to->daddr;
	__u32 ip = p->l3_off;

	/* The common case, TCP or UDP behind a header without options. */
	if ((CONFIG.flags & PC_CFG_CSUM_DIRECT) && l4 && l.pseudo && p->l4_off == ip + 20) {
		if (from->proto == IPPROTO_TCP)
			return tcpudp_rewrite4(skb, ip, to, W_TCP_END, W_TCP_CSUM, 0);
		return tcpudp_rewrite4(skb, ip, to, W_UDP_END, W_UDP_CSUM, 1);
	}
	if (l4 && l.pseudo && from->saddr != to->saddr &&
	    bpf_l4_csum_replace(skb, l.csum_off, from->saddr, to->saddr, l.csum_flags | BPF_F_PSEUDO_HDR | 4) < 0)
		return PC_E_REWRITE;
	if (l4 && l.pseudo && from->daddr != to->daddr &&
	    bpf_l4_csum_replace(skb, l.csum_off, from->daddr, to->daddr, l.csum_flags | BPF_F_PSEUDO_HDR | 4) < 0)
		return PC_E_REWRITE;
	if (!l4)
		return addrs ? ip_rewrite_addrs(skb, ip, to, 0) : PC_OK;
	if (l.csum_off && from->sport != to->sport &&
	    bpf_l4_csum_replace(skb, l.csum_off, from->sport, to->sport, l.csum_flags | 2) < 0)
		return PC_E_REWRITE;
	if (l.csum_off && from->dport != to->dport &&
	    bpf_l4_csum_replace(skb, l.csum_off, from->dport, to->dport, l.csum_flags | 2) < 0)
		return PC_E_REWRITE;
	/* The common case, an address and a port of TCP or UDP behind a
	 * header without options: one store for all of them.
	 */
	if (addrs && l.pseudo && p->l4_off == ip + 20)
		return ip_rewrite_addrs(skb, ip, to, 1);
	if (addrs && ip_rewrite_addrs(skb, ip, to, 0) < 0)
		return PC_E_REWRITE;
	if (from->sport != to->sport && bpf_skb_store_bytes(skb, l.sport_off, &to->sport, 2, 0) < 0)
		return PC_E_REWRITE;
	if (from->dport != to->dport && bpf_skb_store_bytes(skb, l.dport_off, &to->dport, 2, 0) < 0)
		return PC_E_REWRITE;
	if (from->proto == IPPROTO_SCTP)
		return sctp_fix_crc(skb, p, ports_word(from->sport, from->dport), ports_word(to->sport, to->dport));
	return PC_OK;
}

/* nat6_addr replaces the 16-byte address at off and, when csum_off is set,
 * follows the change in the checksum there (flags: BPF_F_PSEUDO_HDR when
 * it covers the address through the pseudo header). IPv6 has no header
 * checksum.
 */
static __always_inline int nat6_addr(struct __sk_buff *skb, __u32 csum_off, __u64 flags, __u32 off, const __u8 *from,
				     const __u8 *to)
{
	if (csum_off) {
		__s64 d = bpf_csum_diff((__be32 *)from, 16, (__be32 *)to, 16, 0);

		if (d < 0 || bpf_l4_csum_replace(skb, csum_off, 0, d, flags) < 0)
			return PC_E_REWRITE;
	}
	return bpf_skb_store_bytes(skb, off, to, 16, 0) < 0 ? PC_E_REWRITE : PC_OK;
}

/* nat6_rewrite turns the packet's tuple from into to, as nat_rewrite4 does
 * for IPv4 (with the helpers: IPv6 translations are not on the fast path
 * the one-store rewrite was made for).
 */
static __always_inline int nat6_rewrite(struct __sk_buff *skb, const struct pkt *p, const struct ct6_key *from,
					const struct ct6_key *to)
{
	struct l4_layout l = {};
	int l4 = (p->flags & PKT_F_L4) && l4_layout6(from->proto, p->l4_off, &l);
	__u32 co = l4 && l.pseudo ? l.csum_off : 0;
	__u64 fl = l.csum_flags | BPF_F_PSEUDO_HDR;

	if (!addr6_equal(from->saddr, to->saddr) && nat6_addr(skb, co, fl, p->l3_off + 8, from->saddr, to->saddr) < 0)
		return PC_E_REWRITE;
	if (!addr6_equal(from->daddr, to->daddr) && nat6_addr(skb, co, fl, p->l3_off + 24, from->daddr, to->daddr) < 0)
		return PC_E_REWRITE;
	if (!l4)
		return PC_OK;
	if (from->sport != to->sport) {
		if (l.csum_off && bpf_l4_csum_replace(skb, l.csum_off, from->sport, to->sport, l.csum_flags | 2) < 0)
			return PC_E_REWRITE;
		if (bpf_skb_store_bytes(skb, l.sport_off, &to->sport, 2, 0) < 0)
			return PC_E_REWRITE;
	}
	if (from->dport != to->dport) {
		if (l.csum_off && bpf_l4_csum_replace(skb, l.csum_off, from->dport, to->dport, l.csum_flags | 2) < 0)
			return PC_E_REWRITE;
		if (bpf_skb_store_bytes(skb, l.dport_off, &to->dport, 2, 0) < 0)
			return PC_E_REWRITE;
	}
	if (from->proto == IPPROTO_SCTP)
		return sctp_fix_crc(skb, p, ports_word(from->sport, from->dport), ports_word(to->sport, to->dport));
	return PC_OK;
}

#endif /* __PC_REWRITE_H__ */
