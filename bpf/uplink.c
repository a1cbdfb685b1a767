//go:build ignore
/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Uplink side: tc ingress and egress on every interface that faces the
 * outside.
 *
 * Ingress undoes source NAT on replies, translates ICMP errors about our
 * flows (B5), sends traffic for published ports to their container keeping
 * the client's address (B6, B7, B8; IPv4 and IPv6), and drops anything else
 * addressed to a container (B12). Egress applies source NAT to container
 * traffic: the endpoint's fixed address, the network's, or the uplink's own
 * (masquerade), or, for a routed network, no translation but a tracked flow
 * so that the replies are let in.
 *
 * IPv6 published ports are translated as IPv4 ones are (lib/nat6.h), and
 * so is IPv6 traffic from a network with masquerade (lib/snat6.h), from
 * the uplink's IPv6 address. A network without masquerade has its IPv6
 * routed: egress records the flows containers open (lib/track6.h) and ingress
 * lets in only their replies and ICMPv6 errors about them. The rest of
 * IPv6 passes untouched.
 *
 * Packets the programs cannot parse are passed untouched (TC_ACT_OK): on the
 * uplink the kernel's own checks decide.
 */
#include "lib/abi.h"
#include "lib/icmp.h"
#include "lib/redirect.h"
#include "lib/snat6.h"

static __always_inline int in_container_subnet(__be32 a)
{
	__u32 *nid = subnet_lookup4(a);
	struct network *net;

	if (!nid)
		return 0;
	net = bpf_map_lookup_elem(&pc_networks, nid);
	/* The bridge's own address is the node's. */
	return !net || net->gw4 != a;
}

static __always_inline int in_container_subnet6(const __u8 *a)
{
	__u32 *nid = subnet_lookup6(a);
	struct network *net;
	const __u32 *x = (const __u32 *)a, *g;

	if (!nid)
		return 0;
	net = bpf_map_lookup_elem(&pc_networks, nid);
	if (!net)
		return 1;
	g = (const __u32 *)net->gw6;
	return ((x[0] ^ g[0]) | (x[1] ^ g[1]) | (x[2] ^ g[2]) | (x[3] ^ g[3])) != 0;
}

static __always_inline int uplink_ingress6(struct __sk_buff *skb, struct pkt *p)
{
	struct ct6_key k = {};
	int rc;

	if (parse_ipv6(skb, p) != PARSE_OK)
		return TC_ACT_OK;
	if (p->nexthdr == IPPROTO_ICMPV6 && (p->flags & PKT_F_ICMP_ERR)) {
		rc = nat6_icmp_error(skb, p, HOOK_UPLINK_INGRESS);
		if (rc != PC_NOT_MINE)
			return rc == PC_E_REWRITE ? drop(p, PC_DROP_REWRITE_FAILED) : TC_ACT_OK;
	}
	rc = nat6_uplink_in(skb, p);
	if (rc != PC_NOT_MINE)
		return rc ? drop(p, rc) : TC_ACT_OK;
	if (!in_container_subnet6(p->daddr6))
		return TC_ACT_OK;
	if (p->nexthdr == IPPROTO_ICMPV6 && (p->flags & PKT_F_ICMP_ERR))
		return ct6_in_error(skb, p, 0) ? TC_ACT_OK : drop(p, PC_DROP_INBOUND);
	/* A later fragment whose first was not seen. */
	if (!(p->flags & PKT_F_PORTS) && ((p->flags & PKT_F_NONFIRST) || l4_min_len(p->nexthdr)))
		return drop(p, PC_DROP_FRAGMENT);
	ct6_tuple(p, &k);
	return ct6_in(&k, p, 1, 0) ? TC_ACT_OK : drop(p, PC_DROP_INBOUND);
}

static __always_inline int uplink_egress6(struct __sk_buff *skb, struct pkt *p)
{
	struct network *net;
	struct ct6_entry *e;
	struct ct6_key k;
	__u32 *nid;
	int rc;

	if (parse_ipv6(skb, p) != PARSE_OK)
		return TC_ACT_OK;
	/* Errors do not open flows. One about a masqueraded flow (from its
	 * container, or from the node forwarding its reply: packet too big)
	 * leaves as the flow's other end knows it.
	 */
	if (p->nexthdr == IPPROTO_ICMPV6 && (p->flags & PKT_F_ICMP_ERR))
		return nat6_icmp_error(skb, p, HOOK_UPLINK_EGRESS) == PC_E_REWRITE ? drop(p, PC_DROP_REWRITE_FAILED)
											  : TC_ACT_OK;
	/* A later fragment without its first: no tuple to track it by (the
	 * endpoint program dropped a container's already).
	 */
	if ((p->flags & PKT_F_NONFIRST) && !(p->flags & PKT_F_PORTS))
		return TC_ACT_OK;
	/* Established masqueraded flows first, without the LPM lookup. */
	ct6_tuple(p, &k);
	e = nat6_lookup(&k, HOOK_UPLINK_EGRESS);
	if (e)
		return nat6_apply(skb, p, &k, e) < 0 ? drop(p, PC_DROP_REWRITE_FAILED) : TC_ACT_OK;
	nid = subnet_lookup6(p->saddr6);
	if (!nid)
		return TC_ACT_OK; /* the node's own traffic */
	net = bpf_map_lookup_elem(&pc_networks, nid);
	if (net && (net->flags & NET_F_MASQ) && !ct6_routed(p))
		rc = snat6_new_flow(skb, p, &k);
	else
		rc = ct6_track(p, 0);
	return rc ? drop(p, rc) : TC_ACT_OK;
}

