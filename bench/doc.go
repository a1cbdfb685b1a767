// Package bench is pcbench: Portcullis's dataplanes measured side by side
// with the rule sets they replace, in network namespaces it creates and
// removes (see README.md in this directory for the modes, the metrics and
// how to read the results).
//
// Every mode runs at every N (mappings published ahead of the measured
// one) in every round, each time in a fresh instance: a node namespace with
// a bridge and two containers, and an external host on the node's uplink
// (nstest.NewTopology). A namespace that ever loaded iptables' nat table
// keeps connection tracking hooked, so no namespace outlives its instance.
// Instances are torn down on every path: at their end, on a failure (the
// scope's Fatalf unwinds the instance, not the process), and on SIGINT or
// SIGTERM (nstest's handler), with tools started as children that die
// with pcbench (Pdeathsig). Nothing touches the root namespace.
//
// The reference modes reproduce what Docker, Docker 29's nftables backend
// and the CNI plugins install, and program it the way those tools do:
// per-rule iptables calls, whole-chain nft rewrites, one CNI ADD per pod.
// Our modes run portcullisd through nstest.StartAgent and its API. The
// engine modes run a real dockerd (nstest.StartDockerd) with its own rules
// or followed by portcullisd --docker, in a comparison of their own
// (dockerside.go).
//
// Rounds alternate the order of the modes, and ratios to the references
// (none and iptables-nft) are taken within a round before their median, so
// slow periods of a shared machine cancel out.
package bench
