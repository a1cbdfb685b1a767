/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Packet parsing into struct pkt. Everything is read with bpf_skb_load_bytes
 * into the stack: it works on non-linear skbs (GRO/GSO, paged data) and keeps
 * the verifier free of packet-pointer range checks. Writes go through
 * bpf_skb_store_bytes and the checksum helpers, addressed by offset, so no
 * packet pointer has to be revalidated after a helper call.
 */
#ifndef __PC_PARSE_H__
#define __PC_PARSE_H__

#include "maps.h"

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
	struct ethhdr eth;

	if (bpf_skb_load_bytes(skb, 0, &eth, sizeof(eth)) < 0)
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
	struct iphdr ip;
	struct l4hdr8 l4;
	__u32 hlen, tot, need;
	__u16 fo;

	if (bpf_skb_load_bytes(skb, p->l3_off, &ip, sizeof(ip)) < 0)
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
		if (bpf_skb_load_bytes(skb, p->l4_off, &l4, sizeof(l4)) < 0)
			return PARSE_TRUNCATED;
		l4_ports(ip.protocol, &l4, &p->t.sport, &p->t.dport);
		p->flags |= PKT_F_L4;
		if (ip.protocol == IPPROTO_TCP) {
			__u8 fl;

			if (bpf_skb_load_bytes(skb, p->l4_off + 13, &fl, 1) < 0)
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

static __always_inline int parse_ipv6(struct __sk_buff *skb, struct pkt *p)
{
	struct ipv6hdr ip6;
	struct l4hdr8 l4;

	if (bpf_skb_load_bytes(skb, p->l3_off, &ip6, sizeof(ip6)) < 0)
		return PARSE_TRUNCATED;
	if (ip6.version != 6)
		return PARSE_BAD;
	__builtin_memcpy(p->saddr6, ip6.saddr, 16);
	__builtin_memcpy(p->daddr6, ip6.daddr, 16);
	p->l4_off = p->l3_off + sizeof(ip6);
	/* One hop-by-hop header is skipped: MLD reports carry one (router
	 * alert). Other extension headers are not walked: policy only needs
	 * ports for links, and a link match on an unknown header fails closed.
	 */
	if (ip6.nexthdr == 0) {
		__u8 hbh[2];

		if (bpf_skb_load_bytes(skb, p->l4_off, hbh, 2) < 0)
			return PARSE_TRUNCATED;
		ip6.nexthdr = hbh[0];
		p->l4_off += (hbh[1] + 1) * 8;
	}
	if (p->l4_off - p->l3_off - sizeof(ip6) > bpf_ntohs(ip6.payload_len))
		return PARSE_BAD;
	p->l4_len = bpf_ntohs(ip6.payload_len) - (p->l4_off - p->l3_off - sizeof(ip6));
	p->nexthdr = ip6.nexthdr;
	switch (ip6.nexthdr) {
	case IPPROTO_TCP:
	case IPPROTO_UDP:
	case IPPROTO_SCTP:
		if (bpf_skb_load_bytes(skb, p->l4_off, &l4, sizeof(l4)) < 0)
			return PARSE_TRUNCATED;
		p->t.sport = l4.sport;
		p->t.dport = l4.dport;
		p->flags |= PKT_F_PORTS | PKT_F_L4;
		if (ip6.nexthdr == IPPROTO_TCP && bpf_skb_load_bytes(skb, p->l4_off + 13, &p->tcp_flags, 1) < 0)
			return PARSE_TRUNCATED;
		break;
	case IPPROTO_ICMPV6:
		if (bpf_skb_load_bytes(skb, p->l4_off, &l4, sizeof(l4)) < 0)
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
	p->t.proto = ip6.nexthdr;
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

#endif /* __PC_PARSE_H__ */