SEC("tc")
int pc_uplink_ingress(struct __sk_buff *skb)
{
	struct ct_new n = {};
	struct ct_entry *e;
	struct ct_key nat;
	struct pkt p = {};
	int rc;

	p.ifindex = skb->ifindex;
	if (parse_eth(skb, &p) != PARSE_OK)
		return TC_ACT_OK;
	if (p.eth_proto == ETH_P_IPV6)
		return uplink_ingress6(skb, &p);
	if (p.eth_proto != ETH_P_IP || parse_ipv4(skb, &p) != PARSE_OK)
		return TC_ACT_OK;
	if (!(p.flags & PKT_F_PORTS))
		return in_container_subnet(p.t.daddr) ? drop(&p, PC_DROP_FRAGMENT) : TC_ACT_OK;

	if (p.flags & PKT_F_ICMP_ERR) {
		rc = nat_icmp_error4(skb, &p, HOOK_UPLINK_INGRESS);
		if (rc == PC_E_REWRITE)
			return drop(&p, PC_DROP_REWRITE_FAILED);
		if (rc == PC_OK)
			return TC_ACT_OK;
	}

	e = ct_lookup(&p.t, HOOK_UPLINK_INGRESS);
	if (e) {
		__u32 ifindex = e->ifindex;

		if (ct_apply(skb, &p, e) < 0)
			return drop(&p, PC_DROP_REWRITE_FAILED);
		return redirect_peer4(skb, &p, ifindex);
	}

	if (dnat_target(skb, &p, p.ifindex, &nat, &n.ifindex)) {
		n.flags = CT_F_DNAT;
		n.hooks_fwd = HOOK_UPLINK_INGRESS;
		n.hooks_rev = HOOK_EP_INGRESS; /* the reply is translated as the container sends it */
		rc = ct_new_flow(skb, &p, &nat, &n, HOOK_UPLINK_INGRESS);
		if (rc)
			return drop(&p, rc);
		return redirect_peer4(skb, &p, n.ifindex);
	}

	if (in_container_subnet(p.t.daddr))
		return drop(&p, PC_DROP_INBOUND);
	return TC_ACT_OK;
}

/* snat_source picks the source address for a new flow from a container:
 * the endpoint's, the network's, the uplink's (masquerade), or 0 for a
 * routed network. Returns a drop reason or 0.
 */
static __always_inline int snat_source(__u32 ifindex, const struct network *net, const struct ep_ref *ref,
				       __be32 *src)
{
	struct uplink *up;

	*src = 0;
	if (ref && ref->snat4) {
		*src = ref->snat4;
		return 0;
	}
	if (net->snat4) {
		*src = net->snat4;
		return 0;
	}
	if (!(net->flags & NET_F_MASQ))
		return 0;
	up = bpf_map_lookup_elem(&pc_uplinks, &ifindex);
	if (!up || !up->addr4)
		return PC_DROP_NO_SNAT_ADDRESS;
	*src = up->addr4;
	return 0;
}

SEC("tc")
int pc_uplink_egress(struct __sk_buff *skb)
{
	struct ct_new n = {};
	struct network *net;
	struct ep_ref *ref;
	struct addr_key ak;
	struct ct_entry *e;
	struct ct_key nat;
	struct pkt p = {};
	__be32 src;
	__u32 *nid;
	int rc;

	p.ifindex = skb->ifindex;
	if (parse_eth(skb, &p) != PARSE_OK)
		return TC_ACT_OK;
	if (p.eth_proto == ETH_P_IPV6)
		return uplink_egress6(skb, &p);
	if (p.eth_proto != ETH_P_IP || parse_ipv4(skb, &p) != PARSE_OK)
		return TC_ACT_OK;
	/* An unknown later fragment from a container would leave untranslated. */
	if (!(p.flags & PKT_F_PORTS))
		return subnet_lookup4(p.t.saddr) ? drop(&p, PC_DROP_FRAGMENT) : TC_ACT_OK;

	if (p.flags & PKT_F_ICMP_ERR) {
		rc = nat_icmp_error4(skb, &p, HOOK_UPLINK_EGRESS);
		if (rc == PC_E_REWRITE)
			return drop(&p, PC_DROP_REWRITE_FAILED);
		if (rc == PC_OK)
			return TC_ACT_OK;
	}

	e = ct_lookup(&p.t, HOOK_UPLINK_EGRESS);
	if (e) {
		if (ct_apply(skb, &p, e) < 0)
			return drop(&p, PC_DROP_REWRITE_FAILED);
		return TC_ACT_OK;
	}

	/* Looked up only now: established flows do without the LPM lookup. */
	nid = subnet_lookup4(p.t.saddr);
	if (!nid)
		return TC_ACT_OK; /* not from a container: the node's own traffic */
	net = bpf_map_lookup_elem(&pc_networks, nid);
	if (!net)
		return TC_ACT_OK;
	addr4_key(&ak, p.t.saddr);
	ref = bpf_map_lookup_elem(&pc_ep_addrs, &ak);
	rc = snat_source(p.ifindex, net, ref, &src);
	if (rc)
		return drop(&p, rc);

	nat = p.t;
	n.flags = CT_F_SNAT;
	n.hooks_fwd = HOOK_UPLINK_EGRESS;
	n.hooks_rev = HOOK_UPLINK_INGRESS;
	n.ifindex = ref ? ref->ifindex : 0;
	if (src) {
		nat.saddr = src;
		n.pick_port = can_pick_port(&p);
	}
	rc = ct_new_flow(skb, &p, &nat, &n, HOOK_UPLINK_EGRESS);
	if (rc)
		return drop(&p, rc);
	return TC_ACT_OK;
}

char __license[] SEC("license") = "Dual BSD/GPL";
