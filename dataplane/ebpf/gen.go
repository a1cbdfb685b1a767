package ebpf

// The objects are committed; regenerate them with `make generate` (clang-14,
// libbpf-dev) after changing anything under bpf/.
//
// The endpoint object carries the Go types of both program families: its
// identifier is bpf (bpfCtKey is struct ct_key), and -type names what Go
// reads that no map declares: the event records and every enum
// (bpf/lib/abi.h). The uplink object shares them (-no-global-types).
//go:generate go tool bpf2go -cc clang-14 -cflags "-O2 -g -Wall -Werror" -target bpfel -output-stem endpoint -type pc_event -type pc_event_type -type pc_drop_reason -type pc_stat -type pc_cfg_flag -type pc_trace_flag -type ep_flag -type net_flag -type ct_flag -type ct_hook -type ct_state -type track6_flag bpf ../../bpf/endpoint.c -- -I../../bpf/include
//go:generate go tool bpf2go -cc clang-14 -cflags "-O2 -g -Wall -Werror" -target bpfel -no-global-types uplink ../../bpf/uplink.c -- -I../../bpf/include
//go:generate go tool bpf2go -cc clang-14 -cflags "-O2 -g -Wall -Werror" -target bpfel clock ../../bpf/clock.c -- -I../../bpf/include
