/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Connection tracking and NAT for IPv4.
 *
 * A flow is two halves in pc_ct. The forward half is keyed by the tuple of
 * the first packet and holds the tuple that packet leaves with; the reverse
 * half is keyed by the reply as it arrives (the translated tuple, reversed)
 * and holds the reply's tuple after translation back. Either half's partner
 * key is the reverse of its nat field, which is how state changes, the
 * datapath's take-over of expired pairs and the agent's GC find the other
 * half.
 */
#ifndef __PC_NAT_H__
#define __PC_NAT_H__

#include "trace.h"
#include "crc32c.h"

#define NSEC_PER_SEC 1000000000ULL

static __always_inline void ct_swap(struct ct_key *out, const struct ct_key *in)
{
	out->saddr = in->daddr;
	out->daddr = in->saddr;
	out->sport = in->dport;
	out->dport = in->sport;
	out->proto = in->proto;
	out->pad[0] = 0;
	out->pad[1] = 0;
	out->pad[2] = 0;
}

static __always_inline __u64 ct_timeout_ns(__u8 proto, __u8 state)
{
	__u32 s = CONFIG.other_timeout;

	if (proto == IPPROTO_TCP) {
		if ((state & CT_S_RST) || ((state & CT_S_FIN_FWD) && (state & CT_S_FIN_REV)))
			s = CONFIG.tcp_close_timeout;
		else if (state & CT_S_REPLIED)
			s = CONFIG.tcp_est_timeout;
		else
			s = CONFIG.tcp_syn_timeout;
	}
	return (__u64)s * NSEC_PER_SEC;
}

/* ct_next_state is what a packet of the flow says about it: the first
 * reply, FIN either way, RST, or a fresh SYN on a tuple that was closing
 * (which starts it over). reverse: the packet matched the reply half.
 */
static __always_inline __u8 ct_next_state(__u8 old, int reverse, const struct pkt *p)
{
	__u8 st = old;

	if (reverse)
		st |= CT_S_REPLIED;
	if (p->t.proto == IPPROTO_TCP && (p->flags & PKT_F_L4)) {
		__u8 fl = p->tcp_flags;

		if (!reverse && (fl & TCP_FLAG_SYN) && !(fl & TCP_FLAG_ACK) &&
		    (old & (CT_S_RST | CT_S_FIN_FWD | CT_S_FIN_REV)))
			st = 0;
		if (fl & TCP_FLAG_RST)
			st |= CT_S_RST;
		if (fl & TCP_FLAG_FIN)
			st |= reverse ? CT_S_FIN_REV : CT_S_FIN_FWD;
	}
	return st;
}

/* ct_touch records what the packet says about the flow and pushes the
 * deadline of the half it matched. State changes (first reply, FIN, RST, a
 * new SYN on a closed tuple) are copied to the partner half with its
 * deadline, so both halves time out alike; an ordinary packet writes only its
 * own half. The GC looks at both deadlines.
 */
static __always_inline void ct_touch(struct ct_entry *e, const struct pkt *p, __u64 now)
{
	__u8 old = e->state, st = ct_next_state(old, e->flags & CT_F_REVERSE, p);

	if (st != old) {
		struct ct_key pk;
		struct ct_entry *pe;

		e->state = st;
		ct_swap(&pk, &e->nat);
		pe = bpf_map_lookup_elem(&pc_ct, &pk);
		if (pe) {
			pe->state = st;
			pe->expires = now + ct_timeout_ns(p->t.proto, st);
		}
	}
	e->expires = now + ct_timeout_ns(p->t.proto, st);
}

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

/* ct_dnat_live says whether the published port that created the DNAT pair
 * of half e (keyed k) still translates as it did (B13). The forward half
 * holds the host address and port in its key and the target in nat; the
 * reverse half the other way round.
 *
 * Why the datapath checks, rather than the agent deleting the pairs before
 * it answers: pc_ct has no index by mapping, so each removal would walk the
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
	struct ct_entry *e = bpf_map_lookup_elem(&pc_ct, k);
	struct ct_key pk;

	if (!e || !(e->hooks & hook))
		return 0;
	if (!(e->flags & CT_F_DNAT) || ct_dnat_live(k, e))
		return e;
	ct_swap(&pk, &e->nat);
	bpf_map_delete_elem(&pc_ct, &pk);
	bpf_map_delete_elem(&pc_ct, k);
	return 0;
}

/* ct_reclaim frees the pair that holds key k when both its halves expired
 * (the agent's GC has not come by yet). Returns 1 when k is free now.
 */
