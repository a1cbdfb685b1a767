package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/portcullis/portcullis/dataplane/model"
)

// Read returns the snapshot in dir and the journalled operations it does
// not include yet, like Load, for a reader that is not the agent (pcctl
// with the agent down). It never creates, truncates or writes anything: a
// torn last journal line (a crash mid-write) is skipped, not cut off, and
// returned. A directory with no state files holds the empty state; a
// missing directory is an error wrapping fs.ErrNotExist; damaged files
// fail as Load fails, with ErrDamaged.
//
// It holds a shared lock of dir while it reads, so that an agent starting
// meanwhile waits for it; if an agent holds dir, whose compaction could
// retire a journal between two of Read's file reads, it fails at once
// with ErrInUse instead.
func Read(dir string) (*model.State, []model.Op, []Torn, error) {
	if _, err := os.Stat(dir); err != nil {
		return nil, nil, nil, fmt.Errorf("state directory: %w", err)
	}
	release, err := lockReader(dir)
	if err != nil {
		return nil, nil, nil, err
	}
	defer release()
	c, err := read(dir, false, false)
	if err != nil {
		return nil, nil, nil, err
	}
	return c.state, c.ops, c.torn, nil
}

// Resolve replays ops onto snap as the agent does at start (see
// dataplane.NewReconciler): the snapshot resolved whole, then every
// journalled change in order.
func Resolve(snap *model.State, ops []model.Op) (*model.Resolved, error) {
	want, err := model.Load(snap)
	if err != nil {
		return nil, fmt.Errorf("state snapshot: %w", err)
	}
	if err := replayOps(want, ops); err != nil {
		return nil, err
	}
	return want, nil
}

// replayOps applies journalled ops to want, in order.
func replayOps(want *model.Resolved, ops []model.Op) error {
	for i, op := range ops {
		if _, err := want.Do(op); err != nil {
			return fmt.Errorf("replay journal entry %d (%s): %w", i+1, op.Kind, err)
		}
	}
	return nil
}

// resolveSnapshot resolves dir's snapshot as it reads it (streamSnapshot).
// When that fails for any reason but damage (sections out of order, an
// object before the one it needs, a refusal) it reads the file whole and
// resolves it as Load does, whose answer is the one that counts.
func resolveSnapshot(dir string) (*model.Resolved, uint64, error) {
	want, seq, err := streamSnapshot(filepath.Join(dir, snapshotName))
	if err == nil || errors.Is(err, ErrDamaged) {
		return want, seq, err
	}
	snap, err := readSnapshot(dir)
	if err != nil {
		return nil, 0, err
	}
	if want, err = model.Load(snap.State); err != nil {
		return nil, 0, fmt.Errorf("state snapshot: %w", err)
	}
	return want, snap.Seq, nil
}

// ReadResolved is Read followed by Resolve: the desired state the agent
// would start with, read without writing anything, and the torn line it
// would cut off.
func ReadResolved(dir string) (*model.Resolved, []Torn, error) {
	snap, ops, torn, err := Read(dir)
	if err != nil {
		return nil, nil, err
	}
	want, err := Resolve(snap, ops)
	return want, torn, err
}
