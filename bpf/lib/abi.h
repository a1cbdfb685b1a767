/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The types the Go side reads (dataplane/ebpf), put in the object's BTF,
 * where bpf2go -type finds them (gen.go): an enum only used for its
 * constants, or a struct only written to a ring buffer, is not described
 * there otherwise. The Go side derives its names of drop reasons and
 * counters, and its flag values, from these, so each is declared once, in C.
 */
#ifndef __PC_ABI_H__
#define __PC_ABI_H__

#include "trace.h"

struct pc_abi {
	struct pc_event event;
	enum pc_event_type event_type;
	enum pc_drop_reason drop_reason;
	enum pc_stat stat;
	enum pc_outcome outcome;
	enum pc_cfg_flag cfg_flag;
	enum pc_trace_flag trace_flag;
	enum ep_flag ep_flag;
	enum net_flag net_flag;
	enum ct_flag ct_flag;
	enum ct_hook ct_hook;
	enum ct_state ct_state;
	enum track6_flag track6_flag;
};

/* Unused by the programs. */
const struct pc_abi pc_abi __attribute__((unused)) = {};

#endif /* __PC_ABI_H__ */
