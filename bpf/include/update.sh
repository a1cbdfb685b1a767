#!/bin/sh
# Refresh the vendored headers from the build machine's packages
# (linux-libc-dev for the uapi, libbpf-dev for the helpers). linux/types.h
# and pc_proto.h are ours and are not touched. Review the diff before keeping it.
set -eu
cd "$(dirname "$0")"
cp /usr/include/linux/bpf.h /usr/include/linux/bpf_common.h linux/
cp /usr/include/bpf/bpf_helpers.h /usr/include/bpf/bpf_helper_defs.h /usr/include/bpf/bpf_endian.h bpf/
