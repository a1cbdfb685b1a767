/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Shared by every program family: runtime configuration, drop reasons and
 * the counters. The Go side reads every enum here from the objects' BTF
 * (bpf2go -type, dataplane/ebpf/gen.go): a new drop reason or counter is
 * one line here, named as Go shows it (PC_DROP_SPOOF_MAC is "spoof-mac",
 * PC_STAT_CT_CREATED "ct_created").
 */
#ifndef __PC_COMMON_H__
#define __PC_COMMON_H__

#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "pc_proto.h"

#ifndef EEXIST
#define EEXIST 17
#endif
#ifndef E2BIG
#define E2BIG 7
#endif
#ifndef ENOMEM
#define ENOMEM 12
#endif

/* Runtime configuration, written by the loader into .rodata before the
 * programs are loaded, so the verifier sees constants and prunes the
 * branches of disabled features.
 */
struct pc_config {
	__u32 flags;              /* PC_CFG_* */
	__u16 nat_port_min;       /* SNAT port / ICMP id range, host byte order */
	__u16 nat_port_max;
	__u32 nat_retries;        /* random tries after the original port, <= PC_NAT_MAX_TRIES */
	__u32 tcp_syn_timeout;    /* seconds: TCP until the first reply */
	__u32 tcp_est_timeout;    /* seconds: TCP after a reply */
	__u32 tcp_close_timeout;  /* seconds: after RST, or FIN both ways */
	__u32 other_timeout;      /* seconds: UDP, ICMP, SCTP, anything else */
	__u16 local_port_min;     /* the node's own ephemeral ports (ip_local_port_range), */
	__u16 local_port_max;     /* which SNAT never keeps: host byte order */
	__u32 ip_summed_off;      /* PC_CFG_CSUM_DIRECT: byte of struct sk_buff holding ip_summed, */
	__u32 ip_summed_shift;    /* and the bitfield's shift in it (from the kernel's BTF) */
	__u64 tick_ns;            /* pc_now: length of a jiffy, 0 for the coarse clock */
	__u64 clock_offset;       /* pc_now: CLOCK_MONOTONIC at jiffies 0, mod 2^64 */
};

/* pc_config.flags. */
enum pc_cfg_flag {
	/* Wildcard published ports and hairpin need "is this a node address": use
	 * bpf_fib_lookup besides the pc_local_addrs map. Tests switch it off so the
	 * result does not depend on the test machine's routes.
	 */
	PC_CFG_FIB_LOCAL = 1U << 0,
	/* Fast paths: bpf_redirect_peer into the container from uplink ingress, and
	 * FIB lookup + redirect from the container straight to the uplink. Both skip
	 * the bridge, the node's IP input path and netfilter.
	 */
	PC_CFG_FAST_PATH = 1U << 1,
	/* Translations of TCP and UDP compute the L4 checksum themselves, in the
	 * same store as addresses and ports, instead of a bpf_l4_csum_replace per
	 * changed field: the programs read the skb's ip_summed through
	 * bpf_cast_to_kern_ctx (Linux 6.2) at the offset the loader found in the
	 * kernel's BTF. Without either, the helpers do it.
	 */
	PC_CFG_CSUM_DIRECT = 1U << 2,
};

#define PC_NAT_MAX_TRIES 32

volatile const struct pc_config CONFIG = {
	.flags = PC_CFG_FIB_LOCAL,
	.nat_port_min = 1024,
	.nat_port_max = 32767,
	.nat_retries = 16,
	.tcp_syn_timeout = 60,
	.tcp_est_timeout = 6 * 3600,
	.tcp_close_timeout = 10,
	.other_timeout = 60,
	.local_port_min = 32768,
	.local_port_max = 60999,
};

/* pc_now is the clock of every deadline in the maps: CLOCK_MONOTONIC at
 * tick resolution, which the agent compares them with. bpf_ktime_get_ns
 * reads the clock source, about 30 ns per call in a VM; the coarse clock
 * returns the time of the last tick for the cost of a helper call, about
 * 10 ns here; bpf_jiffies64 counts the same ticks and the verifier turns
 * it into a load, so with the loader's calibration (tick_ns, clock_offset:
 * dataplane/ebpf/clock.go) the time costs a multiplication. Deadlines are
 * seconds apart, and both trail CLOCK_MONOTONIC by at most a tick.
 */
static __always_inline __u64 pc_now(void)
{
	if (CONFIG.tick_ns)
		return bpf_jiffies64() * CONFIG.tick_ns + CONFIG.clock_offset;
	return bpf_ktime_get_coarse_ns();
}

/* The kernel's struct sk_buff behind a program's context. Inlined by the
 * verifier (a register move); weak, so that an object loads where the
 * kernel lacks it, PC_CFG_CSUM_DIRECT then off and the call dead code.
 */
extern void *bpf_cast_to_kern_ctx(void *obj) __ksym __weak;

