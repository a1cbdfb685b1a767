/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* IPv6 masquerade (B1 over IPv6, as Docker 27+ does with ip6tables): the
 * IPv6 traffic a container on a network with masquerade opens leaves
 * through an uplink from that uplink's IPv6 address, as IPv4 does
 * (lib/nat.h). The pairs live in pc_nat6 beside the published-port ones
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

/* can_pick_port6 is can_pick_port (lib/nat.h) for IPv6: TCP, UDP, echo
 * ids, and SCTP but not in a fragment (its CRC32c covers the datagram).
 */
static __always_inline int can_pick_port6(const struct pkt *p)
{
	return (p->flags & PKT_F_L4) &&
	       (p->nexthdr == IPPROTO_TCP || p->nexthdr == IPPROTO_UDP ||
		(p->nexthdr == IPPROTO_SCTP && !(p->flags & PKT_F_FRAG)) ||
		(p->nexthdr == IPPROTO_ICMPV6 && p->icmp_type == ICMPV6_ECHO_REQUEST));
}

static __always_inline int addr6_is_zero(const __u8 *a)
{
	const __u32 *x = (const __u32 *)a;

	return (x[0] | x[1] | x[2] | x[3]) == 0;
}

/* snat6_new_flow masquerades the first packet of a container's flow (its
 * tuple k) leaving through uplink p->ifindex: the pair, with a free source
 * port picked as for IPv4, and the packet rewritten. Everything it keeps
 * is in pc_nat6_scratch: this is inlined into pc_uplink_egress, whose
 * frame with pc_nat6_reserve's must fit in 512 bytes. Returns 0 or a
 * PC_DROP_* reason.
 */
static __always_inline int snat6_new_flow(struct __sk_buff *skb, const struct pkt *p, const struct ct6_key *k)
{
	struct ct_new n = { .flags = CT_F_SNAT, .hooks_fwd = HOOK_UPLINK_EGRESS, .hooks_rev = HOOK_UPLINK_INGRESS };
	__u32 ifindex = p->ifindex, zero = 0;
	struct nat6_resv *r;
	struct uplink *up;
	int rc;

	up = bpf_map_lookup_elem(&pc_uplinks, &ifindex);
	if (!up || addr6_is_zero(up->addr6))
		return PC_DROP_NO_SNAT_ADDR;
	r = bpf_map_lookup_elem(&pc_nat6_scratch, &zero);
	if (!r)
		return PC_DROP_CT_FULL; /* an array's one element: never */
	r->nat = *k;
	__builtin_memcpy(r->nat.saddr, up->addr6, 16);
	n.pick_port = can_pick_port6(p);
	nat6_rev_init(&r->e, k, &n);
	rc = n.pick_port ? pc_nat6_reserve(r) : nat6_put_rev(&r->nat, &r->e, &r->rk, &r->pk, pc_now());
	if (rc == -EEXIST)
		return PC_DROP_NAT_CONFLICT;
	if (rc)
		return rc < 0 ? PC_DROP_CT_FULL : rc;
	rc = nat6_put_fwd(k, &r->nat, &r->e, &r->rk, &n);
	return nat6_first(skb, p, k, &r->nat, rc, CT_F_SNAT, HOOK_UPLINK_EGRESS);
}

/* ct6_routed says whether p belongs to a flow tracked untranslated in
 * pc_ct6: one opened before its network masqueraded IPv6 (an agent that
 * routed it, before an upgrade), which keeps its addresses until it ends
 * rather than break (B21).
 */
static __always_inline int ct6_routed(const struct pkt *p)
{
	struct ct6_entry *e;
	struct ct6_key k;

	ct6_reply_key(p, &k);
	e = bpf_map_lookup_elem(&pc_ct6, &k);
	return e && !(e->flags & CT6_F_LINK);
}

#endif /* __PC_SNAT6_H__ */
