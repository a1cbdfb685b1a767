package ebpf

// The objects are committed; regenerate them with `make generate` (clang-14,
// libbpf-dev) after changing anything under bpf/.
//go:generate go tool bpf2go -cc clang-14 -cflags "-O2 -g -Wall -Werror" -target bpfel endpoint ../../bpf/endpoint.c -- -I../../bpf/include
//go:generate go tool bpf2go -cc clang-14 -cflags "-O2 -g -Wall -Werror" -target bpfel -no-global-types uplink ../../bpf/uplink.c -- -I../../bpf/include
//go:generate go tool bpf2go -cc clang-14 -cflags "-O2 -g -Wall -Werror" -target bpfel clock ../../bpf/clock.c -- -I../../bpf/include