static __always_inline int ct_reclaim(const struct ct_key *k, __u64 now)
{
	struct ct_entry *e, *pe;
	struct ct_key pk;

	e = bpf_map_lookup_elem(&pc_ct, k);
	if (!e)
		return 1;
	if (e->expires > now)
		return 0;
	ct_swap(&pk, &e->nat);
	pe = bpf_map_lookup_elem(&pc_ct, &pk);
	if (pe && pe->expires > now)
		return 0;
	if (pe)
		bpf_map_delete_elem(&pc_ct, &pk);
	bpf_map_delete_elem(&pc_ct, k);
	stat_inc(PC_STAT_CT_RECLAIMED);
	return 1;
}

struct ct_new {
	__u8 flags;     /* CT_F_* of the pair */
	__u8 hooks_fwd; /* HOOK_* of the forward half */
	__u8 hooks_rev; /* HOOK_* of the reverse half */
	__u8 pick_port; /* nat->sport may change to find a free reply tuple */
	__u32 ifindex;  /* endpoint of the flow */
};

#define CT_CREATE_RACE (-1)

/* can_pick_port: the source port of p's flow may move when it is translated:
 * TCP, UDP, echo ids and SCTP (nat_rewrite4 carries the change into its
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

/* port_is_local: port (network order) is one of the node's ephemeral
 * ports. A translated flow must not keep such a port: the node's own
 * connections take theirs from that range, knowing nothing of ours, and the
 * first one to the same peer would share the flow's reply tuple (its
 * answers would be translated to the container). The configured range for
 * picked ports lies outside it.
 */
static __always_inline int port_is_local(__be16 port)
{
	__u16 h = bpf_ntohs(port);

	return h >= CONFIG.local_port_min && h <= CONFIG.local_port_max;
}

/* ct_create inserts the pair for a new flow whose first packet has tuple
 * fwd and should leave as *nat. The reverse half goes in first, with
 * BPF_NOEXIST, which reserves the reply tuple (and so the source port)
 * atomically against other CPUs; then the forward half, and if that fails the
 * reservation is rolled back. With pick_port the original source port is
 * tried first, unless it is one of the node's ephemeral ports, then random
 * ports of the configured range.
 *
 * Returns 0 (nat holds the final tuple), a PC_DROP_* reason, or
 * CT_CREATE_RACE when another CPU created the same flow meanwhile.
 */
static __always_inline int ct_create(const struct pkt *p, const struct ct_key *fwd, struct ct_key *nat,
				     const struct ct_new *n)
{
	__u32 span = (__u32)CONFIG.nat_port_max - CONFIG.nat_port_min + 1;
	__u32 tries = CONFIG.nat_retries;
	__u64 now = pc_now();
	struct ct_entry fe = {}, re = {};
	struct ct_key rk;
	int err, i;

	if (tries > PC_NAT_MAX_TRIES)
		tries = PC_NAT_MAX_TRIES;
	if (!n->pick_port)
		tries = 0;
	else if (port_is_local(nat->sport))
		nat->sport = bpf_htons(CONFIG.nat_port_min + bpf_get_prandom_u32() % span);

	re.expires = now + ct_timeout_ns(fwd->proto, 0);
	re.flags = n->flags | CT_F_REVERSE;
	re.hooks = n->hooks_rev;
	re.ifindex = n->ifindex;
	ct_swap(&re.nat, fwd);

	/* Bounded loop: the verifier walks it PC_NAT_MAX_TRIES+1 times at most. */
	for (i = 0; i <= PC_NAT_MAX_TRIES; i++) {
		if (i > tries)
			return n->pick_port ? PC_DROP_NAT_EXHAUSTED : PC_DROP_NAT_CONFLICT;
		if (i > 0) {
			nat->sport = bpf_htons(CONFIG.nat_port_min + bpf_get_prandom_u32() % span);
			stat_inc(PC_STAT_NAT_RETRY);
		}
		ct_swap(&rk, nat);
		err = bpf_map_update_elem(&pc_ct, &rk, &re, BPF_NOEXIST);
		if (err == -EEXIST && ct_reclaim(&rk, now))
			err = bpf_map_update_elem(&pc_ct, &rk, &re, BPF_NOEXIST);
		if (err == 0)
			break;
		if (err != -EEXIST)
			return PC_DROP_CT_FULL;
	}
	if (i > PC_NAT_MAX_TRIES)
		return PC_DROP_NAT_EXHAUSTED;

	fe.expires = re.expires;
	fe.flags = n->flags;
	fe.hooks = n->hooks_fwd;
	fe.ifindex = n->ifindex;
	fe.nat = *nat;
	err = bpf_map_update_elem(&pc_ct, fwd, &fe, BPF_NOEXIST);
	if (err) {
		bpf_map_delete_elem(&pc_ct, &rk); /* give the reply tuple back */
		return err == -EEXIST ? CT_CREATE_RACE : PC_DROP_CT_FULL;
	}
	stat_inc(PC_STAT_CT_CREATED);
	return 0;
}

