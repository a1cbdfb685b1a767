// Package nstest builds network-namespace topologies for end-to-end tests of
// the dataplane: a node namespace that runs the agent, an external host on
// the node's uplink, and container namespaces for the agent to plug. It also
// has bounded traffic helpers (TCP, UDP, ICMP echo, raw and crafted packets)
// that report what a user would check: did it arrive, and with which
// addresses.
//
// Nothing here touches the root network namespace. Every namespace is named
// pct-<role>-<random> and removed on every exit path: by the TB's cleanup,
// by a signal handler (SIGINT, SIGTERM, SIGHUP), and, for a test process
// killed outright, by a sweep at the next start that removes what a dead
// process left (see registry.go).
//
// The helpers need root (CAP_SYS_ADMIN, CAP_NET_ADMIN, CAP_NET_RAW) and
// iproute2's ip. RequireRoot skips a test that has neither.
package nstest
