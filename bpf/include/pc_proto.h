/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Wire formats the programs parse. Trimmed from the kernel's uapi headers
 * (if_ether.h, ip.h, ipv6.h, udp.h, icmp.h, if_arp.h) to what we read, so the
 * build does not depend on the host's asm/ headers.
 */
#ifndef __PC_PROTO_H__
#define __PC_PROTO_H__

#include <linux/types.h>

#define ETH_ALEN 6
#define ETH_HLEN 14

#define ETH_P_IP 0x0800
#define ETH_P_ARP 0x0806
#define ETH_P_IPV6 0x86DD
#define ETH_P_8021Q 0x8100
#define ETH_P_8021AD 0x88A8

#define IPPROTO_ICMP 1
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define IPPROTO_ICMPV6 58
#define IPPROTO_SCTP 132

#define AF_INET 2
#define AF_INET6 10

/* TC verdicts (linux/pkt_cls.h); tcx reads 0 as pass and 2 as drop too. */
#define TC_ACT_OK 0
#define TC_ACT_SHOT 2
#define TC_ACT_REDIRECT 7

struct ethhdr {
	__u8 h_dest[ETH_ALEN];
	__u8 h_source[ETH_ALEN];
	__be16 h_proto;
} __attribute__((packed));

struct iphdr {
	__u8 ihl : 4, version : 4; /* little-endian bit order (target bpfel) */
	__u8 tos;
	__be16 tot_len;
	__be16 id;
	__be16 frag_off;
	__u8 ttl;
	__u8 protocol;
	__sum16 check;
	__be32 saddr;
	__be32 daddr;
};

#define IP_MF 0x2000
#define IP_OFFSET 0x1FFF

struct ipv6hdr {
	__u8 priority : 4, version : 4;
	__u8 flow_lbl[3];
	__be16 payload_len;
	__u8 nexthdr;
	__u8 hop_limit;
	__u8 saddr[16];
	__u8 daddr[16];
};

/* ARP for Ethernet/IPv4 only (htype 1, ptype 0x0800, hlen 6, plen 4). */
struct arp_eth4 {
	__be16 ar_hrd;
	__be16 ar_pro;
	__u8 ar_hln;
	__u8 ar_pln;
	__be16 ar_op;
	__u8 ar_sha[ETH_ALEN];
	__u8 ar_sip[4]; /* unaligned in the frame: kept as bytes */
	__u8 ar_tha[ETH_ALEN];
	__u8 ar_tip[4];
} __attribute__((packed));

/* The first 8 bytes of TCP, UDP, SCTP (ports) and ICMP (type, code, csum, id, seq). */
struct l4hdr8 {
	union {
		struct {
			__be16 sport;
			__be16 dport;
		};
		struct {
			__u8 type;
			__u8 code;
			__sum16 csum;
			__be16 id;
			__be16 seq;
		} icmp;
	};
};

#define ICMP_ECHOREPLY 0
#define ICMP_DEST_UNREACH 3
#define ICMP_ECHO 8
#define ICMP_TIME_EXCEEDED 11
#define ICMP_PARAMETERPROB 12

#define ICMPV6_ECHO_REQUEST 128
#define ICMPV6_ECHO_REPLY 129
#define ICMPV6_MLD_FIRST 130 /* 130..143: MLD, router/neighbour discovery */
#define ICMPV6_ND_LAST 143
#define ICMPV6_ROUTER_ADVERT 134    /* RFC 4861 */
#define ICMPV6_NEIGH_SOLICIT 135
#define ICMPV6_NEIGH_ADVERT 136
#define ICMPV6_REDIRECT 137
#define ICMPV6_ROUTER_RENUMBERING 138 /* RFC 2894 */

/* Neighbour solicitation and advertisement (RFC 4861 4.3, 4.4): options
 * follow the target address.
 */
struct nd_msg {
	__u8 type;
	__u8 code;
	__sum16 csum;
	__u8 reserved[4];
	__u8 target[16];
};

#define ND_OPT_SOURCE_LL 1 /* source link-layer address */
#define ND_OPT_TARGET_LL 2 /* target link-layer address */

/* An ND option: type, length in units of 8 bytes, and for the link-layer
 * address options the MAC.
 */
struct nd_opt_ll {
	__u8 type;
	__u8 len;
	__u8 mac[ETH_ALEN];
};

#define TCP_FLAG_FIN 0x01
#define TCP_FLAG_SYN 0x02
#define TCP_FLAG_RST 0x04
#define TCP_FLAG_ACK 0x10

#endif /* __PC_PROTO_H__ */
