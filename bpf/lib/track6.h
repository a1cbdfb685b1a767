/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* IPv6 flow tracking. IPv6 is routed, not translated (as Docker does by
 * default), so there is nothing to rewrite; but from outside only replies of
 * flows a container opened may reach it (B12). One entry per flow, keyed by
 * the tuple its replies carry; the uplink egress program creates it, the
 * uplink ingress program admits what matches.
 *
 * Links use the same table (TRACK6_F_LINK): the endpoint program records the
 * flows a parent opens to its child and lets the child's replies through.
 * The flag keeps the two kinds apart, so a packet from outside that forges a
 * child's address can never ride on a link flow.
 */
#ifndef __PC_TRACK6_H__
#define __PC_TRACK6_H__

#include "pair.h"

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

_Static_assert(__builtin_offsetof(struct track6_entry, state) == 8, "track6_entry: state opens an aligned 64-bit word");

/* ct6_refresh records what p (reverse: a reply) says about the flow of e
 * and pushes its deadline. Both ways of a flow write the one entry, from
 * two CPUs at times: new bits are added with an atomic OR, as pair_touch
 * does, so crossing FINs both stay; a new SYN on a closed tuple clears it.
 */
static __always_inline void ct6_refresh(struct track6_entry *e, int reverse, const struct pkt *p, __u64 now)
{
	__u8 old = e->state, st = ct_next_state(old, reverse, p);

	if (st & ~old & 0xff)
		st = state_or((__u64 *)&e->state, 0, st);
	else if (st != old)
		e->state = st;
	e->expires = now + ct_timeout_ns(p->nexthdr, st);
}

/* ct6_track records (or refreshes) the flow of a packet that opens flows:
 * leaving a container (flags 0), or from a link's parent to its child
 * (TRACK6_F_LINK). Returns 0 or a drop reason.
 */
static __always_inline int ct6_track(const struct pkt *p, __u8 flags)
{
	struct track6_entry ne = {}, *e;
	__u64 now = pc_now();
	struct ct6_key k;
	int err;

	ct6_reply_key(p, &k);
	e = bpf_map_lookup_elem(&pc_track6, &k);
	if (e) {
		ct6_refresh(e, 0, p, now);
		return 0;
	}
	ne.state = ct_next_state(0, 0, p);
	ne.flags = flags;
	ne.expires = now + ct_timeout_ns(p->nexthdr, ne.state);
	err = bpf_map_update_elem(&pc_track6, &k, &ne, BPF_NOEXIST);
	if (err && err != -EEXIST)
		return PC_DROP_CONNTRACK_FULL;
	return 0;
}

/* ct6_in tells whether a packet is a reply of a tracked flow of the kind
 * flags names (0: opened to the outside, TRACK6_F_LINK: a link's), and
 * refreshes the flow. k is the packet's own tuple.
 */
static __always_inline int ct6_in(const struct ct6_key *k, const struct pkt *p, int refresh, __u8 flags)
{
	struct track6_entry *e = bpf_map_lookup_elem(&pc_track6, k);

	if (!e || (e->flags & TRACK6_F_LINK) != flags)
		return 0;
	if (refresh)
		ct6_refresh(e, 1, p, pc_now());
	return 1;
}

#endif /* __PC_TRACK6_H__ */
