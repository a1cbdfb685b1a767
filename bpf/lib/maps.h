/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Every map of the datapath. Both program families include this file; the
 * loader loads the endpoint object first and hands its maps to the uplink
 * object (MapReplacements), so there is one instance of each map. The layouts
 * are mirrored by the generated Go types; keep them free of implicit padding.
 */
#ifndef __PC_MAPS_H__
#define __PC_MAPS_H__

#include "common.h"

/* ---- configuration maps, written by the agent only ----
 *
 * The max_entries below are the defaults of the loader's MapSizes
 * (dataplane/ebpf), which sets every size before loading. Hash maps here
 * are BPF_F_NO_PREALLOC: only the agent writes them, so the datapath never
 * needs an element allocated under pressure, and a map sized for 131072
 * endpoints costs memory for the endpoints there are, not for the limit.
 */

enum ep_flag {
	EP_F_HAS_MAC = 1U << 0, /* mac is set: check Ethernet and ARP sources */
	EP_F_HAS_IP6 = 1U << 1, /* ip6 is set */
};

struct endpoint {
	__be32 ip4;      /* the endpoint's IPv4 address */
	__u32 net_id;    /* key of pc_networks */
	__u8 ip6[16];    /* the endpoint's IPv6 address (EP_F_HAS_IP6) */
	__u8 mac[6];     /* the container's MAC (EP_F_HAS_MAC) */
	__u16 flags;     /* EP_F_* */
	__be32 snat4;    /* fixed SNAT source for this endpoint, 0: the network's */
};

/* Endpoints by the ifindex of their host veth: who sent this packet. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 131072);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, struct endpoint);
} pc_endpoints SEC(".maps");

struct addr_key {
	__u32 family;  /* AF_INET or AF_INET6 */
	__u8 addr[16]; /* IPv4 in the first 4 bytes, rest zero */
};

struct ep_ref {
	__u32 ifindex; /* the endpoint's host veth: key of pc_endpoints, and its id */
	__u32 net_id;  /* key of pc_networks */
	__be32 snat4;  /* copy of endpoint.snat4, for SNAT without a second lookup */
	__u32 pad;
};

/* Endpoints by address: whom is this packet for (ICC, links, SNAT). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 262144); /* IPv4 and IPv6 of every endpoint */
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct addr_key);
	__type(value, struct ep_ref);
} pc_ep_addrs SEC(".maps");

struct mac_key {
	__u8 mac[6];
	__u16 pad;
};

/* Endpoints by MAC: a frame addressed to a container's MAC is bridged
 * straight to it, whatever its IP destination (IPv6 link-local, say).
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 131072);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct mac_key);
	__type(value, __u32); /* ifindex of the endpoint's host veth */
} pc_ep_macs SEC(".maps");

enum net_flag {
	NET_F_ICC = 1U << 0,      /* containers on this network may talk freely */
	NET_F_MASQ = 1U << 1,     /* masquerade traffic that leaves through an uplink */
	NET_F_INTERNAL = 1U << 2, /* no egress: own subnet and gateway only */
};

struct network {
	__be32 gw4;             /* gateway (bridge) IPv4 address */
	__be32 snat4;           /* fixed SNAT source, 0: masquerade or routed */
	__u32 flags;            /* NET_F_* */
	__u32 bridge_ifindex;   /* the bridge: FIB lookups for hairpin */
	__u8 gw6[16];           /* gateway IPv6 address, zero when none */
	__u8 gw_mac[6];         /* the bridge's MAC: source of fast-path frames */
	__u16 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32); /* net_id, assigned by the agent */
	__type(value, struct network);
} pc_networks SEC(".maps");

struct subnet_key {
	__u32 prefixlen; /* 32 + prefix length: the family word always matches */
	__u32 family;    /* AF_INET or AF_INET6 */
	__u8 addr[16];
};

