/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Packet parsing into struct pkt. Everything is copied into the stack by
 * pkt_load: straight from the skb's linear data when the bytes are there,
 * with bpf_skb_load_bytes when they are not (GRO/GSO, paged data). Either way
 * the parsed copy lives on the stack, so the verifier sees one state after
 * each read, and no packet pointer outlives it. Writes go through
 * bpf_skb_store_bytes and the checksum helpers, addressed by offset: direct
 * packet writes would make the kernel unclone every cloned skb at program
 * entry (TCP's own packets are clones), modified or not.
 */
#ifndef __PC_PARSE_H__
#define __PC_PARSE_H__

#include "maps.h"

/* pkt_load copies len (a constant) bytes at offset off of the frame into
 * to, which must be aligned to 8 bytes when len is 8 or more. Returns 0, or
 * -1 when the frame is shorter.
 *
 * The direct read is the common case and the reason this exists: on a CPU
 * with return-stack mitigations (retpolines, SRSO) every helper call costs
 * 15 to 20 ns, and an established packet's whole budget is about 100. The
 * copy goes by 8, 4, 2 and 1 bytes: packet loads may be unaligned where the
 * architecture allows it (x86, arm64: the verifier checks packet alignment
 * only where it does not), stack stores may not.
 */
/* skb_ptr reads skb->data or skb->data_end. Plain C lets clang compute
 * ctx + 76 once and load both fields through it, and the verifier refuses
 * any access through a modified context pointer; the asm keeps each load
 * at its own constant offset from the context.
 */
#define skb_ptr(skb, field)                                                                    \
	({                                                                                     \
		void *__p;                                                                     \
		asm volatile("%[p] = *(u32 *)(%[ctx] + %[off])"                                \
			     : [p] "=r"(__p)                                                   \
			     : [ctx] "r"(skb), [off] "i"(__builtin_offsetof(struct __sk_buff, field))); \
		__p;                                                                           \
	})

static __always_inline int pkt_load(struct __sk_buff *skb, __u32 off, void *to, const __u32 len)
{
	void *data = skb_ptr(skb, data);
	void *end = skb_ptr(skb, data_end);
	__u32 i = 0;

	/* The bound on off lets the verifier track data + off + len (it gives
	 * up on packet offsets that may pass 0xffff); headers are never that far.
	 */
	if (off > 0x3fff || data + off + len > end)
		/* 0 or -1, as below: the verifier's states after the two ways
		 * through agree, and it prunes the rest of the program.
		 */
		return bpf_skb_load_bytes(skb, off, to, len) < 0 ? -1 : 0;
	data += off;
#pragma unroll
	for (; i + 8 <= len; i += 8)
		*(__u64 *)(to + i) = *(const __u64 *)(data + i);
	if (i + 4 <= len) {
		*(__u32 *)(to + i) = *(const __u32 *)(data + i);
		i += 4;
	}
	if (i + 2 <= len) {
		*(__u16 *)(to + i) = *(const __u16 *)(data + i);
		i += 2;
	}
	if (i + 1 <= len)
		*(__u8 *)(to + i) = *(const __u8 *)(data + i);
	return 0;
}

enum parse_result {
	PARSE_OK = 0,
	PARSE_TRUNCATED = 1, /* shorter than its headers say */
	PARSE_BAD = 2,       /* bad version, IHL or length */
};

#define PKT_F_FRAG (1U << 0)      /* a fragment (first or not) */
#define PKT_F_NONFIRST (1U << 1)  /* not the first fragment: no L4 header here */
#define PKT_F_PORTS (1U << 2)     /* sport/dport are known (from L4 or frag map) */
#define PKT_F_L4 (1U << 3)        /* the L4 header is in this packet (rewritable) */
#define PKT_F_ICMP_ERR (1U << 4)  /* ICMP error: the flow is in the inner header */

struct pkt {
	__u32 ifindex;            /* skb->ifindex, read once at entry */
	__u32 l3_off;
	__u32 l4_off;
	__u16 eth_proto;          /* host byte order */
	__u8 flags;               /* PKT_F_* */
	__u8 tcp_flags;
	__u8 src_mac[ETH_ALEN];
	__u8 dst_mac[ETH_ALEN];
	struct ct_key t;          /* IPv4 tuple (ports per struct ct_key's rule) */
	__be16 ip_id;
	__u8 icmp_type;
	__u8 icmp_code;
	/* IPv6 */
	__u8 saddr6[16];
	__u8 daddr6[16];
	__u8 nexthdr;
	__u8 pad;
	__u16 l4_len;             /* bytes from l4_off to the end of the IP packet */
};

static __always_inline int parse_eth(struct __sk_buff *skb, struct pkt *p)
{
	struct ethhdr eth __attribute__((aligned(8)));

	if (pkt_load(skb, 0, &eth, sizeof(eth)) < 0)
		return PARSE_TRUNCATED;
	__builtin_memcpy(p->src_mac, eth.h_source, ETH_ALEN);
	__builtin_memcpy(p->dst_mac, eth.h_dest, ETH_ALEN);
	p->eth_proto = bpf_ntohs(eth.h_proto);
	p->l3_off = ETH_HLEN;
	return PARSE_OK;
}

static __always_inline int icmp_is_error(__u8 type)
{
	return type == ICMP_DEST_UNREACH || type == ICMP_TIME_EXCEEDED ||
	       type == ICMP_PARAMETERPROB;
}

/* Ports of an L4 header, with ICMP echo ids mapped onto them. */
static __always_inline void l4_ports(__u8 proto, const struct l4hdr8 *l4, __be16 *sport, __be16 *dport)
{
	*sport = 0;
	*dport = 0;
	switch (proto) {
	case IPPROTO_TCP:
	case IPPROTO_UDP:
	case IPPROTO_SCTP:
		*sport = l4->sport;
		*dport = l4->dport;
		break;
	case IPPROTO_ICMP:
		if (l4->icmp.type == ICMP_ECHO)
			*sport = l4->icmp.id;
		else if (l4->icmp.type == ICMP_ECHOREPLY)
			*dport = l4->icmp.id;
		break;
	}
}

/* Bytes of L4 header that must be present for the protocol's ports and
 * checksum to be rewritten.
 */
static __always_inline __u32 l4_min_len(__u8 proto)
{
	switch (proto) {
	case IPPROTO_TCP:
		return 20;
	case IPPROTO_UDP:
	case IPPROTO_ICMP:
		return 8;
	case IPPROTO_SCTP:
		return 12;
	}
	return 0;
}

/* parse_ipv4 fills p->t and the L4 fields. Non-first fragments take their
 * ports from pc_frags (PKT_F_PORTS stays clear when the first fragment was not
 * seen: the caller decides); first fragments of a fragmented datagram record
 * theirs there.
 */
static __always_inline int parse_ipv4(struct __sk_buff *skb, struct pkt *p)
{
	struct iphdr ip __attribute__((aligned(8)));
	struct l4hdr8 l4 __attribute__((aligned(8)));
	__u32 hlen, tot, need;
	__u16 fo;

	if (pkt_load(skb, p->l3_off, &ip, sizeof(ip)) < 0)
		return PARSE_TRUNCATED;
	if (ip.version != 4 || ip.ihl < 5)
		return PARSE_BAD;
	hlen = ip.ihl * 4;
	tot = bpf_ntohs(ip.tot_len);
	if (tot < hlen)
		return PARSE_BAD;
	if (p->l3_off + tot > skb->len)
		return PARSE_TRUNCATED;

	p->l4_off = p->l3_off + hlen;
	p->l4_len = tot - hlen;
	p->t.saddr = ip.saddr;
	p->t.daddr = ip.daddr;
	p->t.proto = ip.protocol;
	p->ip_id = ip.id;

	fo = bpf_ntohs(ip.frag_off);
	if (fo & (IP_MF | IP_OFFSET))
		p->flags |= PKT_F_FRAG;
	if (fo & IP_OFFSET) {
		struct frag_key fk = { .saddr = ip.saddr, .daddr = ip.daddr, .id = ip.id, .proto = ip.protocol };
		struct frag_ports *fp;

		p->flags |= PKT_F_NONFIRST;
		fp = bpf_map_lookup_elem(&pc_frags, &fk);
		if (fp) {
			p->t.sport = fp->sport;
			p->t.dport = fp->dport;
			p->flags |= PKT_F_PORTS;
		} else if (!l4_min_len(ip.protocol)) {
			p->flags |= PKT_F_PORTS; /* protocol without ports */
		}
		return PARSE_OK;
	}

	need = l4_min_len(ip.protocol);
	if (need) {
		if (hlen + need > tot)
			return PARSE_TRUNCATED;
		if (pkt_load(skb, p->l4_off, &l4, sizeof(l4)) < 0)
			return PARSE_TRUNCATED;
		l4_ports(ip.protocol, &l4, &p->t.sport, &p->t.dport);
		p->flags |= PKT_F_L4;
		if (ip.protocol == IPPROTO_TCP) {
			__u8 fl;

			if (pkt_load(skb, p->l4_off + 13, &fl, 1) < 0)
				return PARSE_TRUNCATED;
			p->tcp_flags = fl;
		}
		if (ip.protocol == IPPROTO_ICMP) {
			p->icmp_type = l4.icmp.type;
			p->icmp_code = l4.icmp.code;
			if (icmp_is_error(l4.icmp.type))
				p->flags |= PKT_F_ICMP_ERR;
		}
	}
	p->flags |= PKT_F_PORTS;

	if (fo & IP_MF) {
		struct frag_key fk = { .saddr = ip.saddr, .daddr = ip.daddr, .id = ip.id, .proto = ip.protocol };
		struct frag_ports fp = { .sport = p->t.sport, .dport = p->t.dport };

		bpf_map_update_elem(&pc_frags, &fk, &fp, BPF_ANY);
	}
	return PARSE_OK;
}

/* IPv6 extension headers (RFC 8200 4.1) the walk steps over. */
#define IPPROTO_HOPOPTS 0
#define IPPROTO_ROUTING 43
#define IPPROTO_FRAGMENT 44
#define IPPROTO_DSTOPTS 60
#define IP6_FRAG_OFFSET 0xfff8 /* of the fragment header's frag_off, host order */
#define IP6_FRAG_MF 0x0001
/* Headers walked at most; a chain that is longer is refused. */
#define IP6_MAX_EXT 6

static __always_inline int ip6_is_ext(__u8 next)
{
	return next == IPPROTO_HOPOPTS || next == IPPROTO_ROUTING || next == IPPROTO_FRAGMENT ||
	       next == IPPROTO_DSTOPTS;
}

/* ip6_walk is what pc_ip6_walk is given and finds. */
struct ip6_walk {
	__u32 off;       /* in: the first extension header; out: what follows the last */
	__u32 end;       /* the end of the IP packet */
	__u8 next;       /* in: the IPv6 header's next header; out: the one after the last */
	__u8 frag;       /* out: there is a fragment header */
	__u8 frag_next;  /* out: its next header, the same in every fragment */
	__u8 pad;
	__u16 frag_off;  /* out: its offset and M flag, host order */
	__u16 pad2;
	__be32 frag_id;  /* out: its identification */
};

/* pc_ip6_walk steps over the extension headers: hop-by-hop, routing,
 * destination options, fragment. In a later fragment what follows the
 * fragment header is payload, so the walk stops there. A global function,
 * which the verifier checks once on its own: the caller goes on with one
 * state whatever the chain was, instead of the rest of the program being
 * walked once for every way through this loop. Returns 0, or -1 when a
 * header is cut short or the chain is longer than IP6_MAX_EXT (a packet
 * whose protocol cannot be found must not be judged as another).
 */
__attribute__((noinline)) int pc_ip6_walk(struct __sk_buff *skb, struct ip6_walk *w)
{
	__u8 h[8];
	__u32 i, off, next;

	if (!w)
		return -1;
	off = w->off;
	next = w->next;
	for (i = 0; i < IP6_MAX_EXT && ip6_is_ext(next); i++) {
		if (off + sizeof(h) > w->end || bpf_skb_load_bytes(skb, off, h, sizeof(h)) < 0)
			return -1;
		if (next != IPPROTO_FRAGMENT) {
			next = h[0];
			off += (h[1] + 1) * 8;
			continue;
		}
		next = h[0];
		off += sizeof(h);
		w->frag = 1;
		w->frag_next = h[0];
		w->frag_off = ((__u16)h[2] << 8) | h[3];
		__builtin_memcpy(&w->frag_id, h + 4, 4);
		if (w->frag_off & IP6_FRAG_OFFSET)
			break;
	}
	if (off > w->end || (ip6_is_ext(next) && !(w->frag_off & IP6_FRAG_OFFSET)))
		return -1;
	w->off = off;
	w->next = next;
	return 0;
}

static __always_inline void frag6_key_of(struct frag6_key *k, const struct ip6_walk *w, const struct pkt *p)
{
	__builtin_memcpy(k->saddr, p->saddr6, 16);
	__builtin_memcpy(k->daddr, p->daddr6, 16);
	k->id = w->frag_id;
	k->proto = w->frag_next;
	k->pad[0] = k->pad[1] = k->pad[2] = 0;
}

/* parse_ipv6_later: p is a later fragment, which has no upper-layer
 * header. It takes the ports and protocol its first fragment recorded in
 * pc_frags6; PKT_F_PORTS stays clear when the first was not seen: the
 * caller decides, as for IPv4.
 */
static __always_inline int parse_ipv6_later(const struct ip6_walk *w, struct pkt *p)
{
	struct frag6_ports *fp;
	struct frag6_key fk;

	p->flags |= PKT_F_FRAG | PKT_F_NONFIRST;
	frag6_key_of(&fk, w, p);
	fp = bpf_map_lookup_elem(&pc_frags6, &fk);
	if (fp) {
		p->t.sport = fp->sport;
		p->t.dport = fp->dport;
		p->nexthdr = fp->proto;
		p->t.proto = fp->proto;
		p->flags |= PKT_F_PORTS;
	}
	return PARSE_OK;
}

/* parse_ipv6_first: p is the first fragment; its ports and protocol are
 * recorded for the later ones.
 */
static __always_inline int parse_ipv6_first(const struct ip6_walk *w, struct pkt *p)
{
	struct frag6_ports v = { .sport = p->t.sport, .dport = p->t.dport, .proto = p->nexthdr };
	struct frag6_key fk;

	p->flags |= PKT_F_FRAG;
	if (w->frag_off & IP6_FRAG_MF) {
		frag6_key_of(&fk, w, p);
		bpf_map_update_elem(&pc_frags6, &fk, &v, BPF_ANY);
	}
	return PARSE_OK;
}

static __always_inline int parse_ipv6(struct __sk_buff *skb, struct pkt *p)
{
	struct ipv6hdr ip6 __attribute__((aligned(8)));
	struct l4hdr8 l4 __attribute__((aligned(8)));
	struct ip6_walk w = {};
	__u32 end;
	__u8 next;

	if (pkt_load(skb, p->l3_off, &ip6, sizeof(ip6)) < 0)
		return PARSE_TRUNCATED;
	if (ip6.version != 6)
		return PARSE_BAD;
	__builtin_memcpy(p->saddr6, ip6.saddr, 16);
	__builtin_memcpy(p->daddr6, ip6.daddr, 16);
	p->l4_off = p->l3_off + sizeof(ip6);
	end = p->l4_off + bpf_ntohs(ip6.payload_len);
	next = ip6.nexthdr;
	/* Extension headers: hop-by-hop (MLD reports carry one), routing,
	 * destination options, fragment. Walked out of line: most packets
	 * have none.
	 */
	if (ip6_is_ext(next)) {
		w.off = p->l4_off;
		w.end = end;
		w.next = next;
		if (pc_ip6_walk(skb, &w) < 0 || w.off > end)
			return PARSE_BAD;
		p->l4_off = w.off;
		next = w.next;
	}
	p->l4_len = end - p->l4_off;
	p->nexthdr = next;
	p->t.proto = next;
	if (w.frag && (w.frag_off & IP6_FRAG_OFFSET))
		return parse_ipv6_later(&w, p);
	switch (next) {
	case IPPROTO_TCP:
	case IPPROTO_UDP:
	case IPPROTO_SCTP:
		if (pkt_load(skb, p->l4_off, &l4, sizeof(l4)) < 0)
			return PARSE_TRUNCATED;
		p->t.sport = l4.sport;
		p->t.dport = l4.dport;
		p->flags |= PKT_F_PORTS | PKT_F_L4;
		if (next == IPPROTO_TCP && pkt_load(skb, p->l4_off + 13, &p->tcp_flags, 1) < 0)
			return PARSE_TRUNCATED;
		break;
	case IPPROTO_ICMPV6:
		if (pkt_load(skb, p->l4_off, &l4, sizeof(l4)) < 0)
			return PARSE_TRUNCATED;
		p->icmp_type = l4.icmp.type;
		p->icmp_code = l4.icmp.code;
		p->flags |= PKT_F_L4 | PKT_F_PORTS;
		/* Echo ids play the ports, as for IPv4. */
		if (l4.icmp.type == ICMPV6_ECHO_REQUEST)
			p->t.sport = l4.icmp.id;
		else if (l4.icmp.type == ICMPV6_ECHO_REPLY)
			p->t.dport = l4.icmp.id;
		else if (l4.icmp.type < 128)
			p->flags |= PKT_F_ICMP_ERR;
		break;
	}
	if (w.frag)
		return parse_ipv6_first(&w, p);
	return PARSE_OK;
}
static __always_inline void addr4_key(struct addr_key *k, __be32 a)
{
	__builtin_memset(k, 0, sizeof(*k));
	k->family = AF_INET;
	__builtin_memcpy(k->addr, &a, 4);
}

static __always_inline void addr6_key(struct addr_key *k, const __u8 *a)
{
	k->family = AF_INET6;
	__builtin_memcpy(k->addr, a, 16);
}

static __always_inline __u32 *subnet_lookup4(__be32 a)
{
	struct subnet_key k = { .prefixlen = 32 + 32, .family = AF_INET };

	__builtin_memcpy(k.addr, &a, 4);
	return bpf_map_lookup_elem(&pc_subnets, &k);
}

static __always_inline __u32 *subnet_lookup6(const __u8 *a)
{
	struct subnet_key k = { .prefixlen = 32 + 128, .family = AF_INET6 };

	__builtin_memcpy(k.addr, a, 16);
	return bpf_map_lookup_elem(&pc_subnets, &k);
}

static __always_inline int addr6_equal(const __u8 *a, const __u8 *b)
{
	const __u32 *x = (const __u32 *)a, *y = (const __u32 *)b;

	return ((x[0] ^ y[0]) | (x[1] ^ y[1]) | (x[2] ^ y[2]) | (x[3] ^ y[3])) == 0;
}

static __always_inline int addr6_is_zero(const __u8 *a)
{
	const __u32 *x = (const __u32 *)a;

	return (x[0] | x[1] | x[2] | x[3]) == 0;
}

static __always_inline int addr6_is_loopback(const __u8 *a)
{
	const __u32 *x = (const __u32 *)a;

	return (x[0] | x[1] | x[2]) == 0 && x[3] == bpf_htonl(1);
}

#endif /* __PC_PARSE_H__ */
