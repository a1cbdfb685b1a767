// Package dataplane ties the model, the backends and the controller API
// together. The backends themselves live in sub-packages (nft, ebpf).
package dataplane

import (
	"context"
	"net/netip"
	"time"

	"github.com/portcullis/portcullis/dataplane/model"
)

// Backend programs the packet path for a desired state. The eBPF and nftables
// backends implement it; the reconciler is its only caller, one call at a time.
//
// Bridges and veths are not a backend's business: the reconciler creates them
// (package netdev) before Apply adds what uses them, and removes them after
// Apply removed what used them.
type Backend interface {
	// Name is "ebpf", "nftables", or "nftables-local" for the companion
	// that serves node-originated traffic next to the eBPF datapath.
	Name() string
	// Apply makes the kernel match want. d is the change from the state that
	// was last applied successfully. With full set, d is nil and the backend
	// rebuilds everything it owns from want (at start-up, and after a failed
	// Apply). Apply is all-or-nothing: when it returns an error the kernel
	// still holds the previously applied state.
	Apply(ctx context.Context, want *model.Resolved, d *model.Delta, full bool) error
	// Uninstall removes everything the backend ever created in the kernel.
	// It is idempotent: removing what is absent is not an error.
	Uninstall(ctx context.Context) error
	// Status describes the backend for /v1/status (JSON-encodable).
	Status() map[string]any
}

// Flow is one connection-tracking entry as a backend sees it: the tuple the
// packet had when it arrived (Orig) and the one replies carry (Reply); they
// differ where NAT applies.
type Flow struct {
	Proto   string            `json:"proto"`
	Orig    [2]netip.AddrPort `json:"orig"`  // source, destination
	Reply   [2]netip.AddrPort `json:"reply"` // source, destination
	State   string            `json:"state,omitempty"`
	Expires time.Duration     `json:"expires_ns"`
	NAT     []string          `json:"nat,omitempty"` // snat, dnat
}

// FlowFilter selects flows: by any address or port of either tuple, and by
// protocol. Zero fields match everything.
type FlowFilter struct {
	Addr  netip.Addr
	Port  uint16
	Proto string // tcp, udp, sctp, icmp, icmpv6
}

// Match reports whether f selects fl.
func (f FlowFilter) Match(fl Flow) bool {
	if f.Proto != "" && f.Proto != fl.Proto {
		return false
	}
	hit := func(match func(netip.AddrPort) bool) bool {
		for _, ap := range append(fl.Orig[:], fl.Reply[:]...) {
			if match(ap) {
				return true
			}
		}
		return false
	}
	return (!f.Addr.IsValid() || hit(func(ap netip.AddrPort) bool { return ap.Addr() == f.Addr })) &&
		(f.Port == 0 || hit(func(ap netip.AddrPort) bool { return ap.Port() == f.Port }))
}

// FlowTable is implemented by backends that can list and flush their
// connection tracking (pcctl flows, flush-flows; /v1/flows).
type FlowTable interface {
	Flows(ctx context.Context, f FlowFilter) ([]Flow, error)
	FlushFlows(ctx context.Context, f FlowFilter) (int, error)
}

// Drop counts packets dropped for one reason at one endpoint ("" when the
// drop is not tied to an endpoint).
type Drop struct {
	Reason   string `json:"reason"`
	Endpoint string `json:"endpoint,omitempty"`
	Packets  uint64 `json:"packets"`
	Bytes    uint64 `json:"bytes,omitempty"`
}

// DropCounter is implemented by backends that count their drops.
type DropCounter interface {
	Drops(ctx context.Context) ([]Drop, error)
}

// TableFill is how full one of a backend's tables (BPF map, nft set) is.
type TableFill struct {
	Name    string `json:"name"`
	Entries int    `json:"entries"`
	Max     int    `json:"max,omitempty"` // 0: no fixed limit
}

// FillReporter is implemented by backends that report their table sizes.
type FillReporter interface {
	Fill() []TableFill
}