/* Network subnets: which network an address belongs to (isolation, SNAT,
 * dropping unsolicited traffic to containers).
 */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 8192); /* an IPv4 and an IPv6 subnet per network */
	__uint(map_flags, BPF_F_NO_PREALLOC); /* required for LPM tries */
	__type(key, struct subnet_key);
	__type(value, __u32); /* net_id */
} pc_subnets SEC(".maps");

struct link_key {
	__u32 parent; /* ifindex of the parent's host veth */
	__u32 child;  /* ifindex of the child's host veth */
	__u16 port;   /* exposed port of the child, host byte order */
	__u8 proto;   /* IPPROTO_TCP, _UDP, _SCTP */
	__u8 pad;
};

/* Legacy links (icc=false): parent may open connections to child:port.
 * One entry per exposed port, and one with port and proto 0 that only says
 * the pair is linked (it allows nothing: link_allowed never looks up proto
 * 0); it tells a drop for a port the child does not expose (PC_DROP_ICC_LINK_PORT)
 * from one between endpoints that are not linked at all (PC_DROP_ICC). The
 * child may only answer: its packets pass when they belong to a flow the
 * parent opened (CT_F_LINK in pc_flows4, TRACK6_F_LINK in pc_track6), never on the
 * port alone.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 131072);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct link_key);
	__type(value, __u8); /* always 1 */
} pc_links SEC(".maps");

struct port_key {
	__u32 prefixlen; /* 64 + bits of the port: ranges are split into aligned blocks */
	__u8 proto;      /* IPPROTO_TCP, _UDP, _SCTP */
	__u8 pad[3];
	__be32 addr;     /* host address; 0.0.0.0 for "every node address" */
	__be16 port;     /* host port */
	__u16 pad2;
};

struct port_target {
	__be32 addr;     /* container address */
	__u16 port_lo;   /* container port for host_lo, host byte order */
	__u16 host_lo;   /* first host port of the mapping, host byte order */
	__u32 ifindex;   /* the endpoint's host veth (fast path) */
	__u16 host_hi;   /* last host port of the mapping, host byte order */
	__u16 pad;
};

/* Published ports. An LPM trie so a port range costs one entry per aligned
 * block (at most 30, usually a handful) instead of one per port.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 262144);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct port_key);
	__type(value, struct port_target);
} pc_ports SEC(".maps");

struct uplink {
	__be32 addr4;    /* masquerade source address of this uplink */
	__u32 flags;     /* unused, zero */
	__u8 addr6[16];  /* IPv6 masquerade source: a global address of the uplink, zero when none */
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32); /* uplink ifindex */
	__type(value, struct uplink);
} pc_uplinks SEC(".maps");

/* Node addresses known to the agent (uplink addresses, SNAT addresses,
 * gateways); a wildcard published port answers on these. With
 * PC_CFG_FIB_LOCAL any address the FIB calls local answers as well.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 131072); /* SNAT addresses can be per endpoint */
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __be32);
	__type(value, __u8); /* always 1 */
} pc_local_addrs SEC(".maps");

struct port6_key {
	__u32 prefixlen; /* 160 + bits of the port, as for pc_ports */
	__u8 proto;      /* IPPROTO_TCP, _UDP, _SCTP */
	__u8 pad[3];
	__u8 addr[16];   /* host address; :: for "every node address" */
	__be16 port;     /* host port */
	__u16 pad2;
};

struct port6_target {
	__u8 addr[16];   /* the container's IPv6 address */
	__u16 port_lo;   /* container port for host_lo, host byte order */
	__u16 host_lo;   /* first host port of the mapping, host byte order */
	__u32 ifindex;   /* the endpoint's host veth */
	__u16 host_hi;   /* last host port of the mapping, host byte order */
	__u16 pad;
};

/* Published ports over IPv6: wildcard mappings of endpoints that have an
 * IPv6 address, and mappings on an IPv6 host address. Same block scheme as
 * pc_ports.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 262144);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct port6_key);
	__type(value, struct port6_target);
} pc_ports6 SEC(".maps");

struct addr6 {
	__u8 a[16];
};

/* IPv6 node addresses known to the agent (uplinks, gateways): where a
 * wildcard mapping answers, besides what the FIB calls local.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 131072);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct addr6);
	__type(value, __u8); /* always 1 */
} pc_local_addrs6 SEC(".maps");

