package dataplane

import (
	"context"
	"errors"
	"fmt"

	"github.com/portcullis/portcullis/dataplane/model"
)

// Stack runs several backends as one: the first is the datapath that names
// the stack, the others complete it (the eBPF backend with the nftables
// path for node-originated traffic). Apply goes in order and stops at the
// first failure; the reconciler then restores the previous state with a
// full sync of the whole stack.
type Stack []Backend

// Name is the first backend's name.
func (s Stack) Name() string { return s[0].Name() }

// Apply applies the change to every backend in order.
func (s Stack) Apply(ctx context.Context, want *model.Resolved, d *model.Delta, full bool) error {
	for _, b := range s {
		if err := b.Apply(ctx, want, d, full); err != nil {
			return fmt.Errorf("%s: %w", b.Name(), err)
		}
	}
	return nil
}

// Uninstall removes every backend's objects, also when one fails.
func (s Stack) Uninstall(ctx context.Context) error {
	var errs []error
	for _, b := range s {
		if err := b.Uninstall(ctx); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", b.Name(), err))
		}
	}
	return errors.Join(errs...)
}

// Status is the first backend's status, with the others' under their names.
func (s Stack) Status() map[string]any {
	st := s[0].Status()
	for _, b := range s[1:] {
		st["companion_"+b.Name()] = b.Status()
	}
	return st
}

// Flows and the other optional interfaces come from the first backend.
func (s Stack) Flows(ctx context.Context, f FlowFilter) ([]Flow, error) {
	ft, ok := s[0].(FlowTable)
	if !ok {
		return nil, fmt.Errorf("backend %s does not list flows", s.Name())
	}
	return ft.Flows(ctx, f)
}

// FlushFlows flushes the first backend's flows.
func (s Stack) FlushFlows(ctx context.Context, f FlowFilter) (int, error) {
	ft, ok := s[0].(FlowTable)
	if !ok {
		return 0, fmt.Errorf("backend %s does not flush flows", s.Name())
	}
	return ft.FlushFlows(ctx, f)
}

// Drops returns every backend's drop counters.
func (s Stack) Drops(ctx context.Context) ([]Drop, error) {
	var out []Drop
	for _, b := range s {
		if dc, ok := b.(DropCounter); ok {
			d, err := dc.Drops(ctx)
			if err != nil {
				return nil, err
			}
			out = append(out, d...)
		}
	}
	return out, nil
}

// Fill returns every backend's table fill levels.
func (s Stack) Fill() []TableFill {
	var out []TableFill
	for _, b := range s {
		if fr, ok := b.(FillReporter); ok {
			out = append(out, fr.Fill()...)
		}
	}
	return out
}

// Repaired implements Repairer: the repairs of every part that counts them.
func (s Stack) Repaired() uint64 {
	var n uint64
	for _, b := range s {
		n += repairedBy(b)
	}
	return n
}
