/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* IPv6 pairs: published ports (B6: destination NAT to the container's IPv6
 * address, the client's address kept, as IPv4 does) and masquerade
 * (lib/snat6.h), both in pc_flows6, so neither can take the other's reply
 * tuple. The pair logic is IPv4's (lib/pair.h). On a network without
 * masquerade IPv6 is routed, not translated (lib/track6.h).
 *
 * For a published port the forward half is keyed by the client's packet as
 * it arrives on the uplink and holds the tuple it is sent on with (the
 * container's address and port); the reverse half is keyed by the
 * container's reply and holds the reply's tuple after translation back
 * (from the node address and host port). The uplink ingress program
 * applies forward halves, the endpoint program reverse halves.
 */
#ifndef __PC_NAT6_H__
#define __PC_NAT6_H__

#include "track6.h"
#include "ports.h"
#include "rewrite.h"

/* nat6_lookup returns the half keyed by k if it applies at hook; the pair of
 * a published port removed or changed since is deleted instead (B13, see
 * ct_lookup in lib/ct4.h for why the datapath checks). Masquerade pairs
 * have no mapping to check.
 */
static __always_inline struct ct6_entry *nat6_lookup(const struct ct6_key *k, __u8 hook)
{
	struct ct6_entry *e = bpf_map_lookup_elem(&pc_flows6, k);
	struct ct6_key pk;
	int live;

	if (!e || !(e->hooks & hook))
		return 0;
	if (!(e->flags & CT_F_DNAT))
		return e;
	if (e->flags & CT_F_REVERSE)
		live = port6_maps_to(k->proto, e->nat.saddr, e->nat.sport, k->saddr, k->sport);
	else
		live = port6_maps_to(k->proto, k->daddr, k->dport, e->nat.daddr, e->nat.dport);
	if (live)
		return e;
	pair_delete(&pc_flows6, PAIR_KEY6, k, e, &pk);
	return 0;
}

/* nat6_create inserts the pair of a new flow whose first packet has tuple
 * fwd and leaves as r->v6.nat (pair_create): a published port's, whose
 * client keeps its port, or a masqueraded one's (lib/snat6.h), which may
 * have its port picked. Returns PC_OK, a PC_DROP_* reason, or PC_E_RACE.
 */
static __always_inline int nat6_create(struct pair_resv *r, const struct ct6_key *fwd, const struct ct_new *n)
{
	return pair_create(&pc_flows6, PAIR_KEY6, r, &r->v6, fwd, n);
}

/* nat6_apply translates a packet that matched half e; k is its tuple.
 * Returns PC_OK or PC_E_REWRITE.
 */
static __always_inline int nat6_apply(struct __sk_buff *skb, const struct pkt *p, const struct ct6_key *k,
				      struct ct6_entry *e)
{
	struct ct6_key to = e->nat, pk;

	pair_touch(&pc_flows6, PAIR_KEY6, e, p, pc_now(), &pk);
	return nat6_rewrite(skb, p, k, &to);
}

/* nat6_first finishes the first packet p (tuple k) of a new flow that
 * leaves as *nat, once its pair was made with result rc: rewritten, or on
 * the flow another CPU made meanwhile (hook: where p is). Returns PC_OK or
 * a PC_DROP_* reason.
 */
static __always_inline int nat6_first(struct __sk_buff *skb, const struct pkt *p, const struct ct6_key *k,
				      const struct ct6_key *nat, int rc, __u32 flags, __u8 hook)
{
	struct ct6_entry *e;

	if (rc == PC_E_RACE) {
		e = nat6_lookup(k, hook);
		if (!e)
			return PC_DROP_NAT_CONFLICT;
		return nat6_apply(skb, p, k, e) < 0 ? PC_DROP_REWRITE_FAILED : PC_OK;
	}
	if (rc)
		return rc;
	if (trace_on(PC_TRACE_NAT))
		pc_trace_nat6(p, nat, flags);
	return nat6_rewrite(skb, p, k, nat) < 0 ? PC_DROP_REWRITE_FAILED : PC_OK;
}

/* nat6_uplink_in translates a packet arriving on an uplink for a published
 * port: one of a known flow, or the first of a new one. Returns PC_OK when
 * it was translated, PC_NOT_MINE when it is not for a published port, or a
 * PC_DROP_* reason.
 */
static __always_inline int nat6_uplink_in(struct __sk_buff *skb, const struct pkt *p)
{
	struct ct_new n = { .flags = CT_F_DNAT, .hooks_fwd = HOOK_UPLINK_INGRESS, .hooks_rev = HOOK_EP_INGRESS };
	struct pair_resv *r;
	struct ct6_entry *e;
	struct ct6_key k;
	__u32 zero = 0;

	/* Protocols without ports have a tuple too (masquerade): only a later
	 * fragment whose first was not seen has none.
	 */
	if ((p->flags & (PKT_F_PORTS | PKT_F_NONFIRST)) == PKT_F_NONFIRST)
		return PC_NOT_MINE;
	ct6_tuple(p, &k);
	e = nat6_lookup(&k, HOOK_UPLINK_INGRESS);
	if (e)
		return nat6_apply(skb, p, &k, e) < 0 ? PC_DROP_REWRITE_FAILED : PC_OK;
	r = bpf_map_lookup_elem(&pc_pair_scratch, &zero);
	if (!r)
		return PC_DROP_CONNTRACK_FULL; /* an array's one element: never */
	if (!dnat6_target(skb, p, &k, &r->v6.nat, &n.ifindex))
		return PC_NOT_MINE;
	return nat6_first(skb, p, &k, &r->v6.nat, nat6_create(r, &k, &n), CT_F_DNAT, HOOK_UPLINK_INGRESS);
}

/* nat6_endpoint_in translates a container's reply on a published-port
 * flow back to the node address and host port. Returns PC_OK when it did,
 * PC_NOT_MINE when the packet is no such reply, PC_E_REWRITE when a helper
 * failed.
 */
static __always_inline int nat6_endpoint_in(struct __sk_buff *skb, const struct pkt *p)
{
	struct ct6_entry *e;
	struct ct6_key k;

	if (!(p->flags & PKT_F_PORTS))
		return PC_NOT_MINE;
	ct6_tuple(p, &k);
	e = nat6_lookup(&k, HOOK_EP_INGRESS);
	if (!e)
		return PC_NOT_MINE;
	return nat6_apply(skb, p, &k, e);
}

#endif /* __PC_NAT6_H__ */
