/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Published ports, IPv4 and IPv6: what a packet for a node address and port
 * is translated to (pc_ports, pc_ports6), whether a flow's mapping still
 * stands (B13), whether an address is the node's, and which flows may have
 * their source port moved.
 */
#ifndef __PC_PORTS_H__
#define __PC_PORTS_H__

#include "parse.h"

static __always_inline struct port_target *port_lookup(__u8 proto, __be32 addr, __be16 port)
{
	struct port_key k = { .prefixlen = 64 + 16, .proto = proto, .addr = addr, .port = port };

	return bpf_map_lookup_elem(&pc_ports, &k);
}

/* port_maps_to says whether the published port proto haddr:hport (or the
 * wildcard one on hport, as dnat_target picks it) still translates to
 * taddr:tport. Ports in network byte order.
 */
static __always_inline int port_maps_to(__u8 proto, __be32 haddr, __be16 hport, __be32 taddr, __be16 tport)
{
	struct port_target *pt = port_lookup(proto, haddr, hport);
	__u16 h = bpf_ntohs(hport);

	if (!pt)
		pt = port_lookup(proto, 0, hport);
	return pt && h >= pt->host_lo && h <= pt->host_hi && pt->addr == taddr &&
	       bpf_ntohs(tport) == (__u16)(pt->port_lo + (h - pt->host_lo));
}

static __always_inline struct port6_target *port6_lookup(__u8 proto, const __u8 *addr, __be16 port)
{
	struct port6_key k = { .prefixlen = 160 + 16, .proto = proto, .port = port };

	if (addr)
		__builtin_memcpy(k.addr, addr, 16);
	return bpf_map_lookup_elem(&pc_ports6, &k);
}

/* port6_maps_to is port_maps_to for IPv6. */
static __always_inline int port6_maps_to(__u8 proto, const __u8 *haddr, __be16 hport, const __u8 *taddr,
					 __be16 tport)
{
	struct port6_target *pt = port6_lookup(proto, haddr, hport);
	__u16 h = bpf_ntohs(hport);

	if (!pt)
		pt = port6_lookup(proto, 0, hport);
	return pt && h >= pt->host_lo && h <= pt->host_hi && addr6_equal(pt->addr, taddr) &&
	       bpf_ntohs(tport) == (__u16)(pt->port_lo + (h - pt->host_lo));
}

/* is_local4 tells whether addr is an address of this node. */
static __always_inline int is_local4(struct __sk_buff *skb, __be32 addr, __u32 ifindex)
{
	struct bpf_fib_lookup f = {};

	if (bpf_map_lookup_elem(&pc_local_addrs, &addr))
		return 1;
	if (!(CONFIG.flags & PC_CFG_FIB_LOCAL))
		return 0;
	f.family = AF_INET;
	f.ipv4_dst = addr;
	f.ifindex = ifindex;
	/* Local (and broadcast) routes end the lookup with NOT_FWDED. A device
	 * with forwarding off answers FWD_DISABLED: not local, fail closed.
	 */
	return bpf_fib_lookup(skb, &f, sizeof(f), 0) == BPF_FIB_LKUP_RET_NOT_FWDED;
}

/* is_local6 tells whether addr is an address of this node (see is_local4). */
static __always_inline int is_local6(struct __sk_buff *skb, const __u8 *addr, __u32 ifindex)
{
	struct bpf_fib_lookup f = {};
	struct addr6 a;

	__builtin_memcpy(a.a, addr, 16);
	if (bpf_map_lookup_elem(&pc_local_addrs6, &a))
		return 1;
	if (!(CONFIG.flags & PC_CFG_FIB_LOCAL))
		return 0;
	f.family = AF_INET6;
	__builtin_memcpy(f.ipv6_dst, addr, 16);
	f.ifindex = ifindex;
	return bpf_fib_lookup(skb, &f, sizeof(f), 0) == BPF_FIB_LKUP_RET_NOT_FWDED;
}