/* ---- state maps, written by the datapath ---- */

/* One direction of a flow as seen on the wire. For ICMP echo the identifier
 * is the source port of requests and the destination port of replies, so
 * that the reverse of a request's tuple is its reply's tuple.
 */
struct ct_key {
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 pad[3];
};

enum ct_flag {
	CT_F_REVERSE = 1U << 0, /* the reply half of the pair */
	CT_F_SNAT = 1U << 1,    /* created for source NAT (or routed, identity) */
	CT_F_DNAT = 1U << 2,    /* created for a published port */
	CT_F_HAIRPIN = 1U << 3, /* DNAT from a container, maybe with SNAT too */
	CT_F_LINK = 1U << 4,    /* parent to child of a link, untranslated: the
				 * reverse half is what lets the child answer */
};

/* Where a half is applied: each program only acts on its own halves. */
enum ct_hook {
	HOOK_EP_INGRESS = 1U << 0,
	HOOK_UPLINK_INGRESS = 1U << 1,
	HOOK_UPLINK_EGRESS = 1U << 2,
};

enum ct_state {
	CT_S_REPLIED = 1U << 0, /* a packet of the reverse half was seen */
	CT_S_FIN_FWD = 1U << 1,
	CT_S_FIN_REV = 1U << 2,
	CT_S_RST = 1U << 3,
};

struct ct_entry {
	__u64 expires;      /* pc_now() deadline of this half */
	struct ct_key nat;  /* the tuple after translation; reversed, the partner's key */
	__u32 ifindex;      /* endpoint host veth the flow belongs to (fast path), 0: unknown */
	__u8 flags;         /* CT_F_* */
	__u8 hooks;         /* HOOK_* */
	__u8 state;         /* CT_S_*, kept in step on both halves */
	__u8 pad;
};

/* The flow tables, one per family, named alike: pc_flows4 and pc_flows6
 * hold flows as pairs of halves (lib/pair.h), connection tracking and NAT
 * in one; pc_track6 holds the IPv6 flows tracked without translation, one
 * entry each (IPv4 has no such table: its untranslated flows are pairs
 * whose nat tuple is their own). Agents before these names pinned them as
 * pc_ct, pc_nat6 and pc_ct6; the loader renames those pins on upgrade
 * (dataplane/ebpf/pins.go).
 *
 * pc_flows4: IPv4, a forward and a reverse half per flow. A plain hash, not
 * LRU, so one half is never evicted without the other; the agent removes
 * pairs whose halves both expired, and the datapath takes over an expired
 * pair when it needs its tuple.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 524288); /* 262144 flows */
	__type(key, struct ct_key);
	__type(value, struct ct_entry);
} pc_flows4 SEC(".maps");

/* IPv6 flows opened by containers, keyed by the tuple of their replies
 * (lib/track6.h): to the outside, and (TRACK6_F_LINK) from a link's parent
 * to its child. Routed, not translated: one entry per flow.
 */
struct ct6_key {
	__u8 saddr[16];
	__u8 daddr[16];
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 pad[3];
};

enum track6_flag {
	TRACK6_F_LINK = 1U << 0, /* a link flow, parent to child: the key is the child's
				  * reply; never matches traffic from outside */
};

struct track6_entry {
	__u64 expires; /* pc_now() deadline; the agent's GC deletes it after */
	__u8 state;    /* CT_S_*, as for IPv4 (FIN_FWD: from the container, or the parent) */
	__u8 flags;    /* TRACK6_F_* */
	__u8 pad[2];
	__u32 pad2;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 131072);
	__type(key, struct ct6_key);
	__type(value, struct track6_entry);
} pc_track6 SEC(".maps");