/* Offsets of the L4 checksum and of the ports (ICMP: the echo id, which
 * plays both ports per struct ct_key's rule).
 */
struct l4_layout {
	__u32 csum_off;  /* 0: no checksum to fix (SCTP: CRC32c without pseudo header) */
	__u32 sport_off;
	__u32 dport_off;
	__u64 csum_flags; /* BPF_F_MARK_MANGLED_0 for UDP: a zero checksum stays zero */
	int pseudo;       /* the checksum covers the addresses */
};

static __always_inline int l4_layout(__u8 proto, __u32 l4_off, struct l4_layout *l)
{
	l->csum_flags = 0;
	l->pseudo = 0;
	l->csum_off = 0;
	l->sport_off = l4_off;
	l->dport_off = l4_off + 2;
	switch (proto) {
	case IPPROTO_TCP:
		l->csum_off = l4_off + 16;
		l->pseudo = 1;
		return 1;
	case IPPROTO_UDP:
		l->csum_off = l4_off + 6;
		l->pseudo = 1;
		l->csum_flags = BPF_F_MARK_MANGLED_0;
		return 1;
	case IPPROTO_SCTP:
		return 1;
	case IPPROTO_ICMP:
		l->csum_off = l4_off + 2;
		l->sport_off = l4_off + 4;
		l->dport_off = l4_off + 4;
		return 1;
	}
	return 0;
}

/* sctp_fix_crc follows a change of the SCTP ports (old and new: the four
 * port bytes as loaded) in the CRC32c. A CRC field of zero is left alone: a
 * local SCTP stack that leaves the CRC to offload (CHECKSUM_PARTIAL, which
 * veth passes on) writes zero there, and the CRC is computed later over the
 * bytes as we leave them; folding a delta into it would break that. (A real
 * CRC of zero is a 2^-32 case; that packet is then lost.) A fragmented
 * packet is left alone too: its CRC covers the whole datagram, whose length
 * the first fragment does not tell.
 */
static __always_inline int sctp_fix_crc(struct __sk_buff *skb, const struct pkt *p, __u32 old, __u32 new)
{
	__u32 crc;

	if (old == new || (p->flags & PKT_F_FRAG) || p->l4_len < 12)
		return 0;
	if (bpf_skb_load_bytes(skb, p->l4_off + 8, &crc, 4) < 0)
		return -1;
	if (crc == 0)
		return 0;
	crc ^= pc_crc32c_delta(old ^ new, p->l4_len - 4);
	return bpf_skb_store_bytes(skb, p->l4_off + 8, &crc, 4, 0);
}

static __always_inline __u32 ports_word(__be16 sport, __be16 dport)
{
	return (__u32)sport | ((__u32)dport << 16);
}

/* csum_update32 returns an Internet checksum after the 32-bit word from
 * became to (RFC 1624, eqn. 3: HC' = ~(~HC + ~m + m')). The sum does not
 * depend on byte order, so network-order values go in as they are.
 */
static __always_inline __u16 csum_update32(__u16 check, __u32 from, __u32 to)
{
	__u32 s = (__u16)~check, nf = ~from;

	s += (nf & 0xffff) + (nf >> 16) + (to & 0xffff) + (to >> 16);
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__u16)~s;
}

/* ip4_words_set turns w, an IPv4 header's bytes 10 to 19 (checksum,
 * source, destination) as loaded, and with ports set the TCP or UDP ports
 * behind it (bytes 20 to 23), into those of to: the addresses with the
 * header checksum, and the ports.
 */
static __always_inline void ip4_words_set(__u16 *w, const struct ct_key *to, const int ports)
{
	w[0] = csum_update32(w[0], (__u32)w[1] | (__u32)w[2] << 16, to->saddr);
	w[0] = csum_update32(w[0], (__u32)w[3] | (__u32)w[4] << 16, to->daddr);
	w[1] = to->saddr & 0xffff;
	w[2] = to->saddr >> 16;
	w[3] = to->daddr & 0xffff;
	w[4] = to->daddr >> 16;
	if (ports) {
		w[5] = to->sport;
		w[6] = to->dport;
	}
}

