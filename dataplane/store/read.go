package store

import (
	"fmt"
	"os"

	"github.com/portcullis/portcullis/dataplane/model"
)

// Read returns the snapshot in dir and the journalled operations it does
// not include yet, like Load, for a reader that is not the agent (pcctl
// with the agent down). It never creates, truncates or writes anything: a
// torn last journal line (a crash mid-write, or an append in progress) is
// skipped, not cut off. A directory with no state files holds the empty
// state; a missing directory is an error wrapping fs.ErrNotExist.
//
// The agent may append or compact meanwhile: Read sees the files as they
// are at that moment, which load to a state the agent had.
func Read(dir string) (*model.State, []model.Op, error) {
	if _, err := os.Stat(dir); err != nil {
		return nil, nil, fmt.Errorf("state directory: %w", err)
	}
	st, ops, _, _, err := read(dir, false)
	return st, ops, err
}

// Resolve replays ops onto snap as the agent does at start (see
// dataplane.NewReconciler): the snapshot resolved whole, then every
// journalled change in order.
func Resolve(snap *model.State, ops []model.Op) (*model.Resolved, error) {
	want, err := model.Load(snap)
	if err != nil {
		return nil, fmt.Errorf("state snapshot: %w", err)
	}
	for i, op := range ops {
		if _, err := want.Do(op); err != nil {
			return nil, fmt.Errorf("replay journal entry %d (%s): %w", i+1, op.Kind, err)
		}
	}
	return want, nil
}

// ReadResolved is Read followed by Resolve: the desired state the agent
// would start with, read without writing anything.
func ReadResolved(dir string) (*model.Resolved, error) {
	snap, ops, err := Read(dir)
	if err != nil {
		return nil, err
	}
	return Resolve(snap, ops)
}
