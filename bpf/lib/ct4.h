/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* IPv4 flows: the pairs of pc_flows4 (lib/pair.h), whether translated (SNAT,
 * published ports, hairpin) or only tracked (routed networks, links).
 */
#ifndef __PC_CT4_H__
#define __PC_CT4_H__

#include "pair.h"
#include "ports.h"
#include "rewrite.h"

/* ct_dnat_live says whether the published port that created the DNAT pair
 * of half e (keyed k) still translates as it did (B13). The forward half
 * holds the host address and port in its key and the target in nat; the
 * reverse half the other way round.
 *
 * Why the datapath checks, rather than the agent deleting the pairs before
 * it answers: pc_flows4 has no index by mapping, so each removal would walk the
 * whole table (up to 524288 entries, tens of milliseconds) on the API path,
 * and removing 100,000 mappings one call at a time would take hours. The
 * check costs one LPM lookup (two for a wildcard mapping) per packet of a
 * published-port flow only, in a trie the new-flow path reads anyway; other
 * flows pay one flag test. The agent's walk stays, off the API path, to
 * free the pairs no packet comes for.
 */
static __always_inline int ct_dnat_live(const struct ct_key *k, const struct ct_entry *e)
{
	if (e->flags & CT_F_REVERSE)
		return port_maps_to(k->proto, e->nat.saddr, e->nat.sport, k->saddr, k->sport);
	return port_maps_to(k->proto, k->daddr, k->dport, e->nat.daddr, e->nat.dport);
}

/* ct_lookup returns the half keyed by k if it applies at hook. The pair of
 * a published port that was removed or changed since is deleted instead,
 * and the packet goes on as the first of a new flow: to the stack, or to the
 * mapping's new target.
 */
static __always_inline struct ct_entry *ct_lookup(const struct ct_key *k, __u8 hook)
{
	struct ct_entry *e = bpf_map_lookup_elem(&pc_flows4, k);
	struct ct_key pk;

	if (!e || !(e->hooks & hook))
		return 0;
	if (!(e->flags & CT_F_DNAT) || ct_dnat_live(k, e))
		return e;
	pair_delete(&pc_flows4, PAIR_KEY4, k, e, &pk);
	return 0;
}

/* ct_create inserts the pair for a new flow whose first packet has tuple
 * fwd and should leave as *nat (pair_create). Returns PC_OK (nat holds the
 * final tuple), a PC_DROP_* reason, or PC_E_RACE.
 */
static __always_inline int ct_create(const struct ct_key *fwd, struct ct_key *nat, const struct ct_new *n)
{
	struct pair_resv *r;
	struct ct_resv *c;
	__u32 zero = 0;
	int rc;

	r = bpf_map_lookup_elem(&pc_pair_scratch, &zero);
	if (!r)
		return PC_DROP_CONNTRACK_FULL; /* an array's one element: never */
	c = &r->v4;
	c->nat = *nat;
	rc = pair_create(&pc_flows4, PAIR_KEY4, r, c, fwd, n);
	*nat = c->nat;
	return rc;
}

/* ct_apply translates a packet that matched half e. Returns PC_OK or
 * PC_E_REWRITE.
 */
static __always_inline int ct_apply(struct __sk_buff *skb, const struct pkt *p, struct ct_entry *e)
{
	struct ct_key to = e->nat, pk;

	pair_touch(&pc_flows4, PAIR_KEY4, e, p, pc_now(), &pk);
	return nat_rewrite4(skb, p, &p->t, &to);
}

/* ct_new_flow creates the pair and rewrites the first packet. Returns PC_OK
 * or a PC_DROP_* reason.
 */
static __always_inline int ct_new_flow(struct __sk_buff *skb, const struct pkt *p, struct ct_key *nat,
				       const struct ct_new *n, __u8 hook)
{
	struct ct_entry *e;
	int rc;

	rc = ct_create(&p->t, nat, n);
	if (rc == PC_E_RACE) {
		e = ct_lookup(&p->t, hook);
		if (!e)
			return PC_DROP_NAT_CONFLICT;
		return ct_apply(skb, p, e) < 0 ? PC_DROP_REWRITE_FAILED : PC_OK;
	}
	if (rc)
		return rc;
	if (trace_on(PC_TRACE_NAT))
		pc_trace_nat4(p, nat, n->flags);
	if (nat_rewrite4(skb, p, &p->t, nat) < 0)
		return PC_DROP_REWRITE_FAILED;
	return PC_OK;
}

#endif /* __PC_CT4_H__ */