/* ip_rewrite_addrs writes the IPv4 addresses of to, with the header
 * checksum, in one store: checksum, source and destination are the
 * contiguous bytes 10 to 19 of the header. With ports set it writes the
 * TCP or UDP ports of to as well, bytes 20 to 23 when the header has no
 * options. (bpf_l3_csum_replace and a store per field cost a helper call
 * each, about 15 ns on a mitigated CPU.) The header's bytes sum the same
 * before and after, so a CHECKSUM_COMPLETE skb->csum stays right; the L4
 * checksum is the caller's.
 */
static __always_inline int ip_rewrite_addrs(struct __sk_buff *skb, __u32 ip, const struct ct_key *to, const int ports)
{
	/* check, saddr, daddr (and sport, dport) as they are on the wire */
	__u16 w[7] __attribute__((aligned(8)));
	const __u32 len = ports ? 14 : 10;

	if (pkt_load(skb, ip + 10, w, len) < 0)
		return -1;
	ip4_words_set(w, to, ports);
	return bpf_skb_store_bytes(skb, ip + 10, w, len, 0);
}

/* csum_update16 is csum_update32 for a 16-bit word. */
static __always_inline __u16 csum_update16(__u16 check, __u16 from, __u16 to)
{
	__u32 s = (__u16)~check;

	s += (__u16)~from + to;
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__u16)~s;
}

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

/* tcpudp_rewrite4 writes the addresses and ports of to into a TCP or UDP
 * packet whose IP header has no options, with both checksums, in one
 * store: bytes 10 to 37 of the IP header for TCP (IP checksum, addresses,
 * ports, sequence and acknowledgement numbers, offset and flags, window,
 * TCP checksum: cks is the index of the last, in 16-bit words), 10 to 27
 * for UDP. The L4 checksum is updated as bpf_l4_csum_replace would: a
 * partial one (the pseudo header's sum, CHECKSUM_PARTIAL) takes the change
 * of the addresses only, the device summing the ports with the rest; a
 * full one takes the addresses and the ports, a UDP checksum of zero (none)
 * stays zero and a computed zero is sent as 0xffff. BPF_F_RECOMPUTE_CSUM
 * keeps a CHECKSUM_COMPLETE skb->csum right: it is a sum of the packet's
 * bytes, and the changes here do not cancel out (the pseudo header is not
 * in the packet).
 */
static __always_inline int tcpudp_rewrite4(struct __sk_buff *skb, __u32 ip, const struct ct_key *to, const __u32 len,
					   const __u32 cks, const int udp)
{
	__u16 w[14] __attribute__((aligned(8)));
	__u32 olds, oldd, oldp, newp = ports_word(to->sport, to->dport);
	__u32 partial = skb_csum_partial(skb);
	/* All ones for a partial checksum: it is a plain sum, which the
	 * update for a complemented one handles when complemented before and
	 * after. Its ports do not change (newp is oldp then).
	 */
	__u16 inv = 0xffff * partial, ck;

	if (pkt_load(skb, ip + 10, w, len) < 0)
		return -1;
	olds = (__u32)w[1] | (__u32)w[2] << 16;
	oldd = (__u32)w[3] | (__u32)w[4] << 16;
	oldp = (__u32)w[5] | (__u32)w[6] << 16;
	ck = w[cks];
	if (!(udp && ck == 0)) {
		ck ^= inv;
		ck = csum_update32(csum_update32(ck, olds, to->saddr), oldd, to->daddr);
		ck = csum_update32(ck, oldp, newp ^ ((newp ^ oldp) * partial)) ^ inv;
		if (udp && ck == 0)
			ck = 0xffff;
	}
	w[cks] = ck;
	ip4_words_set(w, to, 1);
	return bpf_skb_store_bytes(skb, ip + 10, w, len, BPF_F_RECOMPUTE_CSUM);
}

/* nat_rewrite4 turns the packet's tuple from into to: addresses with the IP
 * checksum and (pseudo header) the L4 checksum, ports when the L4 header is in
 * this packet, with SCTP's CRC32c. Non-first fragments only get their
 * addresses changed; the datagram's L4 checksum was fixed in the first
 * fragment, and the pseudo header delta does not depend on where the payload
 * is. TCP and UDP behind a header without options go through
 * tcpudp_rewrite4 when the programs can read the skb's checksum state
 * (PC_CFG_CSUM_DIRECT); everything else, and everything on older kernels,
 * through bpf_l4_csum_replace, which knows how to update the checksum for
 * each kind of skb checksum (CHECKSUM_PARTIAL from veth, above all).
 */
