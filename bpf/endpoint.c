//go:build ignore
/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Container side: tc ingress on the host end of each endpoint veth, so it
 * sees everything a container sends.
 *
 *   1. identity: the Ethernet source, the IP source and the ARP sender must
 *      be the endpoint's (B17), so nothing below can be fooled;
 *   2. replies of flows that were let in (published ports over IPv4 and
 *      IPv6, hairpin, links) are translated back and pass: established
 *      traffic skips policy, like "ctstate RELATED,ESTABLISHED -j ACCEPT";
 *   3. policy: networks are isolated (B18), internal ones from everything
 *      beyond their bridge; with icc=false only linked pairs
 *      talk, the parent to the child's exposed ports (B15), for IPv4 and
 *      IPv6, link-local included. The child only answers: its packets pass
 *      on the flows its parent opened (tracked in pc_flows4 and pc_track6), never
 *      on their source port alone, so it cannot open a connection to its
 *      parent from its exposed port (Docker's --sport rule would let it);
 *   4. hairpin: a container reaching a published port on a node address is
 *      sent to the target here (B9), with its source rewritten to the gateway
 *      when it is its own port, or the reply would be a martian.
 *
 * SNAT is not done here but on the uplink egress: only there is it known
 * that a packet leaves the node, and that is where masquerade picks the
 * uplink's address.
 */
#include "lib/abi.h"
#include "lib/icmp.h"
#include "lib/redirect.h"

static __always_inline int mac_eq(const __u8 *a, const __u8 *b)
{
	return ((a[0] ^ b[0]) | (a[1] ^ b[1]) | (a[2] ^ b[2]) | (a[3] ^ b[3]) | (a[4] ^ b[4]) | (a[5] ^ b[5])) == 0;
}

static __always_inline int ep_arp(struct __sk_buff *skb, const struct pkt *p, const struct endpoint *ep)
{
	struct arp_eth4 a;
	__be32 sip;

	if (bpf_skb_load_bytes(skb, ETH_HLEN, &a, sizeof(a)) < 0)
		return drop(p, PC_DROP_MALFORMED);
	if (a.ar_hrd != bpf_htons(1) || a.ar_pro != bpf_htons(ETH_P_IP) || a.ar_hln != ETH_ALEN || a.ar_pln != 4)
		return drop(p, PC_DROP_MALFORMED);
	if ((ep->flags & EP_F_HAS_MAC) && !mac_eq(a.ar_sha, ep->mac))
		return drop(p, PC_DROP_SPOOF_ARP);
	__builtin_memcpy(&sip, a.ar_sip, 4);
	/* 0.0.0.0 is an ARP probe (RFC 5227): it claims nothing. */
	if (sip != ep->ip4 && sip != 0)
		return drop(p, PC_DROP_SPOOF_ARP);
	return TC_ACT_OK;
}

/* link_allowed: parent may reach this exposed port of child. */
static __always_inline int link_allowed(__u32 parent, __u32 child, __u8 proto, __be16 dport)
{
	struct link_key k = { .parent = parent, .child = child, .port = bpf_ntohs(dport), .proto = proto };

	if (proto != IPPROTO_TCP && proto != IPPROTO_UDP && proto != IPPROTO_SCTP)
		return 0;
	return bpf_map_lookup_elem(&pc_links, &k) != 0;
}

/* linked: parent and child are linked at all (the pair's marker entry). */
static __always_inline int linked(__u32 parent, __u32 child)
{
	struct link_key k = { .parent = parent, .child = child };

	return bpf_map_lookup_elem(&pc_links, &k) != 0;
}

/* tcp_opens: a TCP SYN without ACK, which opens a connection. On the reply
 * half of a link flow that is no answer but a new connection from the child
 * (on a tuple its parent used before): policy judges it like any other.
 */
static __always_inline int tcp_opens(const struct pkt *p)
{
	return p->t.proto == IPPROTO_TCP && (p->flags & PKT_F_L4) &&
	       (p->tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN;
}

/* peer_verdict applies ICC and links to traffic for another endpoint. */
static __always_inline int peer_verdict(__u32 self, const struct endpoint *ep, const struct network *net,
					const struct ep_ref *peer, const __u32 *mac_peer, const struct pkt *p,
					__u8 proto)
{
	if (peer->net_id != ep->net_id)
		return PC_DROP_ISOLATION;
	if (peer->ifindex == self || (net->flags & NET_F_ICC))
		return 0;
	/* A frame for one container's MAC carrying another's address. */
	if (mac_peer && *mac_peer != peer->ifindex)
		return PC_DROP_ICC;
	if (link_allowed(self, peer->ifindex, proto, p->t.dport))
		return PC_LINKED;
	return linked(self, peer->ifindex) ? PC_DROP_ICC_LINK_PORT : PC_DROP_ICC;
}

static __always_inline __u32 *mac_owner(const struct pkt *p)
{
	struct mac_key mk = {};

	__builtin_memcpy(mk.mac, p->dst_mac, ETH_ALEN);
	return bpf_map_lookup_elem(&pc_ep_macs, &mk);
}

/* policy4 returns 0 to let the packet on, PC_LINKED, or a drop reason. */
static __always_inline int policy4(__u32 self, const struct endpoint *ep, const struct network *net,
				   const struct pkt *p)
{
	__u32 *mac_peer = mac_owner(p), *nid;
	struct ep_ref *peer;
	struct addr_key ak;
	__be32 dst = p->t.daddr;

	addr4_key(&ak, dst);
	peer = bpf_map_lookup_elem(&pc_ep_addrs, &ak);
	if (peer)
		return peer_verdict(self, ep, net, peer, mac_peer, p, p->t.proto);
	if (mac_peer && *mac_peer != self && !(net->flags & NET_F_ICC))
		return PC_DROP_ICC;
	nid = subnet_lookup4(dst);
	if (nid && *nid != ep->net_id) {
		struct network *other = bpf_map_lookup_elem(&pc_networks, nid);

		/* Another bridge's own address is a node address, not a container. */
		if (other && other->gw4 == dst)
			return 0;
		return PC_DROP_ISOLATION;
	}
	/* An internal network keeps to its bridge: broadcast and multicast
	 * stay on it, anything else outside its subnet would leave the node.
	 */
	if ((net->flags & NET_F_INTERNAL) && !nid && dst != 0xffffffff &&
	    (dst & bpf_htonl(0xf0000000)) != bpf_htonl(0xe0000000))
		return PC_DROP_ISOLATION;
	if (net->flags & NET_F_ICC)
		return 0;
	/* Our subnet but no endpoint (its broadcast, a stopped container), or
	 * limited broadcast and multicast: it would reach the other containers.
	 */
	if (nid && dst != net->gw4)
		return PC_DROP_ICC;
	if (dst == 0xffffffff || (dst & bpf_htonl(0xf0000000)) == bpf_htonl(0xe0000000))
		return PC_DROP_ICC;
	return 0;
}

/* ep_forward lets a translated packet go. When its source is no longer the
 * endpoint's own address it is now from a node address and must not go
 * through the stack's input path (see redirect_routed4).
 */
static __always_inline int ep_forward(struct __sk_buff *skb, const struct pkt *p, const struct endpoint *ep,
				      __u32 fib_if)
{
	__be32 src;

	if (pkt_load(skb, p->l3_off + 12, &src, 4) < 0)
		return TC_ACT_SHOT;
	if (src == ep->ip4)
		return TC_ACT_OK;
	return redirect_routed4(skb, p, fib_if, 0);
}

/* opens_flow: a packet that may start a flow: for TCP a SYN without ACK,
 * anything of the other protocols. Only such a packet becomes a hairpin
 * flow: a container's answer on a connection netfilter translated (the
 * node's own connections to published ports, B10, which the local path in
 * nftables DNATs and masquerades to the gateway) goes to a node address
 * too, and to a port the node's client chose, which may well be inside a
 * published range. It has no flow here and must reach the stack untouched
 * for conntrack to restore the node's address. (UDP and SCTP cannot be told
 * apart from new flows this way; keep published ranges out of the node's
 * ephemeral ports, net.ipv4.ip_local_port_range.)
 */
static __always_inline int opens_flow(const struct pkt *p)
{
	return p->t.proto != IPPROTO_TCP || tcp_opens(p);
}

/* link_flow4 lets a parent's packet to its linked child on and tracks the
 * flow, untranslated: its reverse half is what admits the child's answers
 * (and ICMP errors about the flow).
 */
static __always_inline int link_flow4(struct __sk_buff *skb, const struct pkt *p)
{
	struct ct_new n = {
		.flags = CT_F_LINK,
		.hooks_fwd = HOOK_EP_INGRESS,
		.hooks_rev = HOOK_EP_INGRESS,
		.ifindex = p->ifindex,
	};
	struct ct_key nat = p->t;
	int rc = ct_new_flow(skb, p, &nat, &n, HOOK_EP_INGRESS);

	return rc ? drop(p, rc) : TC_ACT_OK;
}

static __always_inline int ep_ipv4(struct __sk_buff *skb, struct pkt *p, const struct endpoint *ep)
{
	__u32 self = p->ifindex, fib_if;
	struct network *net;
	struct ct_entry *e;
	struct ct_key nat;
	struct ct_new n = {};
	int rc;

	if (parse_ipv4(skb, p) != PARSE_OK)
		return drop(p, PC_DROP_MALFORMED);
	if (p->t.saddr != ep->ip4)
		return drop(p, PC_DROP_SPOOF_IP);
	/* A non-first fragment whose first fragment was not seen has no ports:
	 * it cannot be checked against links, so it cannot pass.
	 */
	if (!(p->flags & PKT_F_PORTS))
		return drop(p, PC_DROP_FRAGMENT);
	net = bpf_map_lookup_elem(&pc_networks, &ep->net_id);
	if (!net)
		return drop(p, PC_DROP_NO_ENDPOINT);
	fib_if = net->bridge_ifindex ? net->bridge_ifindex : self;

	if (p->flags & PKT_F_ICMP_ERR) {
		rc = nat_icmp_error4(skb, p, HOOK_EP_INGRESS);
		if (rc == PC_E_REWRITE)
			return drop(p, PC_DROP_REWRITE_FAILED);
		if (rc == PC_OK)
			return ep_forward(skb, p, ep, fib_if);
	}

	e = ct_lookup(&p->t, HOOK_EP_INGRESS);
	if (e && (e->flags & (CT_F_LINK | CT_F_REVERSE)) == (CT_F_LINK | CT_F_REVERSE) && tcp_opens(p))
		e = 0;
	if (e) {
		if (ct_apply(skb, p, e) < 0)
			return drop(p, PC_DROP_REWRITE_FAILED);
		return ep_forward(skb, p, ep, fib_if);
	}

	rc = policy4(self, ep, net, p);
	if (rc == PC_LINKED)
		return link_flow4(skb, p);
	if (rc)
		return drop(p, rc);

	if (opens_flow(p) && dnat_target(skb, p, fib_if, &nat, &n.ifindex)) {
		n.flags = CT_F_DNAT | CT_F_HAIRPIN;
		n.hooks_fwd = HOOK_EP_INGRESS;
		n.hooks_rev = HOOK_EP_INGRESS;
		/* To its own published port: the reply would come from and go to
		 * the container's own address, so present the gateway as source
		 * (Docker masquerades this case too).
		 */
		if (nat.daddr == ep->ip4) {
			nat.saddr = net->gw4;
			/* The node's own connections to published ports are
			 * presented from the gateway too (nft local path):
			 * keep clear of their ports.
			 */
			n.pick_port = can_pick_port(p);
		}
		rc = ct_new_flow(skb, p, &nat, &n, HOOK_EP_INGRESS);
		if (rc)
			return drop(p, rc);
		return ep_forward(skb, p, ep, fib_if);
	}
	/* Fast path out: traffic that the FIB sends to an uplink goes there
	 * directly; the uplink's egress program still applies SNAT.
	 */
	if (CONFIG.flags & PC_CFG_FAST_PATH)
		return redirect_routed4(skb, p, fib_if, 1);
	return TC_ACT_OK;
}

static __always_inline int addr6_is_ll(const __u8 *a)
{
	return a[0] == 0xfe && (a[1] & 0xc0) == 0x80;
}

/* ep_owns6 tells whether a is the endpoint's: its IPv6 address, or its
 * link-local address. The model does not hold the link-local one; the
 * kernel derives it from the MAC (modified EUI-64, RFC 4291 appendix A,
 * the default addr_gen_mode), so that one is the endpoint's. Without a MAC
 * in the model no link-local can be told apart, and any is taken, as the
 * source check does.
 */
static __always_inline int ep_owns6(const struct endpoint *ep, const __u8 *a)
{
	const __u32 *x = (const __u32 *)a;
	const __u8 *m = ep->mac;

	if ((ep->flags & EP_F_HAS_IP6) && addr6_equal(a, ep->ip6))
		return 1;
	if (x[0] != bpf_htonl(0xfe800000) || x[1] != 0)
		return 0;
	if (!(ep->flags & EP_F_HAS_MAC))
		return 1;
	return ((a[8] ^ m[0] ^ 2) | (a[9] ^ m[1]) | (a[10] ^ m[2]) | (a[11] ^ 0xff) | (a[12] ^ 0xfe) |
		(a[13] ^ m[3]) | (a[14] ^ m[4]) | (a[15] ^ m[5])) == 0;
}

/* ND_MAX_OPTS bounds the options looked at in a solicitation or
 * advertisement; a real one carries one or two (link-layer address, nonce).
 */
#define ND_MAX_OPTS 4

/* nd_opts_mac checks every link-layer address option from off to end: a
 * neighbour's cache takes the MAC from there, not from the Ethernet header.
 * Returns 0 or a drop reason.
 */
static __always_inline int nd_opts_mac(struct __sk_buff *skb, const struct pkt *p, const struct endpoint *ep,
				       __u32 off, __u32 end)
{
	struct nd_opt_ll o __attribute__((aligned(8)));
	__u32 i;

	for (i = 0; i < ND_MAX_OPTS; i++) {
		if (off >= end)
			return 0;
		if (off + sizeof(o) > end || pkt_load(skb, off, &o, sizeof(o)) < 0 || o.len == 0)
			return PC_DROP_MALFORMED;
		if ((o.type == ND_OPT_SOURCE_LL || o.type == ND_OPT_TARGET_LL) && (ep->flags & EP_F_HAS_MAC) &&
		    !mac_eq(o.mac, ep->mac))
			return PC_DROP_SPOOF_ND;
		off += o.len * 8;
	}
	/* More options than a neighbour message has: one of them unchecked. */
	return off >= end ? 0 : PC_DROP_SPOOF_ND;
}

/* ep_nd (B17) checks router and neighbour discovery from an endpoint, the
 * IPv6 twin of ep_arp. A container is never a router: router
 * advertisements, redirects and renumbering are dropped. A solicitation
 * must come from the endpoint's address, or from :: (duplicate address
 * detection, RFC 4862) about the endpoint's own; its target is whoever is
 * asked about. An advertisement must be for the endpoint's address. Other
 * types (MLD, router solicitations) pass. Returns 0 or a drop reason.
 */
static __always_inline int ep_nd(struct __sk_buff *skb, const struct pkt *p, const struct endpoint *ep)
{
	struct nd_msg m __attribute__((aligned(8)));

	switch (p->icmp_type) {
	case ICMPV6_ROUTER_ADVERT:
	case ICMPV6_REDIRECT:
	case ICMPV6_ROUTER_RENUMBERING:
		return PC_DROP_SPOOF_ROUTER;
	case ICMPV6_NEIGH_SOLICIT:
	case ICMPV6_NEIGH_ADVERT:
		break;
	default:
		return 0;
	}
	if (p->l4_len < sizeof(m) || pkt_load(skb, p->l4_off, &m, sizeof(m)) < 0)
		return PC_DROP_MALFORMED;
	if (p->icmp_type == ICMPV6_NEIGH_SOLICIT && addr6_is_zero(p->saddr6)) {
		if (!ep_owns6(ep, m.target))
			return PC_DROP_SPOOF_ND;
	} else if (!ep_owns6(ep, p->saddr6)) {
		return PC_DROP_SPOOF_ND;
	}
	if (p->icmp_type == ICMPV6_NEIGH_ADVERT && !ep_owns6(ep, m.target))
		return PC_DROP_SPOOF_ND;
	return nd_opts_mac(skb, p, ep, p->l4_off + sizeof(m), p->l4_off + p->l4_len);
}

static __always_inline int policy6(__u32 self, const struct endpoint *ep, const struct network *net,
				   const struct pkt *p)
{
	__u32 *mac_peer = mac_owner(p), *nid;
	struct ep_ref *peer;
	struct addr_key ak;

	addr6_key(&ak, p->daddr6);
	peer = bpf_map_lookup_elem(&pc_ep_addrs, &ak);
	if (peer)
		return peer_verdict(self, ep, net, peer, mac_peer, p, p->nexthdr);
	/* Link-local and any other address we do not know: a frame for another
	 * container's MAC is container-to-container traffic.
	 */
	if (mac_peer && *mac_peer != self && !(net->flags & NET_F_ICC))
		return PC_DROP_ICC;
	nid = subnet_lookup6(p->daddr6);
	if (nid && *nid != ep->net_id) {
		struct network *other = bpf_map_lookup_elem(&pc_networks, nid);

		if (other && addr6_equal(other->gw6, p->daddr6))
			return 0;
		return PC_DROP_ISOLATION;
	}
	/* Internal: link-local and multicast stay on the bridge (policy4). */
	if ((net->flags & NET_F_INTERNAL) && !nid && p->daddr6[0] != 0xff &&
	    !(p->daddr6[0] == 0xfe && (p->daddr6[1] & 0xc0) == 0x80))
		return PC_DROP_ISOLATION;
	if (net->flags & NET_F_ICC)
		return 0;
	if (nid && !addr6_equal(p->daddr6, net->gw6))
		return PC_DROP_ICC;
	if (p->daddr6[0] == 0xff) /* multicast reaches the other containers */
		return PC_DROP_ICC;
	return 0;
}

/* link_reply6 tells whether p is the child's answer on a link flow (or an
 * ICMPv6 error about one), and refreshes the flow.
 */
static __always_inline int link_reply6(struct __sk_buff *skb, const struct pkt *p)
{
	struct ct6_key k;

	if (p->nexthdr == IPPROTO_ICMPV6 && (p->flags & PKT_F_ICMP_ERR))
		return ct6_in_error(skb, p, TRACK6_F_LINK);
	if (!(p->flags & PKT_F_PORTS) || tcp_opens(p))
		return 0;
	ct6_tuple(p, &k);
	return ct6_in(&k, p, 1, TRACK6_F_LINK);
}

static __always_inline int ep_ipv6(struct __sk_buff *skb, struct pkt *p, const struct endpoint *ep)
{
	__u32 self = p->ifindex;
	struct network *net;
	int rc;

	if (parse_ipv6(skb, p) != PARSE_OK)
		return drop(p, PC_DROP_MALFORMED);
	/* Link-local and unspecified (DAD) sources cannot be checked against
	 * the model; they are harmless because link-local traffic to another
	 * container is caught by its MAC below.
	 */
	if (!((ep->flags & EP_F_HAS_IP6) && addr6_equal(p->saddr6, ep->ip6)) && !addr6_is_ll(p->saddr6) &&
	    !addr6_is_zero(p->saddr6))
		return drop(p, PC_DROP_SPOOF_IP);
	/* A later fragment whose first fragment was not seen has no ports:
	 * it cannot be judged, so it cannot pass (B17b).
	 */
	if ((p->flags & PKT_F_NONFIRST) && !(p->flags & PKT_F_PORTS))
		return drop(p, PC_DROP_FRAGMENT);
	/* MLD and neighbour/router discovery are how IPv6 works on a link,
	 * once they claim nothing that is not the endpoint's. Never in
	 * fragments (RFC 6980): the options checked could be in another one.
	 */
	if (p->nexthdr == IPPROTO_ICMPV6 && p->icmp_type >= ICMPV6_MLD_FIRST && p->icmp_type <= ICMPV6_ND_LAST) {
		rc = (p->flags & PKT_F_FRAG) ? PC_DROP_SPOOF_ND : ep_nd(skb, p, ep);
		return rc ? drop(p, rc) : TC_ACT_OK;
	}
	net = bpf_map_lookup_elem(&pc_networks, &ep->net_id);
	if (!net)
		return drop(p, PC_DROP_NO_ENDPOINT);
	/* Established: replies of published ports (translated back to the
	 * node address) and the child's answers on link flows skip policy.
	 */
	rc = nat6_endpoint_in(skb, p);
	if (rc == PC_NOT_MINE && p->nexthdr == IPPROTO_ICMPV6 && (p->flags & PKT_F_ICMP_ERR))
		rc = nat6_icmp_error(skb, p, HOOK_EP_INGRESS);
	if (rc == PC_E_REWRITE)
		return drop(p, PC_DROP_REWRITE_FAILED);
	if (rc == PC_OK || link_reply6(skb, p))
		return TC_ACT_OK;
	rc = policy6(self, ep, net, p);
	if (rc == PC_LINKED)
		rc = ct6_track(p, TRACK6_F_LINK);
	if (rc)
		return drop(p, rc);
	return TC_ACT_OK;
}

SEC("tc")
int pc_endpoint_ingress(struct __sk_buff *skb)
{
	struct endpoint *ep;
	struct pkt p = {};

	p.ifindex = skb->ifindex;
	ep = bpf_map_lookup_elem(&pc_endpoints, &p.ifindex);
	if (!ep)
		return drop(&p, PC_DROP_NO_ENDPOINT);
	/* With VLAN offload the tag is out of the frame, in skb->vlan_*. */
	if (skb->vlan_present)
		return drop(&p, PC_DROP_VLAN);
	if (parse_eth(skb, &p) != PARSE_OK)
		return drop(&p, PC_DROP_MALFORMED);
	if ((ep->flags & EP_F_HAS_MAC) && !mac_eq(p.src_mac, ep->mac))
		return drop(&p, PC_DROP_SPOOF_MAC);

	switch (p.eth_proto) {
	case ETH_P_IP:
		return ep_ipv4(skb, &p, ep);
	case ETH_P_IPV6:
		return ep_ipv6(skb, &p, ep);
	case ETH_P_ARP:
		return ep_arp(skb, &p, ep);
	case ETH_P_8021Q:
	case ETH_P_8021AD:
		return drop(&p, PC_DROP_VLAN);
	}
	return drop(&p, PC_DROP_NON_IP);
}

char __license[] SEC("license") = "Dual BSD/GPL";
