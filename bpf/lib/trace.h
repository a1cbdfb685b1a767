/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Drops, and live events for pcctl trace.
 *
 * Every drop counts in pc_drops. While a tracer runs (pc_trace_cfg holds
 * its PC_TRACE_* flags and a deadline it keeps renewing) drops, and new
 * translated flows, also go to the pc_events ring buffer as struct
 * pc_event. With tracing off the cost is one inlined array lookup on the
 * drop path and on flow creation; established flows never look.
 *
 * The events are written by global functions: the verifier checks each
 * once instead of at every drop site, and their frame is not added to the
 * caller's (pc_uplink_ingress has little stack left, see bpf/README.md).
 * The record is built in the ring buffer itself, not on the stack.
 */
#ifndef __PC_TRACE_H__
#define __PC_TRACE_H__

#include "parse.h"

enum pc_event_type {
	PC_EV_DROP = 1, /* reason says why */
	PC_EV_NAT = 2,  /* a new flow, translated: nat_* is the tuple it leaves with */
};

struct pc_event {
	__u64 ts;           /* bpf_ktime_get_ns() */
	__u32 ifindex;      /* interface the program ran on */
	__u32 reason;       /* PC_EV_DROP: enum pc_drop_reason */
	__u8 type;          /* enum pc_event_type */
	__u8 family;        /* 4, 6, or 0 when the packet is not IP (or was not parsed) */
	__u8 proto;         /* IP protocol */
	__u8 flags;         /* PC_EV_NAT: CT_F_* of the flow */
	__be16 sport;       /* ports as the packet arrived (ICMP echo: the id, see struct ct_key) */
	__be16 dport;
	__be16 nat_sport;   /* PC_EV_NAT: after translation */
	__be16 nat_dport;
	__u32 pad;
	__u8 saddr[16];     /* addresses as the packet arrived; IPv4 in the first 4 bytes */
	__u8 daddr[16];
	__u8 nat_saddr[16]; /* PC_EV_NAT: after translation */
	__u8 nat_daddr[16];
};

/* trace_on tells whether the tracer asked for what (PC_TRACE_*). */
static __always_inline int trace_on(__u32 what)
{
	struct trace_cfg *c;
	__u32 k = 0;

	c = bpf_map_lookup_elem(&pc_trace_cfg, &k);
	return c && (c->flags & what) && pc_now() < c->until;
}

static __always_inline struct pc_event *trace_start(const struct pkt *p, __u8 type)
{
	struct pc_event *e = bpf_ringbuf_reserve(&pc_events, sizeof(*e), 0);

	if (!e)
		return 0; /* full: the tracer is behind, this event is lost */
	__builtin_memset(e, 0, sizeof(*e));
	e->ts = bpf_ktime_get_ns();
	e->ifindex = p->ifindex;
	e->type = type;
	e->proto = p->t.proto;
	e->sport = p->t.sport;
	e->dport = p->t.dport;
	if (p->eth_proto == ETH_P_IP && p->l4_off) {
		e->family = 4;
		__builtin_memcpy(e->saddr, &p->t.saddr, 4);
		__builtin_memcpy(e->daddr, &p->t.daddr, 4);
	} else if (p->eth_proto == ETH_P_IPV6 && p->l4_off) {
		e->family = 6;
		__builtin_memcpy(e->saddr, p->saddr6, 16);
		__builtin_memcpy(e->daddr, p->daddr6, 16);
	}
	return e;
}

/* pc_trace_drop reports a drop. */
__attribute__((noinline)) int pc_trace_drop(const struct pkt *p, __u32 reason)
{
	struct pc_event *e;

	if (!p)
		return 0;
	e = trace_start(p, PC_EV_DROP);
	if (!e)
		return 0;
	e->reason = reason;
	bpf_ringbuf_submit(e, 0);
	return 0;
}

/* pc_trace_nat4 reports a new IPv4 flow that leaves as nat, when that is
 * a translation (link flows and routed networks keep their tuple).
 */
__attribute__((noinline)) int pc_trace_nat4(const struct pkt *p, const struct ct_key *nat, __u32 flags)
{
	struct pc_event *e;

	if (!p || !nat)
		return 0;
	if (nat->saddr == p->t.saddr && nat->daddr == p->t.daddr && nat->sport == p->t.sport &&
	    nat->dport == p->t.dport)
		return 0;
	e = trace_start(p, PC_EV_NAT);
	if (!e)
		return 0;
	e->flags = flags;
	e->nat_sport = nat->sport;
	e->nat_dport = nat->dport;
	__builtin_memcpy(e->nat_saddr, &nat->saddr, 4);
	__builtin_memcpy(e->nat_daddr, &nat->daddr, 4);
	bpf_ringbuf_submit(e, 0);
	return 0;
}

/* pc_trace_nat6 reports a new IPv6 published-port or masqueraded flow. */
__attribute__((noinline)) int pc_trace_nat6(const struct pkt *p, const struct ct6_key *nat, __u32 flags)
{
	struct pc_event *e;

	if (!p || !nat)
		return 0;
	e = trace_start(p, PC_EV_NAT);
	if (!e)
		return 0;
	e->flags = flags;
	e->nat_sport = nat->sport;
	e->nat_dport = nat->dport;
	__builtin_memcpy(e->nat_saddr, nat->saddr, 16);
	__builtin_memcpy(e->nat_daddr, nat->daddr, 16);
	bpf_ringbuf_submit(e, 0);
	return 0;
}

/* drop counts the packet (and traces it) and returns TC_ACT_SHOT. The
 * ifindex comes from p, read from the context once at program entry: clang
 * would otherwise fold the several skb->ifindex reads into one pointer (ctx +
 * 40), and the verifier rejects any access through a modified context
 * pointer.
 */
static __always_inline int drop(const struct pkt *p, __u32 reason)
{
	struct drop_key k = { .reason = reason, .ifindex = p->ifindex };
	__u64 one = 1, *v;

	v = bpf_map_lookup_elem(&pc_drops, &k);
	if (v)
		*v += 1; /* per-CPU value: no atomics needed */
	else
		bpf_map_update_elem(&pc_drops, &k, &one, BPF_NOEXIST);
	if (trace_on(PC_TRACE_DROPS))
		pc_trace_drop(p, reason);
	return TC_ACT_SHOT;
}

#endif /* __PC_TRACE_H__ */
