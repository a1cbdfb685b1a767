/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Forwarding in the program itself: FIB lookup, TTL, MACs and a redirect,
 * for replies whose source the container side rewrote to a node address
 * (the stack would drop them as martians), and the fast paths
 * (PC_CFG_FAST_PATH) out of and into containers.
 */
#ifndef __PC_REDIRECT_H__
#define __PC_REDIRECT_H__

#include "csum.h"

/* ip_dec_ttl lowers the TTL of the header ip (as loaded from l3_off) by
 * one, with the header checksum: TTL, protocol and checksum are bytes 8 to
 * 11, written in one store.
 */
static __always_inline int ip_dec_ttl(struct __sk_buff *skb, __u32 l3_off, const struct iphdr *ip)
{
	__u16 w[2] __attribute__((aligned(4))); /* TTL and protocol, checksum: as on the wire */
	__u16 old = (__u16)ip->ttl | (__u16)ip->protocol << 8;

	w[0] = (__u16)(ip->ttl - 1) | (__u16)ip->protocol << 8;
	w[1] = csum_update16(ip->check, old, w[0]);
	return bpf_skb_store_bytes(skb, l3_off + 8, w, sizeof(w), 0);
}

/* set_macs writes the Ethernet destination and source in one store. */
static __always_inline int set_macs(struct __sk_buff *skb, const __u8 *dst, const __u8 *src)
{
	__u8 m[12] __attribute__((aligned(4)));

	__builtin_memcpy(m, dst, ETH_ALEN);
	__builtin_memcpy(m + ETH_ALEN, src, ETH_ALEN);
	return bpf_skb_store_bytes(skb, 0, m, sizeof(m), 0);
}

/* fits_mtu says whether the packet may be redirected to ifindex as it is,
 * after a FIB lookup that returned rc. A GSO packet (TCP from a container:
 * up to 64 KB in one skb, on veth all the way) fits when each of its
 * segments does. Given the IP total length, bpf_fib_lookup compares that
 * with the MTU and so refused every GSO packet: the bulk of any TCP stream
 * went the slow way, and a container's answers on a published port, whose
 * source is by then a node address, were dropped by the stack as martians.
 * Without it, a successful lookup checks the skb itself (its whole length,
 * but any GSO skb passes); so this checks GSO segments, and whatever the
 * lookup did not check (no neighbour yet), with bpf_check_mtu.
 */
static __always_inline int fits_mtu(struct __sk_buff *skb, __u32 ifindex, long rc)
{
	__u32 len = 0;

	if (rc == BPF_FIB_LKUP_RET_SUCCESS && !skb->gso_size)
		return 1;
	return bpf_check_mtu(skb, ifindex, &len, 0, BPF_MTU_CHK_SEGS) == BPF_MTU_CHK_RET_SUCCESS;
}

/* redirect_routed4 forwards a packet whose source the container side just
 * rewrote to a node address (the reply of a published port, a hairpin to the
 * container itself). Handed to the stack it would be dropped as a martian,
 * because a packet arriving with one of the node's own addresses as its
 * source fails source validation; so do the router's work here: FIB lookup
 * as if the packet came in on the bridge, TTL, MACs, and redirect to the
 * egress device (or let bpf_redirect_neigh resolve the neighbour). Whatever
 * the FIB cannot resolve goes to the stack.
 */
static __always_inline int redirect_routed4(struct __sk_buff *skb, const struct pkt *p, __u32 in_ifindex,
					    int uplink_only)
{
	struct bpf_fib_lookup f = {};
	struct iphdr ip __attribute__((aligned(8)));
	long rc;

	if (pkt_load(skb, p->l3_off, &ip, sizeof(ip)) < 0 || ip.ttl <= 1)
		return TC_ACT_OK;
	f.family = AF_INET;
	f.tos = ip.tos;
	f.l4_protocol = ip.protocol;
	/* tot_len stays 0: see fits_mtu. */
	f.ifindex = in_ifindex;
	f.ipv4_src = ip.saddr;
	f.ipv4_dst = ip.daddr;
	rc = bpf_fib_lookup(skb, &f, sizeof(f), 0);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH)
		return TC_ACT_OK;
	if (uplink_only && !bpf_map_lookup_elem(&pc_uplinks, &f.ifindex))
		return TC_ACT_OK;
	if (!fits_mtu(skb, f.ifindex, rc))
		return TC_ACT_OK;

	if (ip_dec_ttl(skb, p->l3_off, &ip) < 0)
		return TC_ACT_SHOT;
	stat_inc(PC_STAT_FAST_PATH);
	if (rc == BPF_FIB_LKUP_RET_NO_NEIGH) {
		struct bpf_redir_neigh nh = { .nh_family = AF_INET, .ipv4_nh = f.ipv4_dst };

		return bpf_redirect_neigh(f.ifindex, &nh, sizeof(nh), 0);
	}
	if (set_macs(skb, f.dmac, f.smac) < 0)
		return TC_ACT_SHOT;
	return bpf_redirect(f.ifindex, 0);
}

/* redirect_peer4 is the fast path into a container: after reverse SNAT or
 * DNAT on the uplink the packet is for endpoint ifindex; play router (TTL,
 * MACs: the bridge's as source, the container's as destination) and hand it
 * straight to the veth peer inside the container's namespace. Anything that
 * does not fit (no MAC known, TTL about to expire) takes the normal path.
 */
static __always_inline int redirect_peer4(struct __sk_buff *skb, const struct pkt *p, __u32 ifindex)
{
	struct iphdr ip __attribute__((aligned(8)));
	struct endpoint *ep;
	struct network *net;

	if (!(CONFIG.flags & PC_CFG_FAST_PATH) || !ifindex)
		return TC_ACT_OK;
	ep = bpf_map_lookup_elem(&pc_endpoints, &ifindex);
	if (!ep || !(ep->flags & EP_F_HAS_MAC))
		return TC_ACT_OK;
	net = bpf_map_lookup_elem(&pc_networks, &ep->net_id);
	if (!net || !(net->gw_mac[0] | net->gw_mac[1] | net->gw_mac[2] | net->gw_mac[3] | net->gw_mac[4] | net->gw_mac[5]))
		return TC_ACT_OK;
	if (pkt_load(skb, p->l3_off, &ip, sizeof(ip)) < 0 || ip.ttl <= 1 || ip.daddr != ep->ip4)
		return TC_ACT_OK;
	if (ip_dec_ttl(skb, p->l3_off, &ip) < 0 || set_macs(skb, ep->mac, net->gw_mac) < 0)
		return TC_ACT_SHOT;
	stat_inc(PC_STAT_FAST_PATH);
	return bpf_redirect_peer(ifindex, 0);
}

#endif /* __PC_REDIRECT_H__ */
