/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Checksum arithmetic and where the checksums are: the Internet checksum
 * update of RFC 1624, the 16-bit words of an IPv4 header (and the TCP or UDP
 * header behind one without options) as the one-store rewrites load them,
 * the L4 header layouts, and SCTP's CRC32c. Writing packets is lib/rewrite.h.
 */
#ifndef __PC_CSUM_H__
#define __PC_CSUM_H__

#include "parse.h"
#include "crc32c.h"

/* The 16-bit words from byte 10 of an IPv4 header on, as ip_rewrite_addrs
 * and tcpudp_rewrite4 load them: checksum, source, destination, and behind
 * a header without options (20 bytes) the L4 ports, and up to the TCP or
 * UDP checksum. The _END values are the words to load.
 */
enum ip4_word {
	W_IP_CSUM = 0,   /* byte 10: the IPv4 header checksum */
	W_SADDR_LO = 1,  /* byte 12 */
	W_SADDR_HI = 2,
	W_DADDR_LO = 3,  /* byte 16 */
	W_DADDR_HI = 4,
	W_SPORT = 5,     /* byte 20: the L4 header */
	W_DPORT = 6,
	W_ADDRS_END = 5, /* checksum and addresses: 10 bytes */
	W_PORTS_END = 7, /* and the ports: 14 bytes */
	W_UDP_CSUM = 8,  /* byte 26: UDP checksum, at 6 in its header */
	W_UDP_END = 9,   /* 18 bytes */
	W_TCP_CSUM = 13, /* byte 36: TCP checksum, at 16 in its header */
	W_TCP_END = 14,  /* 28 bytes */
};

#define IP4_WORDS_OFF 10 /* the header byte W_IP_CSUM is at */

static __always_inline __u32 ports_word(__be16 sport, __be16 dport)
{
	return (__u32)sport | ((__u32)dport << 16);
}

/* csum_update32 returns an Internet checksum after the 32-bit word from
 * became to (RFC 1624, eqn. 3: HC' = ~(~HC + ~m + m')). The sum does not
 * depend on byte order, so network-order values go in as they are.
 */
static __always_inline __u16 csum_update32(__u16 check, __u32 from, __u32 to)
{
	__u32 s = (__u16)~check, nf = ~from;

	s += (nf & 0xffff) + (nf >> 16) + (to & 0xffff) + (to >> 16);
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__u16)~s;
}

/* csum_update16 is csum_update32 for a 16-bit word. */
static __always_inline __u16 csum_update16(__u16 check, __u16 from, __u16 to)
{
	__u32 s = (__u16)~check;

	s += (__u16)~from + to;
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__u16)~s;
}

/* ip4_words_set turns w, the words of enum ip4_word as loaded, into those
 * of to: the addresses with the header checksum, and with ports set the TCP
 * or UDP ports behind the header.
 */
static __always_inline void ip4_words_set(__u16 *w, const struct ct_key *to, const int ports)
{
	w[W_IP_CSUM] = csum_update32(w[W_IP_CSUM], (__u32)w[W_SADDR_LO] | (__u32)w[W_SADDR_HI] << 16, to->saddr);
	w[W_IP_CSUM] = csum_update32(w[W_IP_CSUM], (__u32)w[W_DADDR_LO] | (__u32)w[W_DADDR_HI] << 16, to->daddr);
	w[W_SADDR_LO] = to->saddr & 0xffff;
	w[W_SADDR_HI] = to->saddr >> 16;
	w[W_DADDR_LO] = to->daddr & 0xffff;
	w[W_DADDR_HI] = to->daddr >> 16;
	if (ports) {
		w[W_SPORT] = to->sport;
		w[W_DPORT] = to->dport;
	}
}

/* Offsets of the L4 checksum and of the ports (ICMP: the echo id, which
 * plays both ports per struct ct_key's rule).
 */
struct l4_layout {
	__u32 csum_off;  /* 0: no checksum to fix (SCTP: CRC32c without pseudo header) */
	__u32 sport_off;
	__u32 dport_off;
	__u64 csum_flags; /* BPF_F_MARK_MANGLED_0 for UDP: a zero checksum stays zero */
	int pseudo;       /* the checksum covers the addresses */
};

/* l4_layout fills l for proto at l4_off; 0 for a protocol without one. */
static __always_inline int l4_layout(__u8 proto, __u32 l4_off, struct l4_layout *l)
{
	l->csum_flags = 0;
	l->pseudo = 0;
	l->csum_off = 0;
	l->sport_off = l4_off;
	l->dport_off = l4_off + 2;
	switch (proto) {
	case IPPROTO_TCP:
		l->csum_off = l4_off + 16;
		l->pseudo = 1;
		return 1;
	case IPPROTO_UDP:
		l->csum_off = l4_off + 6;
		l->pseudo = 1;
		l->csum_flags = BPF_F_MARK_MANGLED_0;
		return 1;
	case IPPROTO_SCTP:
		return 1;
	case IPPROTO_ICMP:
		l->csum_off = l4_off + 2;
		l->sport_off = l4_off + 4;
		l->dport_off = l4_off + 4;
		return 1;
	}
	return 0;
}

/* l4_layout6 is l4_layout for IPv6: ICMPv6 has its echo id where ICMP has
 * it, and unlike ICMP a checksum over the pseudo header.
 */
static __always_inline int l4_layout6(__u8 proto, __u32 l4_off, struct l4_layout *l)
{
	if (proto != IPPROTO_ICMPV6)
		return l4_layout(proto, l4_off, l);
	l->csum_flags = 0;
	l->pseudo = 1;
	l->csum_off = l4_off + 2;
	l->sport_off = l4_off + 4;
	l->dport_off = l4_off + 4;
	return 1;
}

/* sctp_fix_crc follows a change of the SCTP ports (old and new: the four
 * port bytes as loaded) in the CRC32c. A CRC field of zero is left alone: a
 * local SCTP stack that leaves the CRC to offload (CHECKSUM_PARTIAL, which
 * veth passes on) writes zero there, and the CRC is computed later over the
 * bytes as we leave them; folding a delta into it would break that. (A real
 * CRC of zero is a 2^-32 case; that packet is then lost.) A fragmented
 * packet is left alone too: its CRC covers the whole datagram, whose length
 * the first fragment does not tell. Returns PC_OK or PC_E_REWRITE.
 */
static __always_inline int sctp_fix_crc(struct __sk_buff *skb, const struct pkt *p, __u32 old, __u32 new)
{
	__u32 crc;

	if (old == new || (p->flags & PKT_F_FRAG) || p->l4_len < 12)
		return PC_OK;
	if (bpf_skb_load_bytes(skb, p->l4_off + 8, &crc, 4) < 0)
		return PC_E_REWRITE;
	if (crc == 0)
		return PC_OK;
	crc ^= pc_crc32c_delta(old ^ new, p->l4_len - 4);
	return bpf_skb_store_bytes(skb, p->l4_off + 8, &crc, 4, 0) < 0 ? PC_E_REWRITE : PC_OK;
}

#endif /* __PC_CSUM_H__ */