static __always_inline int nat_rewrite4(struct __sk_buff *skb, const struct pkt *p, const struct ct_key *from,
					const struct ct_key *to)
{
	struct l4_layout l = {};
	int l4 = (p->flags & PKT_F_L4) && l4_layout(from->proto, p->l4_off, &l);
	int addrs = from->saddr != to->saddr || from->daddr != to->daddr;
	__u32 ip = p->l3_off;

	/* The common case, TCP or UDP behind a header without options. */
	if ((CONFIG.flags & PC_CFG_CSUM_DIRECT) && l4 && l.pseudo && p->l4_off == ip + 20) {
		if (from->proto == IPPROTO_TCP)
			return tcpudp_rewrite4(skb, ip, to, 28, 13, 0) < 0 ? -1 : 0;
		return tcpudp_rewrite4(skb, ip, to, 18, 8, 1) < 0 ? -1 : 0;
	}
	if (l4 && l.pseudo && from->saddr != to->saddr &&
	    bpf_l4_csum_replace(skb, l.csum_off, from->saddr, to->saddr, l.csum_flags | BPF_F_PSEUDO_HDR | 4) < 0)
		return -1;
	if (l4 && l.pseudo && from->daddr != to->daddr &&
	    bpf_l4_csum_replace(skb, l.csum_off, from->daddr, to->daddr, l.csum_flags | BPF_F_PSEUDO_HDR | 4) < 0)
		return -1;
	if (!l4)
		return addrs && ip_rewrite_addrs(skb, ip, to, 0) < 0 ? -1 : 0;
	if (l.csum_off && from->sport != to->sport &&
	    bpf_l4_csum_replace(skb, l.csum_off, from->sport, to->sport, l.csum_flags | 2) < 0)
		return -1;
	if (l.csum_off && from->dport != to->dport &&
	    bpf_l4_csum_replace(skb, l.csum_off, from->dport, to->dport, l.csum_flags | 2) < 0)
		return -1;
	/* The common case, an address and a port of TCP or UDP behind a
	 * header without options: one store for all of them.
	 */
	if (addrs && l.pseudo && p->l4_off == ip + 20)
		return ip_rewrite_addrs(skb, ip, to, 1) < 0 ? -1 : 0;
	if (addrs && ip_rewrite_addrs(skb, ip, to, 0) < 0)
		return -1;
	if (from->sport != to->sport && bpf_skb_store_bytes(skb, l.sport_off, &to->sport, 2, 0) < 0)
		return -1;
	if (from->dport != to->dport && bpf_skb_store_bytes(skb, l.dport_off, &to->dport, 2, 0) < 0)
		return -1;
	if (from->proto == IPPROTO_SCTP)
		return sctp_fix_crc(skb, p, ports_word(from->sport, from->dport), ports_word(to->sport, to->dport));
	return 0;
}

/* ct_apply translates a packet that matched half e. */
static __always_inline int ct_apply(struct __sk_buff *skb, const struct pkt *p, struct ct_entry *e)
{
	struct ct_key to = e->nat;

	ct_touch(e, p, pc_now());
	return nat_rewrite4(skb, p, &p->t, &to);
}

/* nat_icmp_error4 translates an ICMP error about a tracked flow: the inner
 * header is a packet of the flow going the other way, so the half that
 * applies is keyed by the inner tuple reversed. The inner header gets the
 * reverse translation (addresses, ports or echo id, inner IP checksum), the
 * outer one the forward translation where its addresses are the flow's (a
 * router on the path, sending "TTL exceeded" or "fragmentation needed", keeps
 * its own source). The ICMP checksum covers the inner bytes and is fixed for
 * each of them. Inner TCP/UDP checksums are left alone: the quoted segment is
 * usually truncated and receivers do not check it.
 *
 * Returns 1 when translated, 0 when there is no flow (the caller goes on with
 * the outer header), -1 when a helper failed.
 */
