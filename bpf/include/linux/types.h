/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Minimal stand-in for <linux/types.h> so the BPF objects build without the
 * host's kernel headers (no asm/ include path, same result on every machine).
 */
#ifndef __LINUX_TYPES_H__
#define __LINUX_TYPES_H__

typedef signed char __s8;
typedef unsigned char __u8;
typedef short __s16;
typedef unsigned short __u16;
typedef int __s32;
typedef unsigned int __u32;
typedef long long __s64;
typedef unsigned long long __u64;

typedef __u16 __le16;
typedef __u16 __be16;
typedef __u32 __le32;
typedef __u32 __be32;
typedef __u64 __le64;
typedef __u64 __be64;

typedef __u16 __sum16;
typedef __u32 __wsum;

typedef __u32 __poll_t;

#define __aligned_u64 __u64 __attribute__((aligned(8)))

#endif /* __LINUX_TYPES_H__ */