/* dnat_target finds the published port the packet is for, if any, and fills
 * nat with the tuple it is translated to.
 */
static __always_inline int dnat_target(struct __sk_buff *skb, const struct pkt *p, __u32 fib_ifindex,
				       struct ct_key *nat, __u32 *ifindex)
{
	struct port_target *pt;
	__u16 hport;

	if (!(p->flags & PKT_F_L4))
		return 0;
	if (p->t.proto != IPPROTO_TCP && p->t.proto != IPPROTO_UDP && p->t.proto != IPPROTO_SCTP)
		return 0;
	/* 127.0.0.0/8 from the wire is never a published address (B11). */
	if ((p->t.daddr & bpf_htonl(0xff000000)) == bpf_htonl(0x7f000000))
		return 0;
	pt = port_lookup(p->t.proto, p->t.daddr, p->t.dport);
	if (!pt) {
		pt = port_lookup(p->t.proto, 0, p->t.dport);
		if (!pt || !is_local4(skb, p->t.daddr, fib_ifindex))
			return 0;
	}
	hport = bpf_ntohs(p->t.dport);
	if (hport < pt->host_lo || hport > pt->host_hi)
		return 0;
	*nat = p->t;
	nat->daddr = pt->addr;
	nat->dport = bpf_htons(pt->port_lo + (hport - pt->host_lo));
	*ifindex = pt->ifindex;
	return 1;
}

/* dnat6_target finds the published port the packet is for, if any, and
 * fills nat with the tuple it is translated to.
 */
static __always_inline int dnat6_target(struct __sk_buff *skb, const struct pkt *p, struct ct6_key *fwd,
					struct ct6_key *nat, __u32 *ifindex)
{
	struct port6_target *pt;
	__u16 hport;

	if (!(p->flags & PKT_F_L4))
		return 0;
	if (p->nexthdr != IPPROTO_TCP && p->nexthdr != IPPROTO_UDP && p->nexthdr != IPPROTO_SCTP)
		return 0;
	/* ::1 from the wire is never a published address (B11). */
	if (addr6_is_loopback(p->daddr6))
		return 0;
	pt = port6_lookup(p->nexthdr, p->daddr6, p->t.dport);
	if (!pt) {
		pt = port6_lookup(p->nexthdr, 0, p->t.dport);
		if (!pt || !is_local6(skb, p->daddr6, p->ifindex))
			return 0;
	}
	hport = bpf_ntohs(p->t.dport);
	if (hport < pt->host_lo || hport > pt->host_hi)
		return 0;
	*nat = *fwd;
	__builtin_memcpy(nat->daddr, pt->addr, 16);
	nat->dport = bpf_htons(pt->port_lo + (hport - pt->host_lo));
	*ifindex = pt->ifindex;
	return 1;
}

/* can_pick_port: the source port of p's flow may move when it is translated:
 * TCP, UDP, echo ids and SCTP (the rewrite carries the change into its
 * CRC32c, which it cannot do for a fragment: such an SCTP packet keeps its
 * port).
 */
static __always_inline int can_pick_port(const struct pkt *p)
{
	return (p->flags & PKT_F_L4) &&
	       (p->t.proto == IPPROTO_TCP || p->t.proto == IPPROTO_UDP ||
		(p->t.proto == IPPROTO_SCTP && !(p->flags & PKT_F_FRAG)) ||
		(p->t.proto == IPPROTO_ICMP && p->icmp_type == ICMP_ECHO));
}

/* can_pick_port6 is can_pick_port for IPv6. */
static __always_inline int can_pick_port6(const struct pkt *p)
{
	return (p->flags & PKT_F_L4) &&
	       (p->nexthdr == IPPROTO_TCP || p->nexthdr == IPPROTO_UDP ||
		(p->nexthdr == IPPROTO_SCTP && !(p->flags & PKT_F_FRAG)) ||
		(p->nexthdr == IPPROTO_ICMPV6 && p->icmp_type == ICMPV6_ECHO_REQUEST));
}

#endif /* __PC_PORTS_H__ */