static __always_inline int nat_icmp_error4(struct __sk_buff *skb, const struct pkt *p, __u8 hook)
{
	__u32 in3 = p->l4_off + 8, in4, csum = p->l4_off + 2;
	struct ct_key it = {}, k, to, nin, oto;
	struct l4_layout l = {};
	__be16 old_ck, new_ck;
	struct ct_entry *e;
	struct l4hdr8 l4;
	struct iphdr in;
	int ports = 0;

	if (p->flags & PKT_F_NONFIRST)
		return 0;
	if (bpf_skb_load_bytes(skb, in3, &in, sizeof(in)) < 0)
		return 0;
	if (in.version != 4 || in.ihl < 5 || (in.frag_off & bpf_htons(IP_OFFSET)))
		return 0;
	in4 = in3 + in.ihl * 4;
	it.saddr = in.saddr;
	it.daddr = in.daddr;
	it.proto = in.protocol;
	if (l4_min_len(in.protocol) && l4_layout(in.protocol, in4, &l) &&
	    bpf_skb_load_bytes(skb, in4, &l4, sizeof(l4)) == 0) {
		l4_ports(in.protocol, &l4, &it.sport, &it.dport);
		ports = 1;
	}
	ct_swap(&k, &it);
	e = ct_lookup(&k, hook);
	if (!e)
		return 0;
	to = e->nat;
	ct_swap(&nin, &to);

	old_ck = in.check;
	if (it.saddr != nin.saddr) {
		if (bpf_skb_store_bytes(skb, in3 + 12, &nin.saddr, 4, 0) < 0 ||
		    bpf_l3_csum_replace(skb, in3 + 10, it.saddr, nin.saddr, 4) < 0 ||
		    bpf_l4_csum_replace(skb, csum, it.saddr, nin.saddr, 4) < 0)
			return -1;
	}
	if (it.daddr != nin.daddr) {
		if (bpf_skb_store_bytes(skb, in3 + 16, &nin.daddr, 4, 0) < 0 ||
		    bpf_l3_csum_replace(skb, in3 + 10, it.daddr, nin.daddr, 4) < 0 ||
		    bpf_l4_csum_replace(skb, csum, it.daddr, nin.daddr, 4) < 0)
			return -1;
	}
	if (ports && it.sport != nin.sport) {
		if (bpf_skb_store_bytes(skb, l.sport_off, &nin.sport, 2, 0) < 0 ||
		    bpf_l4_csum_replace(skb, csum, it.sport, nin.sport, 2) < 0)
			return -1;
	}
	if (ports && it.dport != nin.dport) {
		if (bpf_skb_store_bytes(skb, l.dport_off, &nin.dport, 2, 0) < 0 ||
		    bpf_l4_csum_replace(skb, csum, it.dport, nin.dport, 2) < 0)
			return -1;
	}
	/* The inner IP checksum changed as well, and the ICMP checksum covers it. */
	if (bpf_skb_load_bytes(skb, in3 + 10, &new_ck, 2) < 0)
		return -1;
	if (new_ck != old_ck && bpf_l4_csum_replace(skb, csum, old_ck, new_ck, 2) < 0)
		return -1;

	oto = p->t;
	if (p->t.saddr == k.saddr)
		oto.saddr = to.saddr;
	if (p->t.daddr == k.daddr)
		oto.daddr = to.daddr;
	if (nat_rewrite4(skb, p, &p->t, &oto) < 0)
		return -1;
	stat_inc(PC_STAT_ICMP_ERR_NAT);
	return 1;
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

/* ct_new_flow creates the pair and rewrites the first packet. Returns 0 or a
 * PC_DROP_* reason.
 */
static __always_inline int ct_new_flow(struct __sk_buff *skb, const struct pkt *p, struct ct_key *nat,
				       const struct ct_new *n, __u8 hook)
{
	struct ct_entry *e;
	int rc;

	rc = ct_create(p, &p->t, nat, n);
	if (rc == CT_CREATE_RACE) {
		e = ct_lookup(&p->t, hook);
		if (!e)
			return PC_DROP_NAT_CONFLICT;
		return ct_apply(skb, p, e) < 0 ? PC_DROP_REWRITE : 0;
	}
	if (rc)
		return rc;
	if (trace_on(PC_TRACE_NAT))
		pc_trace_nat4(p, nat, n->flags);
	if (nat_rewrite4(skb, p, &p->t, nat) < 0)
		return PC_DROP_REWRITE;
	return 0;
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
	stat_inc(PC_STAT_REDIRECT);
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
	stat_inc(PC_STAT_REDIRECT);
	return bpf_redirect_peer(ifindex, 0);
}

#endif /* __PC_NAT_H__ */
