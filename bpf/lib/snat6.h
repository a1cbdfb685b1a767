/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* IPv6 masquerade (B1 over IPv6, as Docker 27+ does with ip6tables): the
 * IPv6 traffic a container on a network with masquerade opens leaves
 * through an uplink from that uplink's IPv6 address, as IPv4 does
 * (lib/ct4.h). The pairs live in pc_flows6 beside the published-port ones
 * (lib/nat6.h), so a masqueraded flow can never take the reply tuple of a
 * published-port flow, nor the reverse: both are reserved in one table.
 * The forward half (HOOK_UPLINK_EGRESS) is keyed by the container's
 * packet, the reverse half (HOOK_UPLINK_INGRESS) by the reply as it
 * arrives; nat6_uplink_in translates replies, nat6_icmp_error the ICMPv6
 * errors about the flow both ways (B5).
 */
#ifndef __PC_SNAT6_H__
#define __PC_SNAT6_H__

#include "nat6.h"

/* snat6_new_flow masquerades the first packet of a container's flow (its
 * tuple k) leaving through uplink p->ifindex: the pair, with a free source
 * port picked as for IPv4, and the packet rewritten. Returns PC_OK or a
 * PC_DROP_* reason.
 */
static __always_inline int snat6_new_flow(struct __sk_buff *skb, const struct pkt *p, const struct ct6_key *k)
{
	struct ct_new n = { .flags = CT_F_SNAT, .hooks_fwd = HOOK_UPLINK_EGRESS, .hooks_rev = HOOK_UPLINK_INGRESS };
	__u32 ifindex = p->ifindex, zero = 0;
	struct pair_resv *r;
	struct uplink *up;

	up = bpf_map_lookup_elem(&pc_uplinks, &ifindex);
	if (!up || addr6_is_zero(up->addr6))
		return PC_DROP_NO_SNAT_ADDRESS;
	r = bpf_map_lookup_elem(&pc_pair_scratch, &zero);
	if (!r)
		return PC_DROP_CONNTRACK_FULL; /* an array's one element: never */
	r->v6.nat = *k;
	__builtin_memcpy(r->v6.nat.saddr, up->addr6, 16);
	n.pick_port = can_pick_port6(p);
	return nat6_first(skb, p, k, &r->v6.nat, nat6_create(r, k, &n), CT_F_SNAT, HOOK_UPLINK_EGRESS);
}

/* ct6_routed says whether p belongs to a flow tracked untranslated in
 * pc_track6: one opened before its network masqueraded IPv6 (an agent that
 * routed it, before an upgrade), which keeps its addresses until it ends
 * rather than break (B21).
 */
static __always_inline int ct6_routed(const struct pkt *p)
{
	struct track6_entry *e;
	struct ct6_key k;

	ct6_reply_key(p, &k);
	e = bpf_map_lookup_elem(&pc_track6, &k);
	return e && !(e->flags & TRACK6_F_LINK);
}

#endif /* __PC_SNAT6_H__ */
