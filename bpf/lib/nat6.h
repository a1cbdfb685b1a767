/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Published ports over IPv6 (B6): destination NAT to the container's IPv6
 * address, the client's address kept, as IPv4 does (lib/nat.h). The same
 * table holds the masquerade pairs of IPv6 traffic containers open
 * (lib/snat6.h); on a network without masquerade that traffic is routed,
 * not translated (lib/ct6.h).
 *
 * A flow is two halves in pc_nat6, like pc_ct: the forward half is keyed by
 * the client's packet as it arrives on the uplink and holds the tuple it is
 * sent on with (the container's address and port); the reverse half is keyed
 * by the container's reply and holds the reply's tuple after translation
 * back (from the node address and host port). Either half's partner key is
 * the reverse of its nat field. The uplink ingress program applies forward
 * halves, the endpoint program reverse halves.
 */
#ifndef __PC_NAT6_H__
#define __PC_NAT6_H__

#include "ct6.h"

static __always_inline void ct6_swap(struct ct6_key *out, const struct ct6_key *in)
{
	__builtin_memcpy(out->saddr, in->daddr, 16);
	__builtin_memcpy(out->daddr, in->saddr, 16);
	out->sport = in->dport;
	out->dport = in->sport;
	out->proto = in->proto;
	out->pad[0] = 0;
	out->pad[1] = 0;
	out->pad[2] = 0;
}

static __always_inline int addr6_equal(const __u8 *a, const __u8 *b)
{
	const __u32 *x = (const __u32 *)a, *y = (const __u32 *)b;

	return ((x[0] ^ y[0]) | (x[1] ^ y[1]) | (x[2] ^ y[2]) | (x[3] ^ y[3])) == 0;
}

static __always_inline struct port6_target *port6_lookup(__u8 proto, const __u8 *addr, __be16 port)
{
	struct port6_key k = { .prefixlen = 160 + 16, .proto = proto, .port = port };

	if (addr)
		__builtin_memcpy(k.addr, addr, 16);
	return bpf_map_lookup_elem(&pc_ports6, &k);
}

/* port6_maps_to is port_maps_to (lib/nat.h) for IPv6. */
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

/* nat6_lookup returns the half keyed by k if it applies at hook; the pair of
 * a published port removed or changed since is deleted instead (B13, see
 * ct_lookup in lib/nat.h for why the datapath checks). Masquerade pairs
 * have no mapping to check.
 */
static __always_inline struct nat6_entry *nat6_lookup(const struct ct6_key *k, __u8 hook)
{
	struct nat6_entry *e = bpf_map_lookup_elem(&pc_nat6, k);
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
	ct6_swap(&pk, &e->nat);
	bpf_map_delete_elem(&pc_nat6, &pk);
	bpf_map_delete_elem(&pc_nat6, k);
	return 0;
}

/* nat6_touch: ct_touch for pc_nat6. */
static __always_inline void nat6_touch(struct nat6_entry *e, const struct pkt *p, __u64 now)
{
	__u8 old = e->state, st = ct_next_state(old, e->flags & CT_F_REVERSE, p);

	if (st != old) {
		struct nat6_entry *pe;
		struct ct6_key pk;

		e->state = st;
		ct6_swap(&pk, &e->nat);
		pe = bpf_map_lookup_elem(&pc_nat6, &pk);
		if (pe) {
			pe->state = st;
			pe->expires = now + ct_timeout_ns(p->t.proto, st);
		}
	}
	e->expires = now + ct_timeout_ns(p->t.proto, st);
}

/* nat6_reclaim frees the pair that holds key k when both its halves
 * expired; pk is room for the partner's key. Returns 1 when k is free now.
 */
static __always_inline int nat6_reclaim(const struct ct6_key *k, struct ct6_key *pk, __u64 now)
{
	struct nat6_entry *e, *pe;

	e = bpf_map_lookup_elem(&pc_nat6, k);
	if (!e)
		return 1;
	if (e->expires > now)
		return 0;
	ct6_swap(pk, &e->nat);
	pe = bpf_map_lookup_elem(&pc_nat6, pk);
	if (pe && pe->expires > now)
		return 0;
	if (pe)
		bpf_map_delete_elem(&pc_nat6, pk);
	bpf_map_delete_elem(&pc_nat6, k);
	stat_inc(PC_STAT_CT_RECLAIMED);
	return 1;
}

/* nat6_put_rev inserts rev, the reverse half of a flow that leaves as nat,
 * with BPF_NOEXIST: it reserves the reply tuple. An expired pair holding
 * that tuple is taken over. rk and pk are room for keys. Returns 0,
 * -EEXIST or another error.
 */
static __always_inline int nat6_put_rev(const struct ct6_key *nat, const struct nat6_entry *rev, struct ct6_key *rk,
					struct ct6_key *pk, __u64 now)
{
	int err;

	ct6_swap(rk, nat);
	err = bpf_map_update_elem(&pc_nat6, rk, rev, BPF_NOEXIST);
	if (err == -EEXIST && nat6_reclaim(rk, pk, now))
		err = bpf_map_update_elem(&pc_nat6, rk, rev, BPF_NOEXIST);
	return err;
}

/* pc_nat6_reserve reserves a reply tuple for r->e with a free source port
 * (masquerade), as ct_create (lib/nat.h) does for IPv4: r->nat's own port
 * when free and not one of the node's ephemeral ports, else random ports
 * of the SNAT range. A global function, verified once on its own: inlined,
 * the rest of pc_uplink_egress would be walked once more for every try it
 * can leave the loop from, and that program is near the verifier's limit
 * with the most retries already. Its frame adds to its caller's, so its
 * keys are in r. Returns 0 or a PC_DROP_* reason.
 */
__attribute__((noinline)) int pc_nat6_reserve(struct nat6_resv *r)
{
	__u32 span = (__u32)CONFIG.nat_port_max - CONFIG.nat_port_min + 1;
	__u32 tries = CONFIG.nat_retries;
	__u64 now = pc_now();
	int err, i;

	if (!r)
		return PC_DROP_NAT_EXHAUSTED;
	if (tries > PC_NAT_MAX_TRIES)
		tries = PC_NAT_MAX_TRIES;
	if (port_is_local(r->nat.sport))
		r->nat.sport = bpf_htons(CONFIG.nat_port_min + bpf_get_prandom_u32() % span);
	for (i = 0; i <= PC_NAT_MAX_TRIES && i <= tries; i++) {
		if (i > 0) {
			r->nat.sport = bpf_htons(CONFIG.nat_port_min + bpf_get_prandom_u32() % span);
			stat_inc(PC_STAT_NAT_RETRY);
		}
		err = nat6_put_rev(&r->nat, &r->e, &r->rk, &r->pk, now);
		if (err == 0)
			return 0;
		if (err != -EEXIST)
			return PC_DROP_CT_FULL;
	}
	return PC_DROP_NAT_EXHAUSTED;
}

/* nat6_rev_init fills e as the reverse half of a new flow whose first
 * packet has tuple fwd.
 */
static __always_inline void nat6_rev_init(struct nat6_entry *e, const struct ct6_key *fwd, const struct ct_new *n)
{
	__builtin_memset(e, 0, sizeof(*e));
	e->expires = pc_now() + ct_timeout_ns(fwd->proto, 0);
	e->flags = n->flags | CT_F_REVERSE;
	e->hooks = n->hooks_rev;
	e->ifindex = n->ifindex;
	ct6_swap(&e->nat, fwd);
}

/* nat6_put_fwd completes the pair whose reverse half e (for a flow leaving
 * as nat) is in: e becomes the forward half, keyed fwd. Without it the
 * reservation is given back (rk: room for its key). Returns 0,
 * PC_DROP_CT_FULL or CT_CREATE_RACE.
 */
static __always_inline int nat6_put_fwd(const struct ct6_key *fwd, const struct ct6_key *nat, struct nat6_entry *e,
					struct ct6_key *rk, const struct ct_new *n)
{
	int err;

	e->flags = n->flags;
	e->hooks = n->hooks_fwd;
	e->nat = *nat;
	err = bpf_map_update_elem(&pc_nat6, fwd, e, BPF_NOEXIST);
	if (err) {
		ct6_swap(rk, nat);
		bpf_map_delete_elem(&pc_nat6, rk);
		return err == -EEXIST ? CT_CREATE_RACE : PC_DROP_CT_FULL;
	}
	stat_inc(PC_STAT_CT_CREATED);
	return 0;
}

/* nat6_create inserts the pair of a new published-port flow whose first
 * packet has tuple fwd and leaves as *nat: reverse half first
 * (nat6_put_rev), then the forward half, rolled back on failure. The
 * client's port is kept, so there is no port to pick (masquerade picks
 * one: lib/snat6.h). Returns 0, a PC_DROP_* reason, or CT_CREATE_RACE.
 */
static __always_inline int nat6_create(const struct ct6_key *fwd, const struct ct6_key *nat, const struct ct_new *n)
{
	struct nat6_entry e;
	struct ct6_key rk, pk;
	int err;

	nat6_rev_init(&e, fwd, n);
	err = nat6_put_rev(nat, &e, &rk, &pk, pc_now());
	if (err)
		return err == -EEXIST ? PC_DROP_NAT_CONFLICT : PC_DROP_CT_FULL;
	return nat6_put_fwd(fwd, nat, &e, &rk, n);
}

/* nat6_addr replaces the 16-byte address at off and, when csum_off is set,
 * follows the change in the checksum there (flags: BPF_F_PSEUDO_HDR when
 * it covers the address through the pseudo header). IPv6 has no header
 * checksum.
 */
static __always_inline int nat6_addr(struct __sk_buff *skb, __u32 csum_off, __u64 flags, __u32 off, const __u8 *from,
				     const __u8 *to)
{
	if (csum_off) {
		__s64 d = bpf_csum_diff((__be32 *)from, 16, (__be32 *)to, 16, 0);

		if (d < 0 || bpf_l4_csum_replace(skb, csum_off, 0, d, flags) < 0)
			return -1;
	}
	return bpf_skb_store_bytes(skb, off, to, 16, 0) < 0 ? -1 : 0;
}

/* l4_layout6 is l4_layout for IPv6: ICMPv6 has its echo id where ICMP has
 * it, and unlike ICMP a checksum over the pseudo header.
 */
static __always_inline int l4_layout6(__u8 proto, __u32 l4_off, struct l4_layout *l)
{
	if (proto != IPPROTO_ICMPV6)
		return l4_layout(proto, l4_off, l);
	l->csum_flags = 0;
	l->pseudo = 1;
	l->csum_off = l4_off + 2;
	l->sport_off = l4_off + 4;
	l->dport_off = l4_off + 4;
	return 1;
}

/* nat6_rewrite turns the packet's tuple from into to, as nat_rewrite4 does
 * for IPv4.
 */
static __always_inline int nat6_rewrite(struct __sk_buff *skb, const struct pkt *p, const struct ct6_key *from,
					const struct ct6_key *to)
{
	struct l4_layout l = {};
	int l4 = (p->flags & PKT_F_L4) && l4_layout6(from->proto, p->l4_off, &l);
	__u32 co = l4 && l.pseudo ? l.csum_off : 0;
	__u64 fl = l.csum_flags | BPF_F_PSEUDO_HDR;

	if (!addr6_equal(from->saddr, to->saddr) && nat6_addr(skb, co, fl, p->l3_off + 8, from->saddr, to->saddr) < 0)
		return -1;
	if (!addr6_equal(from->daddr, to->daddr) && nat6_addr(skb, co, fl, p->l3_off + 24, from->daddr, to->daddr) < 0)
		return -1;
	if (!l4)
		return 0;
	if (from->sport != to->sport) {
		if (l.csum_off && bpf_l4_csum_replace(skb, l.csum_off, from->sport, to->sport, l.csum_flags | 2) < 0)
			return -1;
		if (bpf_skb_store_bytes(skb, l.sport_off, &to->sport, 2, 0) < 0)
			return -1;
	}
	if (from->dport != to->dport) {
		if (l.csum_off && bpf_l4_csum_replace(skb, l.csum_off, from->dport, to->dport, l.csum_flags | 2) < 0)
			return -1;
		if (bpf_skb_store_bytes(skb, l.dport_off, &to->dport, 2, 0) < 0)
			return -1;
	}
	if (from->proto == IPPROTO_SCTP)
		return sctp_fix_crc(skb, p, ports_word(from->sport, from->dport), ports_word(to->sport, to->dport));
	return 0;
}

/* nat6_apply translates a packet that matched half e; k is its tuple. */
static __always_inline int nat6_apply(struct __sk_buff *skb, const struct pkt *p, const struct ct6_key *k,
				      struct nat6_entry *e)
{
	struct ct6_key to = e->nat;

	nat6_touch(e, p, pc_now());
	return nat6_rewrite(skb, p, k, &to);
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

static __always_inline int addr6_is_loopback(const __u8 *a)
{
	const __u32 *x = (const __u32 *)a;

	return (x[0] | x[1] | x[2]) == 0 && x[3] == bpf_htonl(1);
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

/* nat6_first finishes the first packet p (tuple k) of a new flow that
 * leaves as *nat, once its pair was made with result rc: rewritten, or on
 * the flow another CPU made meanwhile (hook: where p is). Returns 0 or a
 * PC_DROP_* reason.
 */
static __always_inline int nat6_first(struct __sk_buff *skb, const struct pkt *p, const struct ct6_key *k,
				      const struct ct6_key *nat, int rc, __u32 flags, __u8 hook)
{
	struct nat6_entry *e;

	if (rc == CT_CREATE_RACE) {
		e = nat6_lookup(k, hook);
		if (!e)
			return PC_DROP_NAT_CONFLICT;
		return nat6_apply(skb, p, k, e) < 0 ? PC_DROP_REWRITE : 0;
	}
	if (rc)
		return rc;
	if (trace_on(PC_TRACE_NAT))
		pc_trace_nat6(p, nat, flags);
	return nat6_rewrite(skb, p, k, nat) < 0 ? PC_DROP_REWRITE : 0;
}

#define NAT6_NONE (-1)

/* nat6_uplink_in translates a packet arriving on an uplink for a published
 * port: one of a known flow, or the first of a new one. Returns 0 when it
 * was translated, NAT6_NONE when it is not for a published port, or a
 * PC_DROP_* reason.
 */
static __always_inline int nat6_uplink_in(struct __sk_buff *skb, const struct pkt *p)
{
	struct ct_new n = { .flags = CT_F_DNAT, .hooks_fwd = HOOK_UPLINK_INGRESS, .hooks_rev = HOOK_EP_INGRESS };
	struct nat6_entry *e;
	struct ct6_key k, nat;

	/* Protocols without ports have a tuple too (masquerade): only a later
	 * fragment whose first was not seen has none.
	 */
	if ((p->flags & (PKT_F_PORTS | PKT_F_NONFIRST)) == PKT_F_NONFIRST)
		return NAT6_NONE;
	ct6_tuple(p, &k);
	e = nat6_lookup(&k, HOOK_UPLINK_INGRESS);
	if (e)
		return nat6_apply(skb, p, &k, e) < 0 ? PC_DROP_REWRITE : 0;
	if (!dnat6_target(skb, p, &k, &nat, &n.ifindex))
		return NAT6_NONE;
	return nat6_first(skb, p, &k, &nat, nat6_create(&k, &nat, &n), CT_F_DNAT, HOOK_UPLINK_INGRESS);
}

/* nat6_endpoint_in translates a container's reply on a published-port
 * flow back to the node address and host port. Returns 1 when it did, 0
 * when the packet is no such reply, -1 when a helper failed.
 */
static __always_inline int nat6_endpoint_in(struct __sk_buff *skb, const struct pkt *p)
{
	struct nat6_entry *e;
	struct ct6_key k;

	if (!(p->flags & PKT_F_PORTS))
		return 0;
	ct6_tuple(p, &k);
	e = nat6_lookup(&k, HOOK_EP_INGRESS);
	if (!e)
		return 0;
	return nat6_apply(skb, p, &k, e) < 0 ? -1 : 1;
}

/* nat6_port replaces the 2-byte port at off of the packet quoted by an
 * ICMPv6 error, with the ICMPv6 checksum at csum (quoted bytes are payload
 * to it).
 */
static __always_inline int nat6_port(struct __sk_buff *skb, __u32 csum, __u32 off, const __be16 *from, const __be16 *to)
{
	if (bpf_l4_csum_replace(skb, csum, *from, *to, 2) < 0)
		return -1;
	return bpf_skb_store_bytes(skb, off, to, 2, 0) < 0 ? -1 : 0;
}

/* nat6_icmp_error translates an ICMPv6 error about a published-port or
 * masqueraded flow (the quoted packet TCP, UDP, SCTP or an echo), as
 * nat_icmp_error4 does for IPv4: "packet too big" above all, without
 * which path MTU discovery over IPv6 (where routers never fragment) fails
 * for published ports. The quoted packet belongs to the flow going the
 * other way, so the half keyed by its tuple reversed applies: the quoted
 * tuple gets the reverse translation, the outer addresses the forward one
 * where they are the flow's (a router on the path keeps its own). On the
 * uplink (HOOK_UPLINK_INGRESS) that turns an error for the node's address
 * into one for the container; on the container side (HOOK_EP_INGRESS) a
 * container's error about a client's packet leaves with the node's
 * address. Quoted TCP/UDP checksums are left alone, as for IPv4. The
 * translation is read from the map entry in place: the endpoint program's
 * stack has no room for copies. Returns 1 when translated, 0 when there is
 * no such flow, -1 when a helper failed.
 */
static __always_inline int nat6_icmp_error(struct __sk_buff *skb, const struct pkt *p, __u8 hook)
{
	__u32 in3 = p->l4_off + 8, in4 = in3 + sizeof(struct ipv6hdr), csum = p->l4_off + 2;
	struct ct6_key k = {};
	struct l4_layout l = {};
	struct nat6_entry *e;
	struct ipv6hdr in;
	struct l4hdr8 l4;
	__be16 sport, dport;

	if (bpf_skb_load_bytes(skb, in3, &in, sizeof(in)) < 0 || in.version != 6)
		return 0;
	if (in.nexthdr != IPPROTO_TCP && in.nexthdr != IPPROTO_UDP && in.nexthdr != IPPROTO_SCTP &&
	    in.nexthdr != IPPROTO_ICMPV6)
		return 0;
	if (!l4_layout6(in.nexthdr, in4, &l) || bpf_skb_load_bytes(skb, in4, &l4, sizeof(l4)) < 0)
		return 0;
	l4_ports(in.nexthdr, &l4, &sport, &dport);
	/* A quoted echo: its id plays the ports (an error never quotes an error). */
	if (in.nexthdr == IPPROTO_ICMPV6) {
		if (l4.icmp.type == ICMPV6_ECHO_REQUEST)
			sport = l4.icmp.id;
		else if (l4.icmp.type == ICMPV6_ECHO_REPLY)
			dport = l4.icmp.id;
		else
			return 0;
	}
	__builtin_memcpy(k.saddr, in.daddr, 16);
	__builtin_memcpy(k.daddr, in.saddr, 16);
	k.sport = dport;
	k.dport = sport;
	k.proto = in.nexthdr;
	e = nat6_lookup(&k, hook);
	if (!e)
		return 0;

	/* The quoted packet as the flow's other end sent it: e->nat reversed. */
	if (!addr6_equal(in.saddr, e->nat.daddr) && nat6_addr(skb, csum, 0, in3 + 8, in.saddr, e->nat.daddr) < 0)
		return -1;
	if (!addr6_equal(in.daddr, e->nat.saddr) && nat6_addr(skb, csum, 0, in3 + 24, in.daddr, e->nat.saddr) < 0)
		return -1;
	if (sport != e->nat.dport && nat6_port(skb, csum, l.sport_off, &sport, &e->nat.dport) < 0)
		return -1;
	if (dport != e->nat.sport && nat6_port(skb, csum, l.dport_off, &dport, &e->nat.sport) < 0)
		return -1;
	/* The outer addresses that are the flow's, through the pseudo header. */
	if (addr6_equal(p->saddr6, k.saddr) && !addr6_equal(k.saddr, e->nat.saddr) &&
	    nat6_addr(skb, csum, BPF_F_PSEUDO_HDR, p->l3_off + 8, p->saddr6, e->nat.saddr) < 0)
		return -1;
	if (addr6_equal(p->daddr6, k.daddr) && !addr6_equal(k.daddr, e->nat.daddr) &&
	    nat6_addr(skb, csum, BPF_F_PSEUDO_HDR, p->l3_off + 24, p->daddr6, e->nat.daddr) < 0)
		return -1;
	stat_inc(PC_STAT_ICMP_ERR_NAT);
	return 1;
}

#endif /* __PC_NAT6_H__ */