struct ct6_entry {
	__u64 expires;      /* pc_now() deadline of this half */
	struct ct6_key nat; /* the tuple after translation; reversed, the partner's key */
	__u32 ifindex;      /* the endpoint's host veth */
	__u8 flags;         /* CT_F_* */
	__u8 hooks;         /* HOOK_* */
	__u8 state;         /* CT_S_*, kept in step on both halves */
	__u8 pad;
};

/* IPv6 published ports (lib/nat6.h) and masquerade (lib/snat6.h): pairs
 * laid out like pc_flows4 (a forward half keyed by the first packet, a
 * reverse half keyed by the reply), with the same expiry and GC rules.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 131072); /* 65536 flows */
	__type(key, struct ct6_key);
	__type(value, struct ct6_entry);
} pc_flows6 SEC(".maps");

/* A new flow's pair in the making (lib/pair.h, pair_create), with the keys
 * its making needs: the tuple it leaves with (wanted, then reserved), its
 * reverse half (then its forward one), the reverse half's key, and the
 * partner key of a half in the way (pair_reclaim). Not on the stack:
 * pc_pair_reserve is a global function, whose frame adds to its caller's,
 * and the programs' call chains have little of their 512 bytes left.
 */
struct ct_resv {
	struct ct_key nat;
	struct ct_entry e;
	struct ct_key rk;
	struct ct_key pk;
};

struct ct6_resv {
	struct ct6_key nat;
	struct ct6_entry e;
	struct ct6_key rk;
	struct ct6_key pk;
};

struct pair_resv {
	struct ct_resv v4;
	struct ct6_resv v6;
};

/* One work space per CPU: tc programs do not nest on a CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pair_resv);
} pc_pair_scratch SEC(".maps");

struct frag_key {
	__be32 saddr;
	__be32 daddr;
	__be16 id;
	__u8 proto;
	__u8 pad;
};

struct frag_ports {
	__be16 sport;
	__be16 dport;
};

/* Ports of fragmented datagrams, learnt from the first fragment so the later
 * ones go through the same policy and NAT. LRU: losing one only drops the
 * rest of that datagram.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, struct frag_key);
	__type(value, struct frag_ports);
} pc_frags SEC(".maps");

/* An IPv6 datagram's fragments: addresses, and the fragment header's id
 * and next header (RFC 8200 4.5), which every fragment carries.
 */
struct frag6_key {
	__u8 saddr[16];
	__u8 daddr[16];
	__be32 id;
	__u8 proto;
	__u8 pad[3];
};

/* What the later fragments of an IPv6 datagram cannot tell: the ports and
 * the upper-layer protocol, which only the first one carries.
 */
struct frag6_ports {
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 pad[3];
};

/* pc_frags for IPv6. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, struct frag6_key);
	__type(value, struct frag6_ports);
} pc_frags6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct drop_key);
	__type(value, __u64); /* packets */
} pc_drops SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, PC_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} pc_stats SEC(".maps");

/* ---- tracing: pcctl trace (lib/trace.h) ---- */

enum pc_trace_flag {
	PC_TRACE_DROPS = 1U << 0, /* an event for every drop */
	PC_TRACE_NAT = 1U << 1,   /* an event for every new translated flow */
};

struct trace_cfg {
	__u32 flags;  /* PC_TRACE_*, 0: tracing off, and nothing but this lookup costs */
	__u32 pad;
	__u64 until;  /* pc_now() deadline: the tracer renews it while it
		       * runs, so one that dies without switching off stops
		       * costing anything soon after */
};

/* One element, written by the tracer (pcctl trace). An array: the verifier
 * inlines the lookup into a few instructions.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct trace_cfg);
} pc_trace_cfg SEC(".maps");

/* Events for the tracer: struct pc_event records (lib/trace.h). */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} pc_events SEC(".maps");

static __always_inline void stat_inc(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&pc_stats, &idx);

	if (v)
		*v += 1;
}

#endif /* __PC_MAPS_H__ */
