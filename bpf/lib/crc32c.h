/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Incremental update of SCTP's CRC32c after NAT changed its ports.
 *
 * There is no CRC32c helper, and recomputing the CRC over the whole packet
 * costs a loop over every byte. CRC32c is linear over GF(2) instead: for
 * messages of equal length, crc(M') = crc(M) ^ L(M ^ M'), where L is the
 * CRC with zero initial value and no final xor (the ~0 terms cancel). M ^ M'
 * is zero except for the four port bytes at the start of the SCTP header,
 * so L(M ^ M') is the raw CRC of those four bytes carried through the n
 * zero bytes after them: a multiplication by x^(8n) mod P. That takes at
 * most 16 multiplications by the constants x^(8*2^i) (one per bit of n),
 * whatever the packet length, without reading the payload, so it works on
 * non-linear skbs too. Like the incremental Internet checksum, a CRC that
 * was wrong stays wrong: NAT does not launder corrupted packets.
 *
 * Polynomials are in the reflected representation of the CRC (bit 31 is
 * x^0), as the CRC register holds them.
 */
#ifndef __PC_CRC32C_H__
#define __PC_CRC32C_H__

#include <linux/types.h>
#include <bpf/bpf_helpers.h>

#define CRC32C_POLY 0x82f63b78 /* Castagnoli, reflected */

/* x^(8*2^i) mod P, i = 0..15: zero bytes to skip, one bit of n each.
 * Checked against hash/crc32 by TestSCTPChecksum.
 */
static const __u32 crc32c_x8n[16] = {
	0x00800000, 0x00008000, 0x82f63b78, 0x6ea2d55c, 0x18b8ea18, 0x510ac59a, 0xb82be955, 0xb8fdb1e7,
	0x88e56f72, 0x74c360a4, 0xe4172b16, 0x0d65762a, 0x35d73a62, 0x28461564, 0xbf455269, 0xe2ea32dc,
};

/* crc32c_bit hides from the compiler that v is 0 or 1. Selections below
 * are multiplications by such a bit: left alone, clang turns them into
 * -(v) & x, and with that idiom the verifier's work doubles at every step
 * (seen on 6.18: 8 steps of the multiplication cost 2,459 instructions, 32
 * hit the 1M limit, with no branch in the code; an AND with a register in
 * [-1, 0] appears to fork its state). A multiplication is tracked as one
 * unknown scalar.
 */
static __always_inline __u32 crc32c_bit(__u32 v)
{
	asm volatile("" : "+r"(v));
	return v;
}

/* crc32c_mulx multiplies b by x mod P: one shift of the CRC register. */
static __always_inline __u32 crc32c_mulx(__u32 b)
{
	return (b >> 1) ^ (CRC32C_POLY * crc32c_bit(b & 1));
}

/* crc32c_mulmod returns a*b mod P, with no branch: the verifier walks each
 * of the 32 steps once.
 */
static __always_inline __u32 crc32c_mulmod(__u32 a, __u32 b)
{
	__u32 p = 0;
	int i;

#pragma unroll
	for (i = 0; i < 32; i++) {
		p ^= b * crc32c_bit((a >> (31 - i)) & 1);
		b = crc32c_mulx(b);
	}
	return p;
}

/* pc_crc32c_delta returns what to xor into the CRC32c of an SCTP packet
 * whose first four bytes (the ports) changed by diff (old ^ new, as loaded
 * from the packet on a little-endian machine) and that has n bytes after
 * them. A global function: the verifier checks it once, not at every place
 * that translates SCTP. The loop over the bits of n stays rolled and
 * branch-free (a product when the bit is set, the identity when not).
 */
__attribute__((noinline)) __u32 pc_crc32c_delta(__u32 diff, __u32 n)
{
	__u32 crc = diff;
	int i;

	/* The raw CRC of the four bytes, from a zero register: four bytes
	 * xored into the register at once, then 32 shifts.
	 */
#pragma unroll
	for (i = 0; i < 32; i++)
		crc = crc32c_mulx(crc);
#pragma nounroll
	for (i = 0; i < 16; i++)
		crc ^= (crc32c_mulmod(crc32c_x8n[i], crc) ^ crc) * crc32c_bit((n >> i) & 1);
	return crc;
}

#endif /* __PC_CRC32C_H__ */
