// Package conformance checks portcullisd against the behaviour contract
// (shared/spec/behaviour.md, rows B1 to B22) with real traffic between
// network namespaces. The same cases run against every backend:
//
//	go test ./conformance -run TestConformance -v -args -backend=nftables
//	go test ./conformance -run TestConformance -v -args -backend=ebpf
//
// Each row builds its own topology and agent, so rows are independent, and
// the run ends with one line: "conformance: N passed, M failed, K skipped".
// Set PORTCULLISD to test a prebuilt agent instead of building
// ./cmd/portcullisd.
package conformance
