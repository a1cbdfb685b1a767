// Package dataplane ties the model, the backends and the controller API
// together. The backends themselves live in sub-packages (nft, ebpf).
package dataplane

import (
	"context"

	"github.com/portcullis/portcullis/dataplane/model"
)

// Backend programs the packet path for a desired state. The eBPF and nftables
// backends implement it; the reconciler is its only caller, one call at a time.
//
// Bridges and veths are not a backend's business: the reconciler creates them
// (package netdev) before Apply adds what uses them, and removes them after
// Apply removed what used them.
type Backend interface {
	// Name is "ebpf" or "nftables".
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
