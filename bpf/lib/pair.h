/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Flows as pairs of halves, one logic for both families.
 *
 * A flow that is translated (and an IPv4 flow that is only tracked) is two
 * halves in a pair table: pc_flows4 for IPv4 (struct ct_key, struct ct_entry),
 * pc_flows6 for IPv6 (struct ct6_key, struct ct6_entry). The forward half is
 * keyed by the tuple of the first packet and holds the tuple that packet
 * leaves with; the reverse half is keyed by the reply as it arrives (the
 * translated tuple, reversed) and holds the reply's tuple after translation
 * back. Either half's partner key is the reverse of its nat field, which is
 * how state changes, the datapath's take-over of expired pairs and the
 * agent's GC find the other half.
 *
 * The functions here take the table as its map and its key size (PAIR_KEY4
 * or PAIR_KEY6, constants once inlined, so each family compiles to code of
 * its own types) and halves as void pointers laid out as struct half says;
 * room for keys comes from the caller, who knows their type.
 */
#ifndef __PC_PAIR_H__
#define __PC_PAIR_H__

#include "trace.h"

#define NSEC_PER_SEC 1000000000ULL

#define PAIR_KEY4 sizeof(struct ct_key)
#define PAIR_KEY6 sizeof(struct ct6_key)

/* What both entry types hold after their nat key. The 64-bit word it is
 * lets the state be updated with one atomic OR (half_state_or).
 */
struct half_tail {
	__u32 ifindex; /* endpoint host veth the flow belongs to (fast path), 0: unknown */
	__u8 flags;    /* CT_F_* */
	__u8 hooks;    /* HOOK_* */
	__u8 state;    /* CT_S_* */
	__u8 pad;
};

#define HALF_STATE_SHIFT 48 /* state's bits in the tail's 64-bit word (little endian) */

/* A half: __u64 expires, the nat key (ksz bytes), struct half_tail. */
_Static_assert(__builtin_offsetof(struct ct_entry, nat) == 8, "ct_entry: nat after expires");
_Static_assert(__builtin_offsetof(struct ct_entry, ifindex) == 8 + PAIR_KEY4, "ct_entry: tail after nat");
_Static_assert(__builtin_offsetof(struct ct6_entry, nat) == 8, "ct6_entry: nat after expires");
_Static_assert(__builtin_offsetof(struct ct6_entry, ifindex) == 8 + PAIR_KEY6, "ct6_entry: tail after nat");
_Static_assert((8 + PAIR_KEY4) % 8 == 0 && (8 + PAIR_KEY6) % 8 == 0, "the tail is an aligned 64-bit word");

static __always_inline __u64 *half_expires(void *e)
{
	return e;
}

static __always_inline void *half_nat(void *e)
{
	return e + 8;
}

static __always_inline struct half_tail *half_tail(void *e, const __u32 ksz)
{
	return e + 8 + ksz;
}

/* What both key types hold after their addresses. */
struct key_ports {
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 pad[3];
};

_Static_assert(__builtin_offsetof(struct ct_key, sport) == PAIR_KEY4 - sizeof(struct key_ports), "ct_key: ports last");
_Static_assert(__builtin_offsetof(struct ct6_key, sport) == PAIR_KEY6 - sizeof(struct key_ports), "ct6_key: ports last");

static __always_inline struct key_ports *key_ports(const void *k, const __u32 ksz)
{
	return (void *)k + ksz - sizeof(struct key_ports);
}

/* pair_key_swap: out is the reverse of in, keys of ksz bytes. */
static __always_inline void pair_key_swap(const __u32 ksz, void *out, const void *in)
{
	struct key_ports *o = key_ports(out, ksz);
	const struct key_ports *i = key_ports(in, ksz);

	if (ksz == PAIR_KEY4) {
		((struct ct_key *)out)->saddr = ((const struct ct_key *)in)->daddr;
		((struct ct_key *)out)->daddr = ((const struct ct_key *)in)->saddr;
	} else {
		__builtin_memcpy(((struct ct6_key *)out)->saddr, ((const struct ct6_key *)in)->daddr, 16);
		__builtin_memcpy(((struct ct6_key *)out)->daddr, ((const struct ct6_key *)in)->saddr, 16);
	}
	o->sport = i->dport;
	o->dport = i->sport;
	o->proto = i->proto;
	o->pad[0] = 0;
	o->pad[1] = 0;
	o->pad[2] = 0;
}

static __always_inline void ct_swap(struct ct_key *out, const struct ct_key *in)
{
	pair_key_swap(PAIR_KEY4, out, in);
}