#define PC_CHECKSUM_PARTIAL 3 /* skb->ip_summed: the L4 checksum is the device's to compute */

/* skb_csum_partial is 1 when the L4 checksum field holds only the pseudo
 * header's sum, the rest left to the device (CHECKSUM_PARTIAL, as a local
 * sender's packets cross veths), and 0 when it holds a full checksum.
 * Only with PC_CFG_CSUM_DIRECT. Computed without a branch (3 is the only
 * value of the two bits that carries into bit 2), so that the verifier
 * does not walk the rest of the program twice, and hidden from the
 * compiler, which would otherwise turn a product with it into the
 * -(bit) & mask idiom that the verifier walks slowly (see bpf/README.md).
 */
static __always_inline __u32 skb_csum_partial(struct __sk_buff *skb)
{
	const __u8 *k = bpf_cast_to_kern_ctx(skb);
	__u32 v = (k[CONFIG.ip_summed_off] >> CONFIG.ip_summed_shift) & 3;

	_Static_assert(PC_CHECKSUM_PARTIAL == 3, "CHECKSUM_PARTIAL is the only value with both bits set");
	v = (v + 1) >> 2;
	asm volatile("" : "+r"(v));
	return v;
}

/* Outcomes of the datapath's steps besides 0 (done) and a PC_DROP_* reason
 * (positive, the packet is dropped for it): negative, so the two never mix,
 * and one meaning each. A function says which of them it returns.
 */
enum pc_outcome {
	PC_OK = 0,
	PC_E_REWRITE = -1, /* a helper writing the packet failed: the caller drops it (PC_DROP_REWRITE_FAILED) */
	PC_E_RACE = -2,    /* another CPU created the same flow first: its pair applies */
	PC_E_TAKEN = -3,   /* the reply tuple belongs to a live flow: try another port */
	PC_NOT_MINE = -4,  /* the packet is not one this step handles: the caller goes on */
	PC_LINKED = -5,    /* policy: a link's parent to its child; pass, and track the flow */
};

/* Why a packet was dropped; the key of pc_drops together with the ifindex. */
enum pc_drop_reason {
	PC_DROP_MALFORMED = 1,            /* truncated, bad IHL/version/length */
	PC_DROP_VLAN = 2,                 /* tagged frame from a container */
	PC_DROP_NON_IP = 3,               /* neither IPv4, IPv6 nor ARP from a container */
	PC_DROP_NO_ENDPOINT = 4,          /* program on an interface we have no endpoint for */
	PC_DROP_SPOOF_MAC = 5,            /* Ethernet source is not the endpoint's */
	PC_DROP_SPOOF_IP = 6,             /* IP source is not the endpoint's */
	PC_DROP_SPOOF_ARP = 7,            /* ARP sender MAC/IP is not the endpoint's */
	PC_DROP_ICC = 8,                  /* icc=false and not linked */
	PC_DROP_ICC_LINK_PORT = 9,        /* linked pair, but not an exposed port */
	PC_DROP_ISOLATION = 10,           /* to another network's subnet */
	PC_DROP_FRAGMENT = 11,            /* non-first fragment whose first was not seen */
	PC_DROP_NAT_PORTS_EXHAUSTED = 12, /* no free source port after the retries */
	PC_DROP_CONNTRACK_FULL = 13,      /* conntrack table full */
	PC_DROP_INBOUND = 14,             /* from outside to a container without a flow */
	PC_DROP_NO_SNAT_ADDRESS = 15,     /* masquerade with no address on the uplink */
	PC_DROP_REWRITE_FAILED = 16,      /* a store or checksum helper failed */
	PC_DROP_NAT_CONFLICT = 17,        /* reply tuple already owned by another flow */
	PC_DROP_SPOOF_ND = 18,            /* neighbour solicitation/advertisement for another's address or MAC */
	PC_DROP_SPOOF_ROUTER = 19,        /* router advertisement, redirect or renumbering from a container */
	PC_DROP_MAX,                      /* not a reason: one past the last */
};

struct drop_key {
	__u32 reason;  /* enum pc_drop_reason */
	__u32 ifindex; /* interface the program ran on */
};

/* Event counters, index of pc_stats. */
enum pc_stat {
	PC_STAT_CT_CREATED = 0,             /* flows created (pairs) */
	PC_STAT_NAT_PORT_RETRIES = 1,       /* source port collisions that needed another port */
	PC_STAT_CT_RECLAIMED = 2,           /* expired pairs taken over in the datapath */
	PC_STAT_ICMP_ERRORS_TRANSLATED = 3, /* ICMP errors translated through the inner header */
	PC_STAT_FAST_PATH = 4,              /* packets the program sent on itself (fast paths, routed replies) */
	PC_STAT_MAX = 8,                    /* not a counter: the size of pc_stats */
};

#endif /* __PC_COMMON_H__ */
