/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* IPv6 flow tracking. IPv6 is routed, not translated (as Docker does by
 * default), so there is nothing to rewrite; but from outside only replies of
 * flows a container opened may reach it (B12). One entry per flow, keyed by
 * the tuple its replies carry; the uplink egress program creates it, the
 * uplink ingress program admits what matches.
 *
 * Links use the same table (CT6_F_LINK): the endpoint program records the
 * flows a parent opens to its child and lets the child's replies through.
 * The flag keeps the two kinds apart, so a packet from outside that forges a
 * child's address can never ride on a link flow.
 */
#ifndef __PC_CT6_H__
#define __PC_CT6_H__

#include "nat.h"

/* ct6_reply_key: the tuple of a reply to p (p goes out). */
static __always_inline void ct6_reply_key(const struct pkt *p, struct ct6_key *k)
{
	__builtin_memcpy(k->saddr, p->daddr6, 16);
	__builtin_memcpy(k->daddr, p->saddr6, 16);
	k->sport = p->t.dport;
	k->dport = p->t.sport;
	k->proto = p->nexthdr;
	k->pad[0] = k->pad[1] = k->pad[2] = 0;
}

/* ct6_tuple: p's own tuple, the key of the flow p is a reply of. */
static __always_inline void ct6_tuple(const struct pkt *p, struct ct6_key *k)
{
	__builtin_memcpy(k->saddr, p->saddr6, 16);
	__builtin_memcpy(k->daddr, p->daddr6, 16);
	k->sport = p->t.sport;
	k->dport = p->t.dport;
	k->proto = p->nexthdr;
	k->pad[0] = k->pad[1] = k->pad[2] = 0;
}

/* ct6_track records (or refreshes) the flow of a packet that opens flows:
 * leaving a container (flags 0), or from a link's parent to its child
 * (CT6_F_LINK). Returns 0 or a drop reason.
 */
static __always_inline int ct6_track(const struct pkt *p, __u8 flags)
{
	struct ct6_entry ne = {}, *e;
	__u64 now = pc_now();
	struct ct6_key k;
	int err;

	ct6_reply_key(p, &k);
	e = bpf_map_lookup_elem(&pc_ct6, &k);
	if (e) {
		e->state = ct_next_state(e->state, 0, p);
		e->expires = now + ct_timeout_ns(p->nexthdr, e->state);
		return 0;
	}
	ne.state = ct_next_state(0, 0, p);
	ne.flags = flags;
	ne.expires = now + ct_timeout_ns(p->nexthdr, ne.state);
	err = bpf_map_update_elem(&pc_ct6, &k, &ne, BPF_NOEXIST);
	if (err && err != -EEXIST)
		return PC_DROP_CT_FULL;
	return 0;
}

/* ct6_in tells whether a packet is a reply of a tracked flow of the kind
 * flags names (0: opened to the outside, CT6_F_LINK: a link's), and
 * refreshes the flow. k is the packet's own tuple.
 */
static __always_inline int ct6_in(const struct ct6_key *k, const struct pkt *p, int refresh, __u8 flags)
{
	struct ct6_entry *e = bpf_map_lookup_elem(&pc_ct6, k);

	if (!e || (e->flags & CT6_F_LINK) != flags)
		return 0;
	if (refresh) {
		e->state = ct_next_state(e->state, 1, p);
		e->expires = pc_now() + ct_timeout_ns(p->nexthdr, e->state);
	}
	return 1;
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

#endif /* __PC_CT6_H__ */
