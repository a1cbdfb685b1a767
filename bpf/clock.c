//go:build ignore
/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Clock calibration, run once by the loader through BPF_PROG_TEST_RUN
 * before it loads the datapath (dataplane/ebpf/clock.go).
 *
 * The datapath stamps its deadlines with pc_now() (lib/common.h), which
 * the agent compares with CLOCK_MONOTONIC. bpf_jiffies64 is the cheapest
 * clock a program has (the verifier turns the call into a load), but it
 * counts ticks from a boot-time origin; each run here reads it and the
 * coarse monotonic clock side by side, and the loader derives the tick's
 * length and the offset between the two, which go into the datapath's
 * .rodata.
 */
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct sample {
	__u64 jiffies;   /* bpf_jiffies64 */
	__u64 coarse_ns; /* bpf_ktime_get_coarse_ns, read right after */
};

struct sample CLOCK_SAMPLE;

SEC("tc")
int pc_clock_sample(struct __sk_buff *skb)
{
	CLOCK_SAMPLE.jiffies = bpf_jiffies64();
	CLOCK_SAMPLE.coarse_ns = bpf_ktime_get_coarse_ns();
	return 0;
}

char __license[] SEC("license") = "Dual BSD/GPL";