static __always_inline void ct6_swap(struct ct6_key *out, const struct ct6_key *in)
{
	pair_key_swap(PAIR_KEY6, out, in);
}

/* ct_closing: the flow ended (RST, or FIN both ways): the short timeout. */
static __always_inline int ct_closing(__u8 state)
{
	return (state & CT_S_RST) || ((state & CT_S_FIN_FWD) && (state & CT_S_FIN_REV));
}

static __always_inline __u64 ct_timeout_ns(__u8 proto, __u8 state)
{
	__u32 s = CONFIG.other_timeout;

	if (proto == IPPROTO_TCP) {
		if (ct_closing(state))
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

/* state_or sets bits in the state byte at shift of the aligned 64-bit word
 * w, atomically: two CPUs that each add a bit (the FINs of both ways of a
 * flow, crossing) both keep theirs. The other bytes of the word are ORed
 * with 0. Returns the state as it is after, with every bit set before.
 */
static __always_inline __u8 state_or(__u64 *w, const __u32 shift, __u8 bits)
{
	__sync_fetch_and_or(w, (__u64)bits << shift);
	return *(volatile __u8 *)((void *)w + shift / 8);
}

/* pair_touch records what the packet says about the flow and pushes the
 * deadline of the half e it matched. State changes (first reply, FIN, RST)
 * go to both halves, with the partner's deadline, so both halves time out
 * alike; an ordinary packet writes only its own half. The GC looks at both
 * deadlines. pk: room for the partner's key.
 *
 * Two CPUs may touch the two halves of a flow at once (a FIN each way,
 * crossing): the bits are added with an atomic OR (state_or), never a
 * read-modify-write, so neither is lost, and each deadline is computed
 * from the state read back after the OR. A deadline can still be written
 * from a state that lacks the other CPU's bit, landed a moment later: it
 * is then that of the state before, the established timeout instead of
 * the closing one; so every packet of a closing flow writes the partner's
 * deadline too (a lookup, for the few packets after the FINs), and the
 * last ACK leaves both closing. (A deadline never ends a flow alone: the
 * GC and pair_reclaim free a pair only when both halves expired.) A new
 * SYN on a closed tuple clears the state with plain stores: that is the
 * start of another connection, whose first packets cross nothing.
 */
static __always_inline void pair_touch(void *map, const __u32 ksz, void *e, const struct pkt *p, __u64 now, void *pk)
{
	struct half_tail *t = half_tail(e, ksz);
	__u8 old = t->state, st = ct_next_state(old, t->flags & CT_F_REVERSE, p);
	void *pe;

	if (st == old && !ct_closing(st)) {
		*half_expires(e) = now + ct_timeout_ns(p->t.proto, st);
		return;
	}
	pair_key_swap(ksz, pk, half_nat(e));
	pe = bpf_map_lookup_elem(map, pk);
	if (old & ~st) {
		/* A new SYN on a closed tuple: the state starts over. */
		t->state = st;
		if (pe) {
			half_tail(pe, ksz)->state = st;
			*half_expires(pe) = now + ct_timeout_ns(p->t.proto, st);
		}
	} else {
		/* Bits added, or a closing flow's packet: the partner's
		 * deadline may predate the other CPU's bit.
		 */
		st = state_or((__u64 *)t, HALF_STATE_SHIFT, st);
		if (pe) {
			__u8 pst = state_or((__u64 *)half_tail(pe, ksz), HALF_STATE_SHIFT, st);

			*half_expires(pe) = now + ct_timeout_ns(p->t.proto, pst);
		}
	}
	*half_expires(e) = now + ct_timeout_ns(p->t.proto, st);
}

/* pair_delete deletes the half keyed k and its partner, e's (k's entry)
 * partner key built in pk.
 */
static __always_inline void pair_delete(void *map, const __u32 ksz, const void *k, void *e, void *pk)
{
	pair_key_swap(ksz, pk, half_nat(e));
	bpf_map_delete_elem(map, pk);
	bpf_map_delete_elem(map, k);
}

/* pair_reclaim frees the pair that holds key k when both its halves
 * expired (the agent's GC has not come by yet); pk is room for the
 * partner's key. Returns 1 when k is free now.
 */
static __always_inline int pair_reclaim(void *map, const __u32 ksz, const void *k, void *pk, __u64 now)
{
	void *e, *pe;

	e = bpf_map_lookup_elem(map, k);
	if (!e)
		return 1;
	if (*half_expires(e) > now)
		return 0;
	pair_key_swap(ksz, pk, half_nat(e));
	pe = bpf_map_lookup_elem(map, pk);
	if (pe && *half_expires(pe) > now)
		return 0;
	if (pe)
		bpf_map_delete_elem(map, pk);
	bpf_map_delete_elem(map, k);
	stat_inc(PC_STAT_CT_RECLAIMED);
	return 1;
}

/* pair_put_rev inserts rev, the reverse half of a flow that leaves as nat,
 * keyed rk (nat reversed, built here), with BPF_NOEXIST: that reserves the
 * reply tuple, and so the source port, atomically against other CPUs. An
 * expired pair holding the tuple is taken over. pk: room for a key.
 * Returns PC_OK, PC_E_TAKEN (a live flow has the tuple) or PC_DROP_CONNTRACK_FULL.
 */
static __always_inline int pair_put_rev(void *map, const __u32 ksz, const void *nat, const void *rev, void *rk,
					void *pk, __u64 now)
{
	int err;

	pair_key_swap(ksz, rk, nat);
	err = bpf_map_update_elem(map, rk, rev, BPF_NOEXIST);
	if (err == -EEXIST && pair_reclaim(map, ksz, rk, pk, now))
		err = bpf_map_update_elem(map, rk, rev, BPF_NOEXIST);
	if (err == 0)
		return PC_OK;
	if (err == -EEXIST)
		return PC_E_TAKEN;
	return PC_DROP_CONNTRACK_FULL;
}

/* pair_put_fwd completes a pair whose reverse half is in, keyed rk: fwd,
 * keyed k. If that fails the reservation is given back. Returns PC_OK,
 * PC_E_RACE (another CPU made the flow first) or PC_DROP_CONNTRACK_FULL.
 */
static __always_inline int pair_put_fwd(void *map, const void *k, const void *fwd, const void *rk)
{
	int err = bpf_map_update_elem(map, k, fwd, BPF_NOEXIST);

	if (err) {
		bpf_map_delete_elem(map, rk);
		return err == -EEXIST ? PC_E_RACE : PC_DROP_CONNTRACK_FULL;
	}
	stat_inc(PC_STAT_CT_CREATED);
	return PC_OK;
}

struct ct_new {
	__u8 flags;     /* CT_F_* of the pair */
	__u8 hooks_fwd; /* HOOK_* of the forward half */
	__u8 hooks_rev; /* HOOK_* of the reverse half */
	__u8 pick_port; /* nat->sport may change to find a free reply tuple */
	__u32 ifindex;  /* endpoint of the flow */
};

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

/* nat_port_random is a random port of the SNAT range, network order. */
static __always_inline __be16 nat_port_random(void)
{
	__u32 span = (__u32)CONFIG.nat_port_max - CONFIG.nat_port_min + 1;

	return bpf_htons(CONFIG.nat_port_min + bpf_get_prandom_u32() % span);
}

/* nat_tries is how many random ports a new flow may try after its own. */
static __always_inline __u32 nat_tries(void)
{
	__u32 tries = CONFIG.nat_retries;

	return tries > PC_NAT_MAX_TRIES ? PC_NAT_MAX_TRIES : tries;
}

/* A work space of struct ct_resv or ct6_resv (lib/maps.h), by its key
 * size: the wanted tuple, the half, the half's key and a spare key.
 */
_Static_assert(__builtin_offsetof(struct ct_resv, e) == PAIR_KEY4 &&
		       __builtin_offsetof(struct ct_resv, rk) == 2 * PAIR_KEY4 + 16 &&
		       __builtin_offsetof(struct ct_resv, pk) == 3 * PAIR_KEY4 + 16,
	       "ct_resv: nat, e, rk, pk");
_Static_assert(__builtin_offsetof(struct ct6_resv, e) == PAIR_KEY6 &&
		       __builtin_offsetof(struct ct6_resv, rk) == 2 * PAIR_KEY6 + 16 &&
		       __builtin_offsetof(struct ct6_resv, pk) == 3 * PAIR_KEY6 + 16,
	       "ct6_resv: nat, e, rk, pk");

static __always_inline void *resv_nat(void *w)
{
	return w;
}

static __always_inline void *resv_half(void *w, const __u32 ksz)
{
	return w + ksz;
}

static __always_inline void *resv_rk(void *w, const __u32 ksz)
{
	return w + 2 * ksz + 16;
}

static __always_inline void *resv_pk(void *w, const __u32 ksz)
{
	return w + 3 * ksz + 16;
}

/* pair_reserve puts the reverse half of work space w in (pair_put_rev)
 * with a free source port: its tuple's own port when free and not one of
 * the node's ephemeral ports, else random ports of the SNAT range,
 * CONFIG.nat_retries of them. Everything it works on is derived from w, so
 * that little lives across its helper calls (its frame, see
 * pc_pair_reserve). Returns PC_OK (the tuple reserved in w, the half's key
 * beside it), PC_DROP_NAT_PORTS_EXHAUSTED or PC_DROP_CONNTRACK_FULL.
 */
static __always_inline int pair_reserve(void *map, const __u32 ksz, void *w)
{
	__u32 tries = nat_tries();
	__u64 now = pc_now();
	int rc, i;

	if (port_is_local(key_ports(resv_nat(w), ksz)->sport))
		key_ports(resv_nat(w), ksz)->sport = nat_port_random();
	for (i = 0; i <= PC_NAT_MAX_TRIES && i <= tries; i++) {
		if (i > 0) {
			key_ports(resv_nat(w), ksz)->sport = nat_port_random();
			stat_inc(PC_STAT_NAT_PORT_RETRIES);
		}
		/* Derive every pointer from w anew: kept apart, they would be
		 * spilled across the helper calls, and this frame adds to the
		 * caller's (pc_endpoint_ingress has 56 bytes to spare).
		 */
		asm volatile("" : "+r"(w));
		rc = pair_put_rev(map, ksz, resv_nat(w), resv_half(w, ksz), resv_rk(w, ksz), resv_pk(w, ksz), now);
		if (rc != PC_E_TAKEN)
			return rc;
	}
	return PC_DROP_NAT_PORTS_EXHAUSTED;
}

/* pc_pair_reserve is pair_reserve on the work space r of family
 * (AF_INET: pc_flows4, AF_INET6: pc_flows6). A global function, verified once on
 * its own: inlined, the rest of the calling program would be walked once
 * more for every try the loop can leave from (the IPv4 programs came near
 * the verifier's limit that way with 32 retries). Its frame adds to its
 * caller's, so what it works on is in r, not on its stack.
 */
__attribute__((noinline)) int pc_pair_reserve(struct pair_resv *r, __u32 family)
{
	if (!r)
		return PC_DROP_NAT_PORTS_EXHAUSTED;
	if (family == AF_INET)
		return pair_reserve(&pc_flows4, PAIR_KEY4, &r->v4);
	return pair_reserve(&pc_flows6, PAIR_KEY6, &r->v6);
}

/* pair_create inserts the pair of a new flow whose first packet has tuple
 * fwd and should leave as the tuple in work space w (&r->v4 or &r->v6):
 * the reverse half first, which reserves the reply tuple, with a port
 * picked when n->pick_port (pc_pair_reserve), then the forward half; if
 * that fails the reservation is given back. Returns PC_OK (w holds the
 * final tuple), a PC_DROP_* reason, or PC_E_RACE when another CPU created
 * the same flow meanwhile.
 */
static __always_inline int pair_create(void *map, const __u32 ksz, struct pair_resv *r, void *w, const void *fwd,
				       const struct ct_new *n)
{
	void *e = resv_half(w, ksz);
	struct half_tail *t = half_tail(e, ksz);
	int rc;

	__builtin_memset(e, 0, 16 + ksz);
	*half_expires(e) = pc_now() + ct_timeout_ns(key_ports(fwd, ksz)->proto, 0);
	t->flags = n->flags | CT_F_REVERSE;
	t->hooks = n->hooks_rev;
	t->ifindex = n->ifindex;
	pair_key_swap(ksz, half_nat(e), fwd);
	if (n->pick_port)
		rc = pc_pair_reserve(r, ksz == PAIR_KEY4 ? AF_INET : AF_INET6);
	else
		rc = pair_put_rev(map, ksz, resv_nat(w), e, resv_rk(w, ksz), resv_pk(w, ksz), pc_now());
	if (rc == PC_E_TAKEN)
		return PC_DROP_NAT_CONFLICT;
	if (rc)
		return rc;
	/* The same entry, made the forward half. */
	t->flags = n->flags;
	t->hooks = n->hooks_fwd;
	if (ksz == PAIR_KEY4)
		*(struct ct_key *)half_nat(e) = *(struct ct_key *)resv_nat(w);
	else
		*(struct ct6_key *)half_nat(e) = *(struct ct6_key *)resv_nat(w);
	return pair_put_fwd(map, fwd, e, resv_rk(w, ksz));
}

#endif /* __PC_PAIR_H__ */
